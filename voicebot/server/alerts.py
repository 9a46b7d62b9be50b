"""The dashboard's alerts, each a threshold of the ``server.alerts`` settings (or ``wrap_up_limit_s``)
crossed (see docs/server.md):

- service_level: a queue's service level over the window, answered within 20 s / (answered +
  abandoned, abandons under 5 s not counted) as in kpis.py, below its threshold; judged only once at
  least ``min_offered`` calls were offered (that denominator) in the window, so that one early
  abandon does not raise it
- longest_wait: the longest wait of the callers in a queue now above its threshold
- wrap_up_overdue: an agent in wrap-up now for longer than ``wrap_up_limit_s``
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voicebot.config import ServerConfig
from voicebot.server.kpis import SERVICE_LEVEL_S, SHORT_ABANDON_S, _ratio
from voicebot.storage import QueueEntryRow, Storage

ALERT_KINDS = ("service_level", "longest_wait", "wrap_up_overdue")


def service_level(entries: list[QueueEntryRow]) -> tuple[int, float | None]:
    """Calls offered (answered + abandoned after 5 s or more) and the service level among the entries
    that left the queue."""
    answered = [e.waited_s or 0.0 for e in entries if e.result == "answered"]
    abandoned = sum(e.result == "abandoned" and (e.waited_s or 0.0) >= SHORT_ABANDON_S for e in entries)
    offered = len(answered) + abandoned
    return offered, _ratio(sum(wait <= SERVICE_LEVEL_S for wait in answered), offered)


def _service_level_alerts(entries: list[QueueEntryRow], settings: ServerConfig) -> Iterator[dict[str, Any]]:
    by_queue: dict[str, list[QueueEntryRow]] = defaultdict(list)
    for entry in entries:
        by_queue[entry.queue].append(entry)
    for queue in sorted(by_queue):
        offered, level = service_level(by_queue[queue])
        threshold = settings.alerts.service_level_threshold(queue)
        if level is not None and offered >= settings.alerts.min_offered and level < threshold:
            message = (
                f"Queue {queue}: {level:.1%} of calls answered within {SERVICE_LEVEL_S:g} s over the window "
                f"({offered} offered), below the {threshold:.1%} target."
            )
            yield _alert("service_level", "queue", queue, level, threshold, message)


def _longest_wait_alerts(snapshot: dict[str, Any], settings: ServerConfig) -> Iterator[dict[str, Any]]:
    for queue, calls in sorted(snapshot["queues"].items()):
        longest = max((call["waiting_s"] for call in calls), default=0.0)
        threshold = settings.alerts.longest_wait_threshold(queue)
        if longest > threshold:
            message = f"Queue {queue}: a caller has waited {longest:.0f} s, longer than {threshold:g} s."
            yield _alert("longest_wait", "queue", queue, longest, threshold, message)


def _wrap_up_alerts(snapshot: dict[str, Any], settings: ServerConfig) -> Iterator[dict[str, Any]]:
    threshold = settings.wrap_up_limit_s
    for agent in snapshot["agents"]:
        if agent["state"] == "wrap_up" and agent["for_s"] > threshold:
            name = agent["username"]
            message = f"{name} has been in wrap-up for {agent['for_s']:.0f} s, longer than {threshold:g} s."
            yield _alert("wrap_up_overdue", "agent", name, agent["for_s"], threshold, message)


def _alert(
    kind: str, subject: str, name: str, value: float, threshold: float, message: str
) -> dict[str, Any]:
    return {"kind": kind, subject: name, "value": value, "threshold": threshold, "message": message}


def queue_alerts(
    storage: Storage, since: float, now: float, snapshot: dict[str, Any], settings: ServerConfig
) -> list[dict[str, Any]]:
    """The alerts raised now: service levels over [since, now] from storage, waits and wrap-ups from
    the contact centre's ``snapshot``."""
    left = [e for e in storage.queue_entries_since(since) if e.left_at is not None and e.left_at <= now]
    return [
        *_service_level_alerts(left, settings),
        *_longest_wait_alerts(snapshot, settings),
        *_wrap_up_alerts(snapshot, settings),
    ]


class AlertCollector(Collector):
    """How many alerts of each kind are raised now, as ``voicebot_alerts{kind}`` (zero included)."""

    def __init__(self, alerts: list[dict[str, Any]]) -> None:
        self.counts = Counter(alert["kind"] for alert in alerts)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "voicebot_alerts",
            "dashboard alerts raised now, by kind (service levels over the scrape's window)",
            labels=["kind"],
        )
        for kind in ALERT_KINDS:
            gauge.add_metric([kind], self.counts[kind])
        yield gauge
