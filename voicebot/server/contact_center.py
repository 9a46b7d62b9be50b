"""The live contact centre: the ACD, connected agent and supervisor desks, offers, the agent leg of
each answered call (its :class:`~voicebot.server.room.CallRoom`: hold, mute, transfers, supervisors)
and wrap-up, all persisted."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from voicebot.call.live_transcript import LiveLine
from voicebot.events import AgentLegAction, AgentLegSpeech, CallEvent
from voicebot.handoff.queue import Acd, Offer, QueuedCall, TransferRequest
from voicebot.handoff.record import HandoffRecord
from voicebot.handoff.redact import redact_typed_text
from voicebot.server.hold import TRANSFER_TO_COLLEAGUE
from voicebot.server.room import SUPERVISOR_MODES, AgentDesk, CallRoom, Member
from voicebot.storage import DispositionRow, PendingWrapUp, Storage

log = logging.getLogger("voicebot.server")
DISPOSITIONS = ("resolved", "follow_up", "transferred")
MAX_NOTE_CHARS = 2000
# What the screen pop shows besides the handoff record (the caller's history, the customer panel).
PopExtras = Callable[[HandoffRecord], dict[str, Any]]

__all__ = ["DISPOSITIONS", "AgentDesk", "CallerLink", "ContactCenter", "Talk"]


class CallerLink(Protocol):
    """The caller's side of a queued call (a media call's :class:`~voicebot.server.caller_leg.CallerLeg`)."""

    call_id: str

    def open_room(self, agent: str) -> CallRoom:
        """The first agent answered: from the next frame the caller is served by the returned room."""

    def agent_hung_up(self) -> None:
        """The last agent left the call: it ends."""

    def event(self, event: CallEvent) -> None:
        """One event of the agent leg for the call's trace."""


@dataclass
class Talk:
    """An agent's part of an answered call, from their accept until their disposition is in (wrap-up
    from ``ended_at``); stored as a :class:`PendingWrapUp` too, so that a dropped desk or a restart
    finds it. A consulted agent of a warm transfer has a talk that becomes theirs (stored, with a
    wrap-up) only once the transfer is completed; cancelled, it is dropped."""

    call_id: str
    pop: dict[str, Any] | None  # the screen pop (the handoff record), shown again when the desk reconnects
    caller: CallerLink | None  # None: restored after a restart, the call long over
    started_at: float
    ended_at: float | None = None
    hold_s: float = 0.0
    held_since: float | None = None
    consulting: bool = False
    transfer_note: str = ""  # the note of the agent who transferred the call to this one
    extras: dict[str, Any] | None = None  # the offer's history and customer panel, shown in wrap-up too
    # The record itself, with the account the caller authenticated as (not in ``pop``): a transfer
    # gives the next agent the same customer panel. None when restored after a restart.
    record: HandoffRecord | None = None

    def hold_time(self, now: float) -> float:
        return self.hold_s + (now - self.held_since if self.held_since is not None else 0.0)

    def hold(self, on: bool, now: float) -> None:
        if on and self.held_since is None:
            self.held_since = now
        elif not on and self.held_since is not None:
            self.hold_s, self.held_since = self.hold_time(now), None


class ContactCenter:
    def __init__(
        self,
        storage: Storage,
        offer_timeout_s: float,
        dispatch_interval_s: float = 0.2,
        pop_extras: PopExtras | None = None,
    ) -> None:
        self.storage = storage
        self.acd = Acd(offer_timeout_s, on_state=self.storage.agent_state_changed)
        self.dispatch_interval_s = dispatch_interval_s
        self.pop_extras = pop_extras
        self.desks: dict[str, AgentDesk] = {}
        self.supervisors: dict[str, AgentDesk] = {}
        self.callers: dict[str, CallerLink] = {}  # queued, by call id (also those being transferred)
        self.rooms: dict[str, CallRoom] = {}  # answered calls' agent legs, by call id
        self.talks: dict[str, Talk] = {}  # by agent
        self.help_requests: dict[str, str] = {}  # call id -> the agent who asked for a supervisor
        self._offered: dict[str, dict[str, Any]] = {}  # the extras of calls on offer, by call id
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    # ----- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """After the records a stopped run left open were closed (``RecordKeeper.start``)."""
        self._restore_wrap_ups(time.time())
        self._task = asyncio.create_task(self._dispatch_forever())

    def _restore_wrap_ups(self, now: float) -> None:
        """The talks the previous run left without a disposition: each agent finds theirs in wrap-up
        when their desk connects. One still on when it stopped ended with its call (the call's
        recorded end) or, where that is unknown, at this start."""
        for pending in self.storage.pending_wrap_ups():
            ended_at = pending.talk_ended_at
            if ended_at is None:
                call = self.storage.get_call(pending.call_id)
                ended_at = call.ended_at if call is not None and call.ended_at is not None else now
            pop = self.storage.get_handoff(pending.call_id)
            talk = Talk(pending.call_id, pop, None, pending.talk_started_at, hold_s=pending.hold_s)
            self.talks[pending.agent] = talk
            self._talk_ended(pending.agent, ended_at)
            log.info("agent %s has the wrap-up of call %s to finish", pending.agent, pending.call_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _dispatch_forever(self) -> None:
        while True:
            try:
                await self.dispatch()
            except Exception:  # one bad desk or call must not stop the distributor
                log.exception("dispatch failed")
            await asyncio.sleep(self.dispatch_interval_s)

    async def dispatch(self) -> None:
        expired, offers = self.acd.dispatch(time.time())
        for offer in expired:
            await self._send_to(offer.agent, {"type": "offer_withdrawn", "call_id": offer.call.call_id})
            await self._send_state(offer.agent)
        for offer in offers:
            await self._offer(offer)

    async def _offer(self, offer: Offer) -> None:
        call = offer.call
        message: dict[str, Any] = {
            "type": "offer",
            "call_id": call.call_id,
            "queue": call.queue,
            "waited_s": round(time.time() - call.entered_at, 1),
            "pop": call.record.to_dict(),
            "transfer": dataclasses.asdict(call.transfer) if call.transfer is not None else None,
        }
        extras = self._offered[call.call_id] = self._extras(call.record)
        await self._send_to(offer.agent, message | extras)
        await self._send_state(offer.agent)

    def _extras(self, record: HandoffRecord) -> dict[str, Any]:
        if self.pop_extras is None:
            return {}
        try:
            return self.pop_extras(record)
        except Exception:  # the pop without history is better than no offer
            log.exception("call %s: the screen pop's history or customer panel failed", record.call_id)
            return {}

    # ----- callers -------------------------------------------------------------------------------

    def enqueue(self, caller: CallerLink, record: HandoffRecord) -> QueuedCall:
        """Queues the caller; their handoff record was stored when the bot escalated."""
        now = time.time()
        call = QueuedCall(record.call_id, record, entered_at=now)
        call.entry_id = self.storage.queue_entered(record.call_id, record.queue, now)
        self.acd.enqueue(call)
        self.callers[call.call_id] = caller
        return call

    async def leave_queue(self, call_id: str, result: str) -> None:
        """The caller left before an agent answered: ``abandoned`` or ``callback``."""
        self.callers.pop(call_id, None)
        self._offered.pop(call_id, None)
        call = self.acd.remove(call_id, time.time())
        if call is None:
            return
        if call.entry_id:
            self.storage.queue_left(call.entry_id, result, time.time())
        if result == "callback":
            self.storage.add_callback(call.record, time.time())
        if call.offered_to is not None:
            await self._send_to(call.offered_to, {"type": "offer_withdrawn", "call_id": call_id})
            await self._send_state(call.offered_to)

    async def caller_hung_up(self, call_id: str) -> None:
        """The caller hung up after an agent answered: each agent on the call goes to wrap-up (a
        consulted agent of a transfer not completed is ready again), a transfer waiting is
        abandoned, supervisors on it are told."""
        if call_id in self.acd.calls:
            await self.leave_queue(call_id, "abandoned")
        for agent, talk in list(self.talks.items()):
            if talk.call_id == call_id and talk.ended_at is None:
                await self._leave(agent, talk, "caller")
        await self._close_room(call_id)

    async def _close_room(self, call_id: str) -> None:
        """The agent leg is over: supervisors still on it are told, its last words recognised."""
        room = self.rooms.pop(call_id, None)
        self.help_requests.pop(call_id, None)
        if room is not None:
            for member in list(room.members.values()):
                room.leave(member.name)
                if member.role == "supervisor":
                    await self._send_to_supervisor(member.name, {"type": "monitor_ended", "call_id": call_id})
            await room.close()
        await self._supervisors_update()

    # ----- agents --------------------------------------------------------------------------------

    async def desk_connected(self, desk: AgentDesk) -> None:
        previous = self.desks.get(desk.username)
        if previous is not None:
            await previous.send({"type": "signed_in_elsewhere"})  # that page stops reconnecting
            await previous.ws.close(message=b"signed in elsewhere")
        self.desks[desk.username] = desk
        # The seat gets the account's skills: the languages the agent speaks and the queues served.
        account = self.storage.get_agent(desk.username)
        skills = (account.languages, account.queues) if account is not None else ()
        self.acd.login(desk.username, time.time(), *skills)
        talk = self.talks.get(desk.username)
        if talk is not None and talk.ended_at is not None:
            # Back from a dropped desk or a restart: the wrap-up resumes, and no call is offered to
            # the agent until it is submitted.
            self.acd.restore(desk.username, "wrap_up", talk.ended_at, talk.call_id)
        await self._send_state(desk.username)

    async def desk_disconnected(self, desk: AgentDesk) -> None:
        if self.desks.get(desk.username) is not desk:
            return  # replaced by a newer connection
        talk = self.talks.get(desk.username)
        if talk is not None and talk.ended_at is None:
            await self._leave(desk.username, talk, "desk_closed")  # its wrap-up waits for the desk
        del self.desks[desk.username]
        # The seat goes; a wrap-up left open stays (stored) for when the desk reconnects.
        self.acd.logout(desk.username, time.time())
        for call in self.acd.calls.values():  # a transfer to this agent now waits for their queue
            if call.transfer is not None and call.transfer.agent == desk.username:
                call.transfer = dataclasses.replace(call.transfer, agent=None)

    def talking(self, username: str) -> bool:
        talk = self.talks.get(username)
        return talk is not None and talk.ended_at is None

    async def set_ready(self, username: str, ready: bool) -> None:
        self.acd.set_ready(username, ready, time.time())
        await self._send_state(username)
        await self.dispatch()

    async def accept(self, username: str, call_id: str) -> None:
        now = time.time()
        call = self.acd.accept(username, call_id, now)
        if call.entry_id:
            self.storage.queue_left(call.entry_id, "answered", now, agent=username)
        transfer = call.transfer
        room = self.rooms.get(call_id)
        if room is None:  # the first agent: the caller comes into the call's room
            caller = self.callers.pop(call_id)
            room = self.rooms[call_id] = caller.open_room(username)
            room.on_line.append(lambda line: self._spread_line(call_id, line))
        else:
            caller = self.callers.pop(call_id, None) or self._caller_of(call_id)
        consulting = transfer is not None and transfer.mode == "warm"
        note = transfer.note if transfer is not None else ""
        extras = self._offered.pop(call_id, None)
        talk = Talk(
            call_id,
            call.record.to_dict(),
            caller,
            now,
            consulting=consulting,
            transfer_note=note,
            extras=extras,
            record=call.record,
        )
        self.talks[username] = talk
        if not consulting:
            self.storage.save_pending_wrap_up(PendingWrapUp(username, call_id, now, None))
        room.join(Member(username, "agent", self.desks[username]))
        if transfer is not None and not consulting:
            room.set_hold(False)  # a cold transfer: the caller waited on hold for this agent
        talk.hold(room.on_hold, now)
        self._trace(call_id, AgentLegAction(action="accepted", by=username, target=call.queue))
        await self._send_to(username, {"type": "connected", "call_id": call_id})
        await self._send_state(username)
        await self._room_update(call_id)

    async def hold(self, username: str, on: bool) -> None:
        talk, room = self._on_call(username)
        if talk.consulting:
            raise ValueError("the transferring agent holds the caller during a consult")
        if self._transfer_waiting(talk.call_id) is not None and not on:
            raise ValueError("cancel the transfer first: the caller waits on hold for it")
        if room.on_hold == on:
            return
        room.set_hold(on)
        now = time.time()
        for agent in room.agents:
            self.talks[agent].hold(on, now)
        self._trace(talk.call_id, AgentLegAction(action="hold" if on else "resume", by=username))
        await self._room_update(talk.call_id)

    async def mute(self, username: str, on: bool) -> None:
        talk, room = self._on_call(username)
        room.members[username].muted = on
        self._trace(talk.call_id, AgentLegAction(action="mute" if on else "unmute", by=username))
        await self._room_update(talk.call_id)

    async def agent_hangup(self, username: str) -> None:
        """The agent leaves the call. The last agent on it ends it; one who leaves a consult they
        started completes the transfer (the caller stays with the consulted agent)."""
        talk, _ = self._on_call(username)
        if talk.consulting:
            await self.cancel_transfer(username)
            return
        consulted = self._consulted_agent(talk.call_id)
        if consulted is not None:
            await self.complete_transfer(username)
            return
        self._trace(talk.call_id, AgentLegAction(action="hangup", by=username))
        await self._leave(username, talk, "agent")
        await self._room_update(talk.call_id)

    async def transfer(
        self, username: str, mode: str, note: str, queue: str | None, agent: str | None
    ) -> None:
        """Sends the caller to ``queue`` or a named ``agent``: ``cold`` leaves them waiting on hold
        for the target while this agent wraps up; ``warm`` puts them on hold while this agent
        consults the target, who sees the screen pop and the note before they accept."""
        talk, room = self._on_call(username)
        if mode not in ("cold", "warm"):
            raise ValueError("a transfer is cold or warm")
        if talk.consulting or self._transfer_waiting(talk.call_id) or self._consulted_agent(talk.call_id):
            raise ValueError("a transfer of this call is already under way")
        if agent is not None and (agent == username or agent not in self.desks):
            raise ValueError(f"agent {agent} is not signed in")
        if not queue and agent is None:
            raise ValueError("a transfer needs a queue or an agent")
        assert talk.caller is not None and talk.record is not None
        now = time.time()
        record = talk.record
        note = redact_typed_text(note[:MAX_NOTE_CHARS])
        request = TransferRequest(username, mode, note, queue or record.queue, agent)
        call = QueuedCall(talk.call_id, record, entered_at=now, transfer=request)
        if mode == "cold":
            call.entry_id = self.storage.queue_entered(talk.call_id, request.queue, now)
        self.acd.enqueue(call)
        self.callers[talk.call_id] = talk.caller
        target = agent or request.queue
        self._trace(
            talk.call_id,
            AgentLegAction(action="transfer" if mode == "cold" else "consult", by=username, target=target),
        )
        if mode == "cold":
            room.set_hold(True, TRANSFER_TO_COLLEAGUE)
            await self._leave(username, talk, "transferred")
        elif not room.on_hold:
            room.set_hold(True)
            for member in room.agents:
                self.talks[member].hold(True, now)
        await self._room_update(talk.call_id)
        await self.dispatch()

    async def cancel_transfer(self, username: str) -> None:
        """Either side calls a warm transfer off: the consulted agent (if they answered) leaves and
        is ready again; the transferring agent stays with the caller, still on hold."""
        talk, room = self._on_call(username)
        call_id = talk.call_id
        waiting = self._transfer_waiting(call_id)
        if waiting is not None:
            await self.leave_queue(call_id, "cancelled")
        consulted = self._consulted_agent(call_id)
        if waiting is None and consulted is None:
            raise ValueError("no transfer of this call is under way")
        if consulted is not None:
            room.leave(consulted)
            del self.talks[consulted]
            self.acd.finish_wrap_up(consulted, time.time())  # no wrap-up: they never had the caller
            await self._send_to(consulted, {"type": "call_ended", "by": "transfer_cancelled"})
            await self._send_state(consulted)
        self._trace(call_id, AgentLegAction(action="consult_cancelled", by=username))
        await self._room_update(call_id)
        await self.dispatch()

    async def complete_transfer(self, username: str) -> None:
        """The transferring agent hands the caller to the consulted one and wraps up."""
        talk, room = self._on_call(username)
        consulted = self._consulted_agent(talk.call_id)
        if consulted is None or talk.consulting:
            raise ValueError("no consulted agent has answered yet")
        now = time.time()
        target = self.talks[consulted]
        target.consulting = False
        self.storage.save_pending_wrap_up(PendingWrapUp(consulted, talk.call_id, target.started_at, None))
        self._trace(talk.call_id, AgentLegAction(action="transfer_completed", by=username, target=consulted))
        await self._leave(username, talk, "transferred")
        room.set_hold(False)
        for agent in room.agents:
            self.talks[agent].hold(False, now)
        await self._room_update(talk.call_id)

    async def request_supervisor(self, username: str) -> None:
        """Asks a supervisor to join the call (shown on every supervisor's dashboard)."""
        talk, _ = self._on_call(username)
        if not self.supervisors:
            raise ValueError("no supervisor is signed in to the dashboard")
        self.help_requests[talk.call_id] = username
        self._trace(talk.call_id, AgentLegAction(action="supervisor_requested", by=username))
        for supervisor in list(self.supervisors):
            await self._send_to_supervisor(
                supervisor, {"type": "help_requested", "call_id": talk.call_id, "agent": username}
            )
        await self._room_update(talk.call_id)

    async def wrap_up(self, username: str, disposition: str, notes: str) -> None:
        talk = self.talks.get(username)
        if talk is None or talk.ended_at is None:
            raise ValueError(f"agent {username} has no call to wrap up")
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        now = time.time()
        del self.talks[username]
        # One row per agent and call; the pending wrap-up is closed with it (a second submit finds
        # no talk).
        self.storage.save_disposition(
            DispositionRow(
                talk.call_id,
                username,
                disposition,
                redact_typed_text(notes[:MAX_NOTE_CHARS]),
                talk.started_at,
                talk.ended_at,
                now,
                round(talk.hold_s, 3),
            )
        )
        self.acd.record_handle_time(now - talk.started_at)
        self.acd.finish_wrap_up(username, now)
        await self._send_state(username)
        await self.dispatch()

    async def _leave(self, username: str, talk: Talk, by: str) -> None:
        """The agent is off the call: their talk ends, the wrap-up starts (a consulted agent's talk
        is dropped instead: they are ready again). The call goes on with the agents left on it, or
        waiting for a transfer's target; without either it ends."""
        room = self.rooms.get(talk.call_id)
        alone = False
        if room is not None:
            room.leave(username)
            alone = not room.agents and self._transfer_waiting(talk.call_id) is None
            if alone and by != "caller" and talk.caller is not None:
                talk.caller.agent_hung_up()
        if talk.consulting:
            del self.talks[username]
            self.acd.finish_wrap_up(username, time.time())
        else:
            self._end_talk(username)
        await self._send_to(username, {"type": "call_ended", "by": by})
        await self._send_state(username)
        if alone and by != "caller":
            await self._close_room(talk.call_id)

    def _end_talk(self, username: str) -> None:
        now = time.time()
        self.talks[username].hold(False, now)
        self._talk_ended(username, now)
        self.acd.end_talk(username, now)

    def _talk_ended(self, username: str, at: float) -> None:
        """The talk's end, kept in storage: its wrap-up starts then."""
        talk = self.talks[username]
        talk.ended_at = at
        pending = PendingWrapUp(username, talk.call_id, talk.started_at, at, round(talk.hold_s, 3))
        self.storage.save_pending_wrap_up(pending)

    def _on_call(self, username: str) -> tuple[Talk, CallRoom]:
        talk = self.talks.get(username)
        room = self.rooms.get(talk.call_id) if talk is not None else None
        if talk is None or talk.ended_at is not None or room is None or username not in room.members:
            raise ValueError(f"agent {username} is not on a call")
        return talk, room

    def _caller_of(self, call_id: str) -> CallerLink | None:
        return next((t.caller for t in self.talks.values() if t.call_id == call_id and t.caller), None)

    def _transfer_waiting(self, call_id: str) -> QueuedCall | None:
        return self.acd.calls.get(call_id)

    def _consulted_agent(self, call_id: str) -> str | None:
        return next((a for a, t in self.talks.items() if t.call_id == call_id and t.consulting), None)

    def _trace(self, call_id: str, event: CallEvent) -> None:
        event.call_id = call_id
        caller = self._caller_of(call_id) or self.callers.get(call_id)
        if caller is not None:
            caller.event(event)

    # ----- what the desks are told ---------------------------------------------------------------

    def _spread_line(self, call_id: str, line: LiveLine) -> None:
        """A line of the live transcript: into the trace, and to every desk on the call."""
        self._trace(call_id, AgentLegSpeech(speaker=line.speaker, text=line.text))
        room = self.rooms.get(call_id)
        if room is None:
            return
        message = {
            "type": "transcript",
            "call_id": call_id,
            "speaker": line.speaker,
            "text": line.text,
            "at": line.at,
        }
        for member in room.members.values():
            assert member.desk is not None
            # Called back by the recognition, not awaited: the sends are tasks, kept until done.
            task = asyncio.create_task(member.desk.send(message))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def call_status(self, call_id: str, now: float) -> dict[str, Any]:
        """The call as its desks show it: hold, who is on it, a transfer under way."""
        room = self.rooms.get(call_id)
        waiting = self._transfer_waiting(call_id)
        consulted = self._consulted_agent(call_id)
        transfer: dict[str, Any] | None = None
        if waiting is not None and waiting.transfer is not None:
            request = waiting.transfer
            transfer = {**dataclasses.asdict(request), "state": "waiting", "offered_to": waiting.offered_to}
        elif consulted is not None:
            transfer = {"mode": "warm", "agent": consulted, "state": "connected"}
        members = [] if room is None else [
            {"name": m.name, "role": m.role, "mode": m.mode, "muted": m.muted} for m in room.members.values()
        ]  # fmt: skip
        return {
            "call_id": call_id,
            "on_hold": room is not None and room.on_hold,
            "members": members,
            "transfer": transfer,
            "supervisor_requested": call_id in self.help_requests,
        }

    async def _room_update(self, call_id: str) -> None:
        now = time.time()
        status = self.call_status(call_id, now)
        room = self.rooms.get(call_id)
        for member in [] if room is None else list(room.members.values()):
            talk = self.talks.get(member.name)
            message: dict[str, Any] = {"type": "call", **status}
            if talk is not None:
                message |= {
                    "talk_started_at": talk.started_at,
                    "hold_s": round(talk.hold_time(now), 1),
                    "held_since": talk.held_since,
                    "consulting": talk.consulting,
                    "transfer_note": talk.transfer_note,
                    "muted": member.muted,
                }
            if member.role == "supervisor" or talk is not None:
                assert member.desk is not None
                await member.desk.send(message)
        await self._supervisors_update()

    async def _send_state(self, username: str) -> None:
        """The seat's state; in wrap-up with what the desk needs to show it again (after a reconnect
        or a reload of the page): the screen pop and the talk's times (its end: the wrap-up's start)."""
        seat = self.acd.agents.get(username)
        if seat is None:
            return
        message: dict[str, Any] = {"type": "state", "state": seat.state, "call_id": seat.call_id}
        talk = self.talks.get(username)
        if seat.state == "wrap_up" and talk is not None:
            if talk.extras is None and talk.pop is not None:  # restored after a restart
                talk.extras = self._extras(HandoffRecord.from_dict(talk.pop))
            times = {
                "talk_started_at": talk.started_at,
                "talk_ended_at": talk.ended_at,
                "hold_s": round(talk.hold_s, 1),
            }
            message["wrap_up"] = {
                "pop": talk.pop,
                **times,
                **(talk.extras or {}),
                "transfer_note": talk.transfer_note,
            }
        await self._send_to(username, message)
        await self._supervisors_update()

    async def _send_to(self, username: str, message: dict[str, Any]) -> None:
        desk = self.desks.get(username)
        if desk is not None:
            await desk.send(message)

    # ----- supervisors ---------------------------------------------------------------------------

    async def supervisor_connected(self, desk: AgentDesk) -> None:
        previous = self.supervisors.get(desk.username)
        if previous is not None:
            await self.supervisor_leaves(desk.username)
            await previous.ws.close(message=b"signed in elsewhere")
        self.supervisors[desk.username] = desk
        await desk.send({"type": "live", **self.snapshot()})

    async def supervisor_disconnected(self, desk: AgentDesk) -> None:
        if self.supervisors.get(desk.username) is desk:
            await self.supervisor_leaves(desk.username)
            del self.supervisors[desk.username]

    def supervising(self, username: str) -> CallRoom | None:
        return next((room for room in self.rooms.values() if username in room.members), None)

    async def supervise(self, username: str, call_id: str, mode: str) -> None:
        """Joins the call (or changes how): ``monitor`` listens to both sides, ``whisper`` speaks
        to the agents only, ``barge`` joins the conversation."""
        if mode not in SUPERVISOR_MODES:
            raise ValueError(f"mode must be one of {', '.join(SUPERVISOR_MODES)}")
        room = self.rooms.get(call_id)
        if room is None:
            raise ValueError(f"call {call_id} has no agent on it")
        current = self.supervising(username)
        if current is not None and current is not room:
            await self.supervisor_leaves(username)
        member = room.members.get(username)
        if member is None:
            member = Member(username, "supervisor", self.supervisors[username], mode=mode)
            room.join(member)
        member.mode = mode
        if mode == "barge":
            self.help_requests.pop(call_id, None)
        self._trace(call_id, AgentLegAction(action=mode, by=username))
        await self._send_to_supervisor(username, {"type": "monitoring", "call_id": call_id, "mode": mode})
        await self._room_update(call_id)

    async def supervisor_leaves(self, username: str) -> None:
        room = self.supervising(username)
        if room is None:
            return
        room.leave(username)
        self._trace(room.call_id, AgentLegAction(action="left", by=username))
        await self._send_to_supervisor(username, {"type": "monitor_ended", "call_id": room.call_id})
        await self._room_update(room.call_id)

    async def _send_to_supervisor(self, username: str, message: dict[str, Any]) -> None:
        desk = self.supervisors.get(username)
        if desk is not None:
            await desk.send(message)

    async def _supervisors_update(self) -> None:
        if not self.supervisors:
            return
        message = {"type": "live", **self.snapshot()}
        for desk in list(self.supervisors.values()):
            await desk.send(message)

    # ----- live view -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        queues: dict[str, list[dict[str, Any]]] = {}
        for call in self.acd.waiting():
            if call.transfer is not None and call.transfer.mode == "warm":
                continue  # a consult: the caller is with their agent, not waiting in a queue
            queues.setdefault(call.queue, []).append(
                {
                    "call_id": call.call_id,
                    "reason": call.record.reason,
                    "language": call.language,
                    "waiting_s": round(now - call.entered_at, 1),
                    "offered_to": call.offered_to,
                    "transferred_by": call.transfer.from_agent if call.transfer is not None else None,
                }
            )
        agents = [
            {
                "username": seat.username,
                "state": seat.state,
                "for_s": round(now - seat.since, 1),
                "languages": list(seat.languages),
                "queues": list(seat.queues),
                "call_id": seat.call_id,
            }
            for seat in sorted(self.acd.agents.values(), key=lambda seat: seat.username)
        ]
        calls = [self.call_status(call_id, now) for call_id in sorted(self.rooms)]
        return {"queues": queues, "agents": agents, "calls": calls, "aht_s": round(self.acd.aht_s, 1)}
