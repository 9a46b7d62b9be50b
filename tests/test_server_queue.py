"""The ACD: positions, wait estimates, offers that move on, handle times, Erlang C."""

from __future__ import annotations

import math

import pytest

from voicebot.handoff.queue import Acd, QueuedCall, erlang_c_asa, erlang_c_service_level
from voicebot.handoff.record import HandoffRecord


def queued(call_id: str, at: float, queue: str = "general", language: str = "en") -> QueuedCall:
    record = HandoffRecord(call_id, "caller_request", queue, "+1555", language, "none")
    return QueuedCall(call_id, record, entered_at=at)


def ready(
    acd: Acd, name: str, since: float, languages: tuple[str, ...] = ("en",), queues: tuple[str, ...] = ()
) -> None:
    """``name`` logs in with these skills and is ready from ``since``."""
    acd.login(name, now=since, languages=languages, queues=queues)
    acd.set_ready(name, True, now=since)


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


def test_a_spanish_call_waits_for_the_spanish_agent_while_an_english_one_stays_ready() -> None:
    acd = Acd(offer_timeout_s=10)
    ready(acd, "alice", since=1.0)  # English only, idle longest
    acd.enqueue(queued("es1", at=2.0, language="es"))
    acd.enqueue(queued("en1", at=3.0))
    _, offers = acd.dispatch(now=4.0)
    # The older Spanish call is not offered to alice; the younger English one is.
    assert [(o.call.call_id, o.agent) for o in offers] == [("en1", "alice")]
    acd.accept("alice", "en1", now=5.0)
    acd.end_talk("alice", now=6.0)
    acd.finish_wrap_up("alice", now=7.0)
    _, offers = acd.dispatch(now=8.0)
    assert not offers and acd.agents["alice"].state == "ready" and acd.calls["es1"].offered_to is None
    ready(acd, "bruno", since=9.0, languages=("en", "es"))
    _, offers = acd.dispatch(now=10.0)
    assert [(o.call.call_id, o.agent) for o in offers] == [("es1", "bruno")]
    assert acd.agents["alice"].state == "ready"
    # Unanswered, the offer does not fall to the agent who does not speak Spanish.
    expired, offers = acd.dispatch(now=20.0)
    assert [o.agent for o in expired] == ["bruno"] and not offers
    assert acd.calls["es1"].offered_to is None and acd.agents["alice"].state == "ready"


def test_an_agent_with_queues_is_offered_only_those_queues() -> None:
    acd = Acd(offer_timeout_s=10)
    ready(acd, "carla", since=1.0, queues=("cards",))  # idle longest, cards only
    ready(acd, "dan", since=2.0)  # every queue
    acd.enqueue(queued("g1", at=3.0, queue="general"))
    acd.enqueue(queued("c1", at=4.0, queue="cards"))
    _, offers = acd.dispatch(now=5.0)
    assert sorted((o.call.call_id, o.agent) for o in offers) == [("c1", "carla"), ("g1", "dan")]


def test_oldest_eligible_call_first_to_the_longest_idle_eligible_agent() -> None:
    acd = Acd(offer_timeout_s=10)
    ready(acd, "erin", since=1.0, languages=("fa",))
    ready(acd, "finn", since=2.0, languages=("en", "fa"))
    ready(acd, "gus", since=3.0, languages=("en", "fa"))
    for call_id, at, language in (("fa1", 4.0, "fa"), ("en1", 5.0, "en"), ("fa2", 6.0, "fa")):
        acd.enqueue(queued(call_id, at=at, language=language))
    _, offers = acd.dispatch(now=7.0)
    assert [(o.call.call_id, o.agent) for o in offers] == [("fa1", "erin"), ("en1", "finn"), ("fa2", "gus")]


def test_estimated_wait_counts_only_agents_who_could_take_the_call() -> None:
    acd = Acd(offer_timeout_s=10, initial_aht_s=120)
    for name, languages in (("alice", ("en",)), ("bob", ("en",)), ("bruno", ("en", "es"))):
        acd.login(name, now=0, languages=languages)
    acd.set_ready("alice", True, now=0)
    acd.set_ready("bob", True, now=0)
    acd.enqueue(queued("es1", at=1.0, language="es"))
    acd.enqueue(queued("en1", at=2.0))
    acd.enqueue(queued("es2", at=3.0, language="es"))
    # Positions count the calls ahead in the same queue and language.
    assert (acd.position("es1"), acd.position("en1"), acd.position("es2")) == (1, 1, 2)
    assert acd.estimated_wait_s("en1") == 60  # alice and bob serve; bruno is not ready
    assert acd.estimated_wait_s("es2") == 240  # nobody who speaks Spanish serves: counted as one
    acd.set_ready("bruno", True, now=4)
    assert acd.estimated_wait_s("es2") == 240  # one Spanish speaker, two Spanish calls
    assert acd.estimated_wait_s("en1") == 40  # bruno takes English calls too


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
