"""The agent leg of a call in the contact centre, without browsers: who hears whom (hold, mute,
supervisors' monitor / whisper / barge), cold and warm transfers with each agent's handle and hold
times, a supervisor asked for, and the agents' states kept over time. Desks are stand-ins that keep
what they were sent; the audio is constant frames, so each mix can be read off exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.desk_doubles import Clock, FakeCaller, FakeSocket
from voicebot.call import SILENCE
from voicebot.events import AgentLegAction
from voicebot.handoff.record import HandoffRecord, TranscriptLine
from voicebot.server import contact_center
from voicebot.server.auth import make_account
from voicebot.server.contact_center import AgentDesk, ContactCenter
from voicebot.server.hold import hold_music
from voicebot.server.room import CALLER, Member, hears
from voicebot.storage import SqliteStorage


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The contact centre's wall clock, moved by hand."""
    clock = Clock()
    monkeypatch.setattr(contact_center.time, "time", clock)
    return clock


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    for name, role in (("alice", "agent"), ("bob", "agent"), ("sue", "supervisor")):
        storage.save_agent(make_account(name, f"{name}-password", role))
    yield storage
    storage.close()


def level(value: int) -> bytes:
    """A 20 ms frame of one constant sample value: a mix of them is the sum of the values."""
    return np.full(320, value, dtype="<i2").tobytes()


def value_of(frame: bytes) -> int:
    samples = np.frombuffer(frame, dtype="<i2")
    assert (samples == samples[0]).all(), "not a constant frame"
    return int(samples[0])


CALLER_VOICE, ALICE_VOICE, BOB_VOICE, SUE_VOICE = 1, 10, 100, 1000


class Centre:
    """A contact centre with desks for alice and bob and, when asked, sue's supervisor socket."""

    def __init__(self, storage: SqliteStorage) -> None:
        self.storage = storage
        # The screen pop's extras: here just the account the record carries in memory.
        self.center = ContactCenter(
            storage, offer_timeout_s=30.0, pop_extras=lambda record: {"customer": {"account": record.account}}
        )
        self.sockets: dict[str, FakeSocket] = {}
        self.caller = FakeCaller("c1")

    async def sign_in(self, *agents: str) -> None:
        for name in agents:
            self.sockets[name] = FakeSocket()
            await self.center.desk_connected(AgentDesk(name, self.sockets[name]))  # type: ignore[arg-type]
            await self.center.set_ready(name, True)

    async def supervisor(self) -> FakeSocket:
        socket = self.sockets["sue"] = FakeSocket()
        await self.center.supervisor_connected(AgentDesk("sue", socket))  # type: ignore[arg-type]
        return socket

    async def answered_by(self, agent: str) -> None:
        record = HandoffRecord(
            "c1", "caller_request", "cards", "+15550100", "en", "authenticated",
            transcript=[TranscriptLine("Caller", "I lost my card")], account="12345678",
        )  # fmt: skip
        self.storage.save_handoff(record)
        self.center.enqueue(self.caller, record)
        await self.center.dispatch()
        await self.center.accept(agent, "c1")

    async def alice_with_bob_ready(self) -> None:
        """alice has the caller; bob, signed in too, was not ready until she had it."""
        await self.sign_in("alice", "bob")
        await self.center.set_ready("bob", False)
        await self.answered_by("alice")
        await self.center.set_ready("bob", True)

    async def bob_consulted(self) -> None:
        """alice has the caller on hold, consulting bob, who accepted her warm transfer."""
        await self.alice_with_bob_ready()
        await self.center.transfer("alice", "warm", "", queue=None, agent="bob")
        await self.center.accept("bob", "c1")

    def speak(self, name: str, value: int) -> None:
        """One frame of ``name``'s microphone, for the next tick."""
        desk = self.center.desks.get(name) or self.center.supervisors[name]
        desk.inbound.append(level(value))

    async def tick(self, caller_value: int = CALLER_VOICE) -> int | bytes:
        """One 20 ms with everyone speaking; what the caller heard (a value, or the frame itself)."""
        room = self.center.rooms["c1"]
        for member in room.members.values():
            self.speak(member.name, {"alice": ALICE_VOICE, "bob": BOB_VOICE, "sue": SUE_VOICE}[member.name])
        out = await room.tick(level(caller_value))
        try:
            return value_of(out)
        except AssertionError:
            return out

    def heard(self, name: str) -> int:
        return value_of(self.sockets[name].audio[-1])

    def last(self, name: str, kind: str) -> dict:
        return [m for m in self.sockets[name].messages if m["type"] == kind][-1]

    def actions(self) -> list[str]:
        return [e.action for e in self.caller.events if isinstance(e, AgentLegAction)]


def run(scenario: object) -> None:
    asyncio.run(scenario)  # type: ignore[arg-type]


def test_who_hears_whom() -> None:
    caller, agent = Member(CALLER, "caller"), Member("alice", "agent")
    monitor = Member("sue", "supervisor", mode="monitor")
    whisper = Member("sue", "supervisor", mode="whisper")
    barge = Member("sue", "supervisor", mode="barge")
    assert hears(caller, agent, on_hold=False) and hears(agent, caller, on_hold=False)
    assert not hears(caller, agent, on_hold=True) and not hears(agent, caller, on_hold=True)
    assert not hears(caller, monitor, False) and not hears(agent, monitor, False)
    assert hears(monitor, caller, False) and hears(monitor, agent, False)
    assert hears(agent, whisper, False) and not hears(caller, whisper, False)
    assert hears(caller, barge, False) and hears(agent, barge, False)
    agent.muted = True
    assert not hears(caller, agent, False) and not hears(monitor, agent, False)


def test_hold_plays_music_to_the_caller_parts_the_two_sides_and_counts_the_hold_time(
    storage: SqliteStorage, clock: Clock
) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice")
        await centre.answered_by("alice")
        assert await centre.tick() == ALICE_VOICE and centre.heard("alice") == CALLER_VOICE

        clock.now += 10
        await centre.center.hold("alice", True)
        music = hold_music()
        heard = await centre.tick()
        # No announcer here (no engines): music, from its start, and the agent hears nobody.
        assert heard == music[: len(SILENCE)] and centre.heard("alice") == 0
        status = centre.last("alice", "call")
        assert status["on_hold"] and status["held_since"] == clock.now

        clock.now += 25
        await centre.center.hold("alice", False)
        assert await centre.tick() == ALICE_VOICE and centre.heard("alice") == CALLER_VOICE
        assert centre.last("alice", "call")["hold_s"] == 25.0

        clock.now += 5
        await centre.center.agent_hangup("alice")
        assert centre.caller.agent_left  # the last agent left: the call ends
        await centre.center.wrap_up("alice", "resolved", "card replaced")
        [row] = storage.dispositions_of("c1")
        assert (row.hold_s, row.talk_ended_at - row.talk_started_at) == (25.0, 40.0)
        assert centre.actions() == ["accepted", "hold", "resume", "hangup"]

    run(scenario())


def test_a_muted_agent_is_heard_by_nobody_but_still_hears_the_caller(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice")
        await centre.answered_by("alice")
        await centre.center.mute("alice", True)
        assert await centre.tick() == 0 and centre.heard("alice") == CALLER_VOICE
        assert centre.last("alice", "call")["muted"] is True
        await centre.center.mute("alice", False)
        assert await centre.tick() == ALICE_VOICE

    run(scenario())


def test_a_supervisor_monitors_then_whispers_then_barges(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice")
        sue = await centre.supervisor()
        await centre.answered_by("alice")
        live = centre.last("sue", "live")
        assert [call["call_id"] for call in live["calls"]] == ["c1"]

        await centre.center.supervise("sue", "c1", "monitor")
        assert await centre.tick() == ALICE_VOICE  # the caller does not hear the supervisor
        assert centre.heard("alice") == CALLER_VOICE  # nor does the agent
        assert centre.heard("sue") == CALLER_VOICE + ALICE_VOICE  # who hears both sides

        await centre.center.supervise("sue", "c1", "whisper")
        assert await centre.tick() == ALICE_VOICE
        assert centre.heard("alice") == CALLER_VOICE + SUE_VOICE
        assert [m["mode"] for m in centre.last("alice", "call")["members"] if m["name"] == "sue"] == [
            "whisper"
        ]

        await centre.center.supervise("sue", "c1", "barge")
        assert await centre.tick() == ALICE_VOICE + SUE_VOICE
        assert centre.heard("alice") == CALLER_VOICE + SUE_VOICE

        await centre.center.supervisor_leaves("sue")
        assert await centre.tick() == ALICE_VOICE
        assert centre.last("sue", "monitor_ended")["call_id"] == "c1"
        assert len(sue.audio) == 3  # nothing after leaving
        assert centre.actions() == ["accepted", "monitor", "whisper", "barge", "left"]

    run(scenario())


def test_an_agent_asks_for_a_supervisor_who_joins_the_call(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice")
        await centre.supervisor()
        await centre.answered_by("alice")
        await centre.center.request_supervisor("alice")
        assert centre.last("sue", "help_requested") == {
            "type": "help_requested",
            "call_id": "c1",
            "agent": "alice",
        }
        assert centre.last("sue", "live")["calls"][0]["supervisor_requested"]
        await centre.center.supervise("sue", "c1", "barge")
        assert not centre.last("alice", "call")["supervisor_requested"]  # answered
        assert await centre.tick() == ALICE_VOICE + SUE_VOICE

    run(scenario())


def test_warm_transfer_consults_with_the_caller_on_hold_then_hands_the_caller_over(
    storage: SqliteStorage, clock: Clock
) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.alice_with_bob_ready()

        clock.now += 60
        await centre.center.transfer("alice", "warm", "wants a card limit raise", queue=None, agent="bob")
        offer = centre.last("bob", "offer")
        assert (
            offer["transfer"]["note"] == "wants a card limit raise"
            and offer["transfer"]["from_agent"] == "alice"
        )
        assert offer["pop"]["transcript"][0]["text"] == "I lost my card"  # the same screen pop
        assert offer["customer"] == {"account": "12345678"}  # the authenticated account goes along
        assert centre.last("alice", "call")["transfer"]["state"] == "waiting"
        assert await centre.tick() != ALICE_VOICE  # the caller is on hold meanwhile

        clock.now += 5
        await centre.center.accept("bob", "c1")
        assert centre.last("bob", "call")["consulting"] and centre.last("bob", "call")["transfer_note"]
        heard = await centre.tick()
        assert heard not in (ALICE_VOICE, BOB_VOICE)  # the caller still hears hold music
        assert centre.heard("alice") == BOB_VOICE and centre.heard("bob") == ALICE_VOICE  # the consult

        clock.now += 30
        await centre.center.complete_transfer("alice")
        assert centre.center.acd.agents["alice"].state == "wrap_up"
        assert await centre.tick() == BOB_VOICE and centre.heard("bob") == CALLER_VOICE

        clock.now += 100
        await centre.center.agent_hangup("bob")
        assert centre.caller.agent_left
        await centre.center.wrap_up("alice", "transferred", "to bob for the limit")
        await centre.center.wrap_up("bob", "resolved", "limit raised")
        alice, bob = storage.dispositions_of("c1")
        assert (alice.agent, alice.talk_ended_at - alice.talk_started_at, alice.hold_s) == (
            "alice",
            95.0,
            35.0,
        )
        assert (bob.agent, bob.talk_ended_at - bob.talk_started_at, bob.hold_s) == ("bob", 130.0, 30.0)
        assert centre.actions() == ["accepted", "consult", "accepted", "transfer_completed", "hangup"]

    run(scenario())


def test_a_warm_transfer_called_off_leaves_the_caller_with_the_first_agent(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.bob_consulted()
        await centre.center.cancel_transfer("alice")
        assert centre.center.acd.agents["bob"].state == "ready"  # no wrap-up: bob never had the caller
        assert "bob" not in centre.center.talks
        await centre.center.hold("alice", False)
        assert await centre.tick() == ALICE_VOICE

        # Called off before anyone answered: the offer is withdrawn.
        await centre.center.transfer("alice", "warm", "", queue="general", agent=None)
        assert centre.last("bob", "offer")["transfer"]["queue"] == "general"
        await centre.center.cancel_transfer("alice")
        assert centre.last("bob", "offer_withdrawn")["call_id"] == "c1"
        assert centre.center.acd.agents["bob"].state == "ready"

    run(scenario())


def test_cold_transfer_the_caller_waits_on_hold_first_in_line_for_the_target(
    storage: SqliteStorage, clock: Clock
) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice", "bob")
        await centre.center.set_ready("bob", False)
        await centre.answered_by("alice")
        other = FakeCaller("c2")  # a caller who was waiting before the transfer
        centre.center.enqueue(other, HandoffRecord("c2", "caller_request", "loans", "+1555", "en", "none"))

        await centre.center.transfer("alice", "cold", "loan question", queue="loans", agent=None)
        assert centre.center.acd.agents["alice"].state == "wrap_up"
        assert not centre.caller.agent_left  # the call goes on without alice
        assert await centre.tick() != ALICE_VOICE  # hold music
        await centre.center.set_ready("bob", True)
        offer = centre.last("bob", "offer")
        assert (offer["call_id"], offer["queue"], offer["transfer"]["note"]) == (
            "c1",
            "loans",
            "loan question",
        )
        await centre.center.accept("bob", "c1")
        assert await centre.tick() == BOB_VOICE  # off hold with bob
        [first, transfer] = [e for e in storage.queue_entries_since(0) if e.call_id == "c1"]
        assert (first.queue, first.agent, transfer.queue, transfer.agent) == (
            "cards",
            "alice",
            "loans",
            "bob",
        )

    run(scenario())


def test_a_transfer_to_an_agent_who_signs_out_goes_to_their_queue(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice", "bob")
        await centre.center.set_ready("bob", False)
        await centre.answered_by("alice")
        await centre.center.transfer("alice", "cold", "", queue="cards", agent="bob")
        await centre.center.desk_disconnected(centre.center.desks["bob"])
        await centre.sign_in("carol")  # any agent of the queue now
        assert centre.last("carol", "offer")["call_id"] == "c1"

    storage.save_agent(make_account("carol", "carol-password", "agent"))
    run(scenario())


def test_the_caller_hanging_up_during_a_consult_ends_both_agents_parts(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.bob_consulted()
        await centre.center.caller_hung_up("c1")
        assert centre.center.acd.agents["alice"].state == "wrap_up"
        assert centre.center.acd.agents["bob"].state == "ready"
        assert "c1" not in centre.center.rooms

    run(scenario())


def test_bad_control_requests_are_refused_with_a_reason(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice")
        with pytest.raises(ValueError, match="not on a call"):
            await centre.center.hold("alice", True)
        await centre.answered_by("alice")
        with pytest.raises(ValueError, match="not signed in"):
            await centre.center.transfer("alice", "warm", "", queue=None, agent="nobody")
        with pytest.raises(ValueError, match="cold or warm"):
            await centre.center.transfer("alice", "lukewarm", "", queue="loans", agent=None)
        with pytest.raises(ValueError, match="no transfer"):
            await centre.center.cancel_transfer("alice")
        with pytest.raises(ValueError, match="no supervisor"):
            await centre.center.request_supervisor("alice")
        await centre.center.agent_hangup("alice")
        with pytest.raises(ValueError, match="disposition first"):  # required before ready again
            await centre.center.set_ready("alice", True)
        await centre.supervisor()
        with pytest.raises(ValueError, match="no agent on it"):  # the call is over
            await centre.center.supervise("sue", "c1", "monitor")

    run(scenario())


def test_the_agents_states_are_kept_over_time(storage: SqliteStorage, clock: Clock) -> None:
    async def scenario() -> None:
        centre = Centre(storage)
        await centre.sign_in("alice")
        clock.now += 10
        await centre.answered_by("alice")
        clock.now += 30
        await centre.center.agent_hangup("alice")
        clock.now += 5
        await centre.center.wrap_up("alice", "resolved", "")
        await centre.center.desk_disconnected(centre.center.desks["alice"])

    run(scenario())
    rows = [
        (r.state, r.ended_at is not None and r.ended_at - r.started_at) for r in storage.agent_states_since(0)
    ]
    assert rows == [
        ("not_ready", 0.0), ("ready", 10.0), ("offered", 0.0),
        ("talking", 30.0), ("wrap_up", 5.0), ("ready", 0.0),
    ]  # fmt: skip
