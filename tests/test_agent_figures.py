"""Agents' figures over the window and the dashboard's alerts, from a real SQLite store."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from tests.scripted import ScriptedNlu, ScriptedRecognizer, scripted_engines
from tests.test_server import login, run, running_server
from voicebot.config import AudioSocketConfig, Config, ServerConfig, SipConfig, TelephonyConfig
from voicebot.server.agent_figures import agent_figures
from voicebot.server.alerts import queue_alerts
from voicebot.storage import DispositionRow, SqliteStorage

SINCE, NOW = 1000.0, 2000.0
NO_LIVE: dict[str, Any] = {"queues": {}, "agents": []}


@pytest.fixture
def storage(tmp_path: Path) -> SqliteStorage:
    return SqliteStorage(tmp_path / "db.sqlite")


def timeline(storage: SqliteStorage, agent: str, *changes: tuple[float, str | None]) -> None:
    for at, state in changes:
        storage.agent_state_changed(agent, state, at)


def disposition(
    agent: str, call_id: str, talk: tuple[float, float], wrapped_at: float, **fields: Any
) -> DispositionRow:
    fields = {"disposition": "resolved", "notes": "", **fields}
    return DispositionRow(
        call_id, agent, talk_started_at=talk[0], talk_ended_at=talk[1], wrapup_ended_at=wrapped_at, **fields
    )


def left_queue(storage: SqliteStorage, queue: str, waited_s: float, result: str = "answered") -> None:
    """A call that entered the queue in the window and left it after ``waited_s``."""
    entry = storage.queue_entered(f"call-{queue}", queue, SINCE + 10)
    storage.queue_left(entry, result, SINCE + 10 + waited_s)


def waiting(queue: str, *waits: float) -> dict[str, Any]:
    return {
        "queues": {queue: [{"call_id": f"c{i}", "waiting_s": w} for i, w in enumerate(waits)]},
        "agents": [],
    }


# ----- agents' figures -----------------------------------------------------------------------------


def test_occupancy_counts_talk_and_wrap_up_over_time_available(storage: SqliteStorage) -> None:
    timeline(
        storage,
        "alice",
        (1100, "ready"),
        (1200, "talking"),
        (1260, "wrap_up"),
        (1280, "not_ready"),
        (1330, None),
    )
    [alice] = agent_figures(storage, SINCE, NOW)
    assert alice["username"] == "alice"
    assert alice["occupancy"] == round(80 / 180, 3)  # not_ready and logged-out time left out
    assert alice["logged_in_s"] == 230.0
    assert alice["handled"] == 0 and alice["aht_s"] is None and alice["hold_s"] == 0.0


def test_states_are_clipped_to_the_window_and_an_open_state_ends_now(storage: SqliteStorage) -> None:
    timeline(storage, "bob", (700, "ready"), (800, "not_ready"))  # over before the window
    timeline(storage, "bob", (900, "ready"), (1900, "talking"))  # ready 100 s of it in the window
    [bob] = agent_figures(storage, SINCE, 1950.0)
    assert bob["logged_in_s"] == 950.0
    assert bob["occupancy"] == round(50 / 950, 3)


def test_agent_with_no_time_available_has_no_occupancy(storage: SqliteStorage) -> None:
    timeline(storage, "carol", (1100, "not_ready"))
    [carol] = agent_figures(storage, SINCE, NOW)
    assert carol["occupancy"] is None and carol["logged_in_s"] == 900.0


def test_handle_talk_hold_and_wrap_up_from_dispositions(storage: SqliteStorage) -> None:
    storage.save_disposition(disposition("alice", "c1", (1100, 1200), 1230, hold_s=40.0))
    storage.save_disposition(disposition("alice", "c2", (1300, 1360), 1370, disposition="follow_up"))
    storage.save_disposition(disposition("alice", "c3", (1400, 1420), 1450, disposition="follow_up"))
    storage.save_disposition(disposition("alice", "old", (900, 1010), 1020))  # talk began before the window
    storage.save_disposition(disposition("bob", "c4", (1500, 1600), 1610, disposition="transferred"))
    alice, bob = agent_figures(storage, SINCE, NOW)
    assert alice["handled"] == 3
    assert alice["aht_s"] == round((130 + 70 + 50) / 3, 2)  # talk with hold + wrap-up
    assert alice["talk_s"] == round((60 + 60 + 20) / 3, 2)  # talk without hold
    assert alice["hold_s"] == 40.0 and alice["held_calls"] == 1
    assert alice["wrap_up_s"] == round((30 + 10 + 30) / 3, 2)
    assert alice["dispositions"] == {"resolved": 1, "follow_up": 2, "transferred": 0}
    assert alice["occupancy"] is None and alice["logged_in_s"] == 0.0  # no states stored for her
    assert bob["username"] == "bob" and bob["dispositions"] == {
        "resolved": 0,
        "follow_up": 0,
        "transferred": 1,
    }


# ----- alerts ---------------------------------------------------------------------------------------


def test_longest_wait_alert_fires_above_its_threshold_only(storage: SqliteStorage) -> None:
    settings = ServerConfig(alerts={"longest_wait_above_s": 60.0})
    assert queue_alerts(storage, SINCE, NOW, waiting("general", 10.0, 59.0), settings) == []
    [alert] = queue_alerts(storage, SINCE, NOW, waiting("general", 10.0, 75.0), settings)
    assert alert == {
        "kind": "longest_wait",
        "queue": "general",
        "value": 75.0,
        "threshold": 60.0,
        "message": "Queue general: a caller has waited 75 s, longer than 60 s.",
    }


def test_a_queue_override_replaces_only_its_own_threshold(storage: SqliteStorage) -> None:
    settings = ServerConfig(
        alerts={"longest_wait_above_s": 60.0, "queues": {"cards": {"longest_wait_above_s": 20.0}}}
    )
    live = {
        "queues": {**waiting("cards", 30.0)["queues"], **waiting("general", 30.0)["queues"]},
        "agents": [],
    }
    alerts = queue_alerts(storage, SINCE, NOW, live, settings)
    assert [(a["queue"], a["threshold"]) for a in alerts] == [("cards", 20.0)]
    assert settings.alerts.service_level_threshold("cards") == 0.8  # left out: the default


def test_service_level_alert_needs_min_offered_calls(storage: SqliteStorage) -> None:
    settings = ServerConfig(alerts={"min_offered": 5, "service_level_below": 0.8})
    for wait in (5.0, 30.0, 40.0):
        left_queue(storage, "general", wait)
    left_queue(storage, "general", 2.0, result="abandoned")  # under 5 s: not offered
    left_queue(storage, "general", 12.0, result="abandoned")
    assert queue_alerts(storage, SINCE, NOW, NO_LIVE, settings) == []  # 4 offered: not judged yet
    left_queue(storage, "general", 50.0)
    [alert] = queue_alerts(storage, SINCE, NOW, NO_LIVE, settings)
    assert alert["kind"] == "service_level" and alert["queue"] == "general"
    assert alert["value"] == 0.2 and alert["threshold"] == 0.8  # 1 of 5 within 20 s
    assert alert["message"].startswith("Queue general: 20.0% of calls answered within 20 s")


def test_service_level_at_its_threshold_raises_nothing(storage: SqliteStorage) -> None:
    settings = ServerConfig(alerts={"min_offered": 1, "queues": {"cards": {"service_level_below": 0.5}}})
    left_queue(storage, "cards", 5.0)
    left_queue(storage, "cards", 30.0)
    assert queue_alerts(storage, SINCE, NOW, NO_LIVE, settings) == []


def test_wrap_up_overdue_alert(storage: SqliteStorage) -> None:
    agents = [
        {"username": "alice", "state": "wrap_up", "for_s": 130.0},
        {"username": "bob", "state": "wrap_up", "for_s": 20.0},
        {"username": "carol", "state": "talking", "for_s": 900.0},
    ]
    settings = ServerConfig(wrap_up_limit_s=120.0)
    [alert] = queue_alerts(storage, SINCE, NOW, {"queues": {}, "agents": agents}, settings)
    assert alert["kind"] == "wrap_up_overdue" and alert["agent"] == "alice"
    assert alert["value"] == 130.0 and alert["threshold"] == 120.0
    assert alert["message"] == "alice has been in wrap-up for 130 s, longer than 120 s."


def test_alert_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="service_level_below"):
        ServerConfig(alerts={"queues": {"cards": {"service_level_below": 1.5}}})
    with pytest.raises(ValidationError, match="extra fields"):
        ServerConfig(alerts={"queues": {"cards": {"min_offered": 3}}})


# ----- through the server ---------------------------------------------------------------------------


def test_dashboard_and_metrics_carry_agents_figures_and_alerts(tmp_path: Path) -> None:
    off = TelephonyConfig(sip=SipConfig(enabled=False), audiosocket=AudioSocketConfig(enabled=False))
    engines = scripted_engines(tmp_path, ScriptedRecognizer(), ScriptedNlu({}), config=Config(telephony=off))

    async def scenario() -> None:
        async with running_server(engines, tmp_path, alerts={"min_offered": 1}) as server:
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            now = time.time()
            timeline(storage, "alice", (now - 300, "ready"), (now - 100, "talking"))
            entry = storage.queue_entered("c1", "general", now - 200)
            storage.queue_left(entry, "answered", now - 100, "alice")  # waited 100 s: outside the 20 s
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as sue:
                await login(sue, server, "sue")
                data = await (await sue.get(server.make_url("/api/dashboard"))).json()
                metrics = await (await sue.get(server.make_url("/metrics"))).text()
        [alice] = data["agents_figures"]
        assert alice["username"] == "alice" and 0.3 < alice["occupancy"] < 0.4  # 100 of 300 s, and then some
        assert [(a["kind"], a["queue"], a["value"]) for a in data["alerts"]] == [
            ("service_level", "general", 0.0)
        ]
        assert re.search(r'^voicebot_alerts\{kind="service_level"\} 1\.0$', metrics, re.M)
        assert re.search(r'^voicebot_alerts\{kind="longest_wait"\} 0\.0$', metrics, re.M)

    run(scenario)
