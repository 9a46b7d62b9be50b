"""Contact-centre figures over a time window, with the definitions used (see docs/server.md).

- containment: bot sessions ended without a transfer / bot sessions
- interrupted: bot sessions cut by a server crash or kill (closed as ``interrupted`` at the next
  start, when the server was last known alive); every session's outcome is counted in ``outcomes``
- transfer rate by reason: escalations with that reason / bot sessions
- ASA: total queue wait of answered calls / answered calls
- average wait: total queue wait of all calls that left the queue / those calls
- abandonment rate: abandoned / (answered + abandoned), abandons under 5 s not counted
- average time to abandon: total wait of abandoned calls / abandoned calls
- service level (20 s): answered within 20 s / (answered + abandoned)
- AHT: (talk + wrap-up) / handled calls;  FCR: dispositions 'resolved' / dispositions
- speech turn latency: the caller's last speech frame reaching the server -> the answer's first audio
  frame leaving it, p50 / p95 (answers to keys are not speech turns: left out)

A call is a connection that sent valid audio or a key; the others (garbage) are not in these figures
but in /metrics' ``voicebot_protocol_failures_total{line, reason}``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voicebot.handoff.queue import erlang_c_asa, erlang_c_service_level
from voicebot.storage import CallRow, DispositionRow, QueueEntryRow, Storage
from voicebot.transports.line import FAILURE_REASONS

SHORT_ABANDON_S = 5.0
SERVICE_LEVEL_S = 20.0
OTHER_LANGUAGE = "other"  # calls in a language no longer served, in the split by language
LINES = ("media", "sip", "audiosocket")  # the lines whose failures are counted (zero from the start)


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 3) if whole else None


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def _figures(
    calls: list[CallRow],
    entries: list[QueueEntryRow],
    queued: int,
    dispositions: list[DispositionRow],
    escalations: list[tuple[str, str]],
) -> dict[str, Any]:
    """The window's figures from its rows (``calls`` ended, ``entries`` that left the queue)."""
    answered = [e.waited_s or 0.0 for e in entries if e.result == "answered"]
    abandoned = [e.waited_s or 0.0 for e in entries if e.result == "abandoned"]
    counted_abandons = [w for w in abandoned if w >= SHORT_ABANDON_S]
    offered = len(answered) + len(counted_abandons)
    # Only escalations of sessions counted above, so a rate never exceeds 100 % while calls still wait.
    ended = {c.call_id for c in calls}
    reasons = Counter(reason for call_id, reason in escalations if call_id in ended)
    bot_sessions = len(calls)
    outcomes = Counter(c.outcome for c in calls)  # every outcome, so none is silently left out
    return {
        "calls": bot_sessions,
        "outcomes": dict(outcomes),
        "interrupted": outcomes["interrupted"],
        "contained": outcomes["contained"],
        "containment_rate": _ratio(outcomes["contained"], bot_sessions),
        "transfers": sum(reasons.values()),
        "transfer_rate": _ratio(sum(reasons.values()), bot_sessions),
        "transfers_by_reason": dict(reasons),
        "transfer_rate_by_reason": {r: _ratio(n, bot_sessions) for r, n in reasons.items()},
        "answered": len(answered),
        "abandoned": len(abandoned),
        "callbacks": sum(e.result == "callback" for e in entries),
        "queued": queued,
        "asa_s": _mean(answered),
        "average_wait_s": _mean([e.waited_s or 0.0 for e in entries]),
        "abandonment_rate": _ratio(len(counted_abandons), offered),
        "average_time_to_abandon_s": _mean(abandoned),
        "service_level_20s": _ratio(sum(w <= SERVICE_LEVEL_S for w in answered), offered),
        "aht_s": _mean([d.handle_s for d in dispositions]),
        "fcr": _ratio(sum(d.disposition == "resolved" for d in dispositions), len(dispositions)),
    }


def compute_kpis(storage: Storage, since: float, languages: Sequence[str] = ()) -> dict[str, Any]:
    """The window's figures, and the same split by the calls' (final) language in ``by_language``:
    one entry for each of ``languages`` (the served ones: a bounded set), calls in any other language
    under ``other``. Without ``languages``, the languages of the window's calls."""
    started = storage.calls_since(since)
    calls = [c for c in started if c.outcome is not None]
    queue_rows = storage.queue_entries_since(since)
    entries = [e for e in queue_rows if e.waited_s is not None]
    dispositions = storage.dispositions_since(since)
    escalations = storage.escalations_since(since)
    latencies = storage.turn_latencies_since(since)
    figures = _figures(calls, entries, len(queue_rows), dispositions, escalations)
    figures["turn_latency_p50_ms"] = _percentile(latencies, 0.5)
    figures["turn_latency_p95_ms"] = _percentile(latencies, 0.95)

    call_language = {c.call_id: c.language for c in started}

    def language_of(call_id: str) -> str:
        if call_id not in call_language:  # a call that started before the window
            row = storage.get_call(call_id)
            call_language[call_id] = row.language if row is not None else ""
        return call_language[call_id]

    served = list(dict.fromkeys(languages)) or sorted({c.language for c in started})
    group = {language: language for language in served}

    def bucket(call_id: str) -> str:
        return group.get(language_of(call_id), OTHER_LANGUAGE)

    by_language: dict[str, dict[str, Any]] = {}
    seen = {bucket(c.call_id) for c in started} | {bucket(e.call_id) for e in queue_rows}
    for language in [*served, *([OTHER_LANGUAGE] if OTHER_LANGUAGE in seen else [])]:
        by_language[language] = _figures(
            [c for c in calls if bucket(c.call_id) == language],
            [e for e in entries if bucket(e.call_id) == language],
            sum(bucket(e.call_id) == language for e in queue_rows),
            [d for d in dispositions if bucket(d.call_id) == language],
            [(call_id, reason) for call_id, reason in escalations if bucket(call_id) == language],
        )
    figures["by_language"] = by_language
    return figures


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
    ("interrupted", "bot sessions cut by a server crash or kill, closed at the next start"),
    ("containment_rate", "bot sessions ended without transfer / bot sessions"),
    ("answered", "queued calls answered by an agent"),
    ("abandoned", "queued calls abandoned by the caller"),
    ("asa_s", "average speed of answer, seconds"),
    ("abandonment_rate", "abandoned (>= 5 s) / (answered + abandoned)"),
    ("average_time_to_abandon_s", "average wait of abandoned calls, seconds"),
    ("service_level_20s", "answered within 20 s / (answered + abandoned)"),
    ("aht_s", "average handle time (talk + wrap-up), seconds"),
    ("fcr", "first-contact resolution from dispositions"),
    ("turn_latency_p50_ms", "speech turn latency median (last speech frame in -> answer out), ms"),
    ("turn_latency_p95_ms", "speech turn latency 95th percentile, ms"),
)
# The same figures by the calls' language, as voicebot_<key>_by_language{language, window}: the
# label's values are the served languages (and "other"), so the series stay few.
LANGUAGE_GAUGES = (
    ("calls", "bot sessions ended in the window, by the call's language"),
    ("interrupted", "bot sessions cut by a server crash or kill, by language"),
    ("containment_rate", "bot sessions ended without transfer / bot sessions, by language"),
    ("transfers", "escalations to an agent, by language"),
    ("transfer_rate", "escalations / bot sessions, by language"),
    ("answered", "queued calls answered by an agent, by language"),
    ("abandoned", "queued calls abandoned by the caller, by language"),
    ("callbacks", "queued callers who asked for a callback, by language"),
    ("asa_s", "average speed of answer, seconds, by language"),
    ("average_wait_s", "average queue wait of calls that left the queue, seconds, by language"),
    ("abandonment_rate", "abandoned (>= 5 s) / (answered + abandoned), by language"),
    ("service_level_20s", "answered within 20 s / (answered + abandoned), by language"),
    ("aht_s", "average handle time (talk + wrap-up), seconds, by language"),
    ("fcr", "first-contact resolution from dispositions, by language"),
)


class KpiCollector(Collector):
    """The figures as Prometheus gauges: over the window from the database, queues and agents now.
    One is made per scrape (the window is the scrape's); the library formats and escapes it."""

    def __init__(
        self,
        kpis: dict[str, Any],
        live: dict[str, Any],
        window_s: int,
        failures: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.kpis = kpis
        self.live = live
        self.window = f"{window_s}s"
        self.failures = failures or {}  # failed connections since the start, by (line, reason)

    def collect(self) -> Iterator[Metric]:
        for key, help_text in WINDOW_GAUGES:
            if self.kpis[key] is not None:
                yield self._gauge(key, help_text, ["window"], [([self.window], self.kpis[key])])
        yield self._gauge(
            "calls_by_outcome",
            "bot sessions ended in the window by outcome (interrupted: cut by a server crash or kill)",
            ["window", "outcome"],
            [([self.window, outcome], n) for outcome, n in sorted(self.kpis.get("outcomes", {}).items())],
        )
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
        yield from self._by_language()
        failures = CounterMetricFamily(
            "voicebot_protocol_failures",
            "connections that were refused (origin, token, caps), broke their line's protocol or "
            "ended before any valid audio or key (those are not calls), since the server started, "
            "by line and reason",
            labels=["line", "reason"],
        )
        every = {(line, reason): 0 for line in LINES for reason in FAILURE_REASONS} | dict(self.failures)
        for (line, reason), n in sorted(every.items()):
            failures.add_metric([line, reason], n)
        yield failures

    def _by_language(self) -> Iterator[Metric]:
        by_language: dict[str, dict[str, Any]] = self.kpis.get("by_language", {})
        languages = sorted(by_language)
        for key, help_text in LANGUAGE_GAUGES:
            samples = [
                ([self.window, language], by_language[language][key])
                for language in languages
                if by_language[language].get(key) is not None
            ]
            yield self._gauge(f"{key}_by_language", help_text, ["window", "language"], samples)

        def bucket(language: str) -> str:
            return language if language in by_language else OTHER_LANGUAGE

        waiting = Counter(
            bucket(call.get("language", "")) for calls in self.live["queues"].values() for call in calls
        )
        yield self._gauge(
            "queue_waiting_by_language",
            "calls waiting now, by the caller's language",
            ["language"],
            [([language], waiting[language]) for language in sorted({*languages, *waiting})],
        )
        agents = Counter(
            (language, agent["state"])
            for agent in self.live["agents"]
            for language in {bucket(spoken) for spoken in agent.get("languages", ())}
        )
        yield self._gauge(
            "agents_by_language",
            "logged-in agents who speak each language, by state now (an agent counts once per language)",
            ["language", "state"],
            [([language, state], n) for (language, state), n in sorted(agents.items())],
        )

    @staticmethod
    def _gauge(
        name: str, help_text: str, labels: list[str], samples: list[tuple[list[str], float]]
    ) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(f"voicebot_{name}", help_text, labels=labels)
        for values, value in samples:
            gauge.add_metric(values, value)
        return gauge
