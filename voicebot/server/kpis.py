"""Contact-centre figures over a time window, with the definitions used (see docs/server.md).

- containment: bot sessions ended without a transfer / bot sessions
- transfer rate by reason: escalations with that reason / bot sessions
- ASA: total queue wait of answered calls / answered calls
- average wait: total queue wait of all calls that left the queue / those calls
- abandonment rate: abandoned / (answered + abandoned), abandons under 5 s not counted
- average time to abandon: total wait of abandoned calls / abandoned calls
- service level (20 s): answered within 20 s / (answered + abandoned)
- AHT: (talk + wrap-up) / handled calls;  FCR: dispositions 'resolved' / dispositions
- bot turn latency: caller's end of speech -> first bot audio, p50 / p95
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voicebot.handoff.queue import erlang_c_asa, erlang_c_service_level
from voicebot.storage import Storage

SHORT_ABANDON_S = 5.0
SERVICE_LEVEL_S = 20.0


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 3) if whole else None


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def compute_kpis(storage: Storage, since: float) -> dict[str, Any]:
    calls = [c for c in storage.calls_since(since) if c.outcome is not None]
    entries = [e for e in storage.queue_entries_since(since) if e.waited_s is not None]
    answered = [e.waited_s or 0.0 for e in entries if e.result == "answered"]
    abandoned = [e.waited_s or 0.0 for e in entries if e.result == "abandoned"]
    counted_abandons = [w for w in abandoned if w >= SHORT_ABANDON_S]
    offered = len(answered) + len(counted_abandons)
    dispositions = storage.dispositions_since(since)
    # Only escalations of sessions counted above, so a rate never exceeds 100 % while calls still wait.
    ended = {c.call_id for c in calls}
    reasons = Counter(reason for call_id, reason in storage.escalations_since(since) if call_id in ended)
    latencies = storage.turn_latencies_since(since)
    bot_sessions = len(calls)
    return {
        "calls": bot_sessions,
        "contained": sum(c.outcome == "contained" for c in calls),
        "containment_rate": _ratio(sum(c.outcome == "contained" for c in calls), bot_sessions),
        "transfers_by_reason": dict(reasons),
        "transfer_rate_by_reason": {r: _ratio(n, bot_sessions) for r, n in reasons.items()},
        "answered": len(answered),
        "abandoned": len(abandoned),
        "callbacks": sum(e.result == "callback" for e in entries),
        "queued": len(storage.queue_entries_since(since)),
        "asa_s": _mean(answered),
        "average_wait_s": _mean([e.waited_s or 0.0 for e in entries]),
        "abandonment_rate": _ratio(len(counted_abandons), offered),
        "average_time_to_abandon_s": _mean(abandoned),
        "service_level_20s": _ratio(sum(w <= SERVICE_LEVEL_S for w in answered), offered),
        "aht_s": _mean([d.handle_s for d in dispositions]),
        "fcr": _ratio(sum(d.disposition == "resolved" for d in dispositions), len(dispositions)),
        "turn_latency_p50_ms": _percentile(latencies, 0.5),
        "turn_latency_p95_ms": _percentile(latencies, 0.95),
    }


def erlang_c_forecast(arrivals: int, window_s: float, aht_s: float, agents: int) -> dict[str, float | None]:
    """What Erlang C predicts for the window's arrival rate with the agents serving now."""
    calls_per_s = arrivals / window_s
    if not arrivals or not agents:
        return {"asa_s": None, "service_level_20s": None}
    asa = erlang_c_asa(calls_per_s, aht_s, agents)
    return {
        "asa_s": None if math.isinf(asa) else round(asa, 1),
        "service_level_20s": round(erlang_c_service_level(calls_per_s, aht_s, agents, SERVICE_LEVEL_S), 3),
    }


# Gauges over the window: the key in compute_kpis' figures (also the metric's name) and its help.
WINDOW_GAUGES = (
    ("calls", "bot sessions ended in the window"),
    ("containment_rate", "bot sessions ended without transfer / bot sessions"),
    ("answered", "queued calls answered by an agent"),
    ("abandoned", "queued calls abandoned by the caller"),
    ("asa_s", "average speed of answer, seconds"),
    ("abandonment_rate", "abandoned (>= 5 s) / (answered + abandoned)"),
    ("average_time_to_abandon_s", "average wait of abandoned calls, seconds"),
    ("service_level_20s", "answered within 20 s / (answered + abandoned)"),
    ("aht_s", "average handle time (talk + wrap-up), seconds"),
    ("fcr", "first-contact resolution from dispositions"),
    ("turn_latency_p50_ms", "bot turn latency median, ms"),
    ("turn_latency_p95_ms", "bot turn latency 95th percentile, ms"),
)


class KpiCollector(Collector):
    """The figures as Prometheus gauges: over the window from the database, queues and agents now.
    One is made per scrape (the window is the scrape's); the library formats and escapes it."""

    def __init__(self, kpis: dict[str, Any], live: dict[str, Any], window_s: int) -> None:
        self.kpis = kpis
        self.live = live
        self.window = f"{window_s}s"

    def collect(self) -> Iterator[Metric]:
        for key, help_text in WINDOW_GAUGES:
            if self.kpis[key] is not None:
                yield self._gauge(key, help_text, ["window"], [([self.window], self.kpis[key])])
        transfers = sorted(self.kpis["transfers_by_reason"].items())
        yield self._gauge(
            "transfers",
            "escalations to an agent by reason",
            ["window", "reason"],
            [([self.window, reason], n) for reason, n in transfers],
        )
        waiting = sorted(self.live["queues"].items())
        yield self._gauge(
            "queue_waiting", "calls waiting in each queue now", ["queue"], [([q], len(c)) for q, c in waiting]
        )
        states = sorted(Counter(agent["state"] for agent in self.live["agents"]).items())
        yield self._gauge("agents", "logged-in agents by state now", ["state"], [([s], n) for s, n in states])

    @staticmethod
    def _gauge(
        name: str, help_text: str, labels: list[str], samples: list[tuple[list[str], float]]
    ) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(f"voicebot_{name}", help_text, labels=labels)
        for values, value in samples:
            gauge.add_metric(values, value)
        return gauge
