"""The event-loop lag probe: a callback that hogs the loop shows in /metrics' histogram."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voicebot.server.loop_lag import PROBE_INTERVAL_S, LoopLagMonitor

BLOCK_S = 0.3


def buckets(monitor: LoopLagMonitor) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitor)
    text = generate_latest(registry).decode()
    (family,) = text_string_to_metric_families(text)
    assert family.name == "voicebot_event_loop_lag_seconds"
    return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}


def test_a_blocked_loop_is_counted_as_lag() -> None:
    async def scenario() -> LoopLagMonitor:
        monitor = LoopLagMonitor()
        monitor.start()
        await asyncio.sleep(PROBE_INTERVAL_S * 4)  # a few probes on an idle loop
        time.sleep(BLOCK_S)  # the point: a callback that does not yield
        await asyncio.sleep(PROBE_INTERVAL_S * 2)
        monitor.stop()
        return monitor

    counts = buckets(asyncio.run(scenario()))
    assert counts["+Inf"] >= 3
    # The probe asleep when the loop blocked woke at least BLOCK_S - PROBE_INTERVAL_S late.
    assert counts["+Inf"] - counts["0.2"] >= 1
