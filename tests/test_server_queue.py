"""The ACD: positions, wait estimates, offers that move on, handle times, Erlang C."""

from __future__ import annotations

import math

import pytest

from voicebot.handoff.queue import Acd, QueuedCall, erlang_c_asa, erlang_c_service_level
from voicebot.handoff.record import HandoffRecord


def queued(call_id: str, at: float, queue: str = "general") -> QueuedCall:
    record = HandoffRecord(call_id, "caller_request", queue, "+1555", "en", "none")
    return QueuedCall(call_id, record, entered_at=at)


def test_positions_and_estimated_wait_follow_arrival_order() -> None:
    acd = Acd(offer_timeout_s=10, initial_aht_s=120)
    acd.enqueue(queued("b", at=2.0))
    acd.enqueue(queued("a", at=1.0))
    acd.enqueue(queued("c", at=3.0, queue="cards"))
    assert (acd.position("a"), acd.position("b"), acd.position("c")) == (1, 2, 1)
    assert acd.estimated_wait_s("b") == 240  # two calls' handle time, no agent serving: counted as one
    acd.login("alice", now=0)
    acd.login("bob", now=0)
    acd.set_ready("alice", True, now=0)
    acd.set_ready("bob", True, now=0)
    assert acd.estimated_wait_s("b") == 120
    acd.remove("a", now=5)
    assert acd.position("b") == 1


def test_offer_goes_to_longest_idle_agent_and_moves_on_when_unanswered() -> None:
    acd = Acd(offer_timeout_s=10)
    for name, since in (("alice", 5.0), ("bob", 1.0)):
        acd.login(name, now=since)
        acd.set_ready(name, True, now=since)
    acd.enqueue(queued("a", at=6.0))
    expired, offers = acd.dispatch(now=7.0)
    assert not expired and [(o.call.call_id, o.agent) for o in offers] == [("a", "bob")]
    assert acd.agents["bob"].state == "offered"
    expired, offers = acd.dispatch(now=17.0)
    assert [o.agent for o in expired] == ["bob"] and [o.agent for o in offers] == ["alice"]
    assert acd.agents["bob"].state == "not_ready"  # ring-no-answer
    with pytest.raises(ValueError):
        acd.accept("bob", "a", now=18.0)
    call = acd.accept("alice", "a", now=18.0)
    assert call.call_id == "a" and not acd.calls and acd.agents["alice"].state == "talking"
    acd.end_talk("alice", now=30.0)
    assert acd.agents["alice"].state == "wrap_up"
    acd.finish_wrap_up("alice", now=40.0)
    assert acd.agents["alice"].state == "ready"


def test_handle_time_is_a_running_average() -> None:
    acd = Acd(offer_timeout_s=10, initial_aht_s=180)
    acd.record_handle_time(60)
    assert acd.aht_s == 150  # (3 * 180 + 60) / 4


def test_erlang_c_matches_the_textbook_example() -> None:
    # 100 calls/hour, AHT 180 s (5 erlangs), 8 agents: ASA about 10 s, about 88 % within 20 s.
    asa = erlang_c_asa(100 / 3600, 180, 8)
    assert 9 <= asa <= 11
    assert 0.86 <= erlang_c_service_level(100 / 3600, 180, 8, within_s=20) <= 0.90
    assert math.isinf(erlang_c_asa(100 / 3600, 180, 5))
