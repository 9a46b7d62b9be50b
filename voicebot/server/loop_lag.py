"""How late the server's event loop runs: every call's 20 ms tick, the desks and the pages share it,
so a callback that hogs it (a hash on the loop thread, a slow query) delays every caller at once.

A task asks to wake every :data:`PROBE_INTERVAL_S` and records how much later than asked it woke,
as the histogram ``voicebot_event_loop_lag_seconds`` in /metrics (scripts/soak.py reads its p99).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterator

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

PROBE_INTERVAL_S = 0.05
# Upper bounds, seconds: fine below the 20 ms frame, coarse above it.
BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class LoopLagMonitor(Collector):
    def __init__(self) -> None:
        self._counts = [0] * (len(BUCKETS_S) + 1)  # the last one: above every bound
        self._sum_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def record(self, lag_s: float) -> None:
        self._counts[bisect.bisect_left(BUCKETS_S, lag_s)] += 1
        self._sum_s += lag_s

    def start(self) -> None:
        self._task = asyncio.create_task(self._probe())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + PROBE_INTERVAL_S
            await asyncio.sleep(PROBE_INTERVAL_S)
            self.record(max(0.0, loop.time() - asked))

    def collect(self) -> Iterator[Metric]:
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(str, BUCKETS_S), "+Inf"), self._counts, strict=True):
            total += count
            cumulative.append((bound, total))
        yield HistogramMetricFamily(
            "voicebot_event_loop_lag_seconds",
            f"how much later than asked the event loop woke a probe sleeping {PROBE_INTERVAL_S} s",
            buckets=cumulative,
            sum_value=self._sum_s,
        )
