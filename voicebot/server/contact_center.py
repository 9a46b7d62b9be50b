"""The live contact centre: the ACD, connected agent desks, offers, talks and wrap-up, all persisted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from voicebot.call import SILENCE
from voicebot.handoff.queue import Acd, Offer, QueuedCall
from voicebot.handoff.record import HandoffRecord
from voicebot.handoff.redact import redact_typed_text
from voicebot.storage import DispositionRow, PendingWrapUp, Storage

log = logging.getLogger("voicebot.server")
DISPOSITIONS = ("resolved", "follow_up", "transferred")
MAX_AGENT_BUFFERED_FRAMES = 25  # 0.5 s of the agent's microphone; older audio is dropped


class CallerLink(Protocol):
    """The caller's side of a queued call (a media call's :class:`~voicebot.server.caller_leg.CallerLeg`)."""

    call_id: str

    def connect_agent(self, agent: AgentDesk) -> None: ...
    def agent_hung_up(self) -> None: ...


@dataclass
class AgentDesk:
    """One logged-in agent's desk connection; ``inbound`` holds their microphone frames."""

    username: str
    ws: web.WebSocketResponse
    inbound: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_AGENT_BUFFERED_FRAMES))

    async def send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_json(message)

    async def send_audio(self, frame: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(frame)

    async def exchange(self, frame: bytes) -> bytes:
        """One 20 ms of a bridged call: the caller's frame to the agent, the agent's next one back."""
        await self.send_audio(frame)
        return self.inbound.popleft() if self.inbound else SILENCE


@dataclass
class Talk:
    """An agent's answered call, from the accept until the disposition is in (wrap-up from
    ``ended_at``); stored as a :class:`PendingWrapUp` too, so that a dropped desk or a restart finds it."""

    call_id: str
    pop: dict[str, Any] | None  # the screen pop (the handoff record), shown again when the desk reconnects
    caller: CallerLink | None  # None: restored after a restart, the call long over
    started_at: float
    ended_at: float | None = None


class ContactCenter:
    def __init__(self, storage: Storage, offer_timeout_s: float, dispatch_interval_s: float = 0.2) -> None:
        self.storage = storage
        self.acd = Acd(offer_timeout_s)
        self.dispatch_interval_s = dispatch_interval_s
        self.desks: dict[str, AgentDesk] = {}
        self.callers: dict[str, CallerLink] = {}  # queued, by call id
        self.talks: dict[str, Talk] = {}  # by agent
        self._task: asyncio.Task[None] | None = None

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
            self.talks[pending.agent] = Talk(pending.call_id, pop, None, pending.talk_started_at)
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
        message = {
            "type": "offer",
            "call_id": call.call_id,
            "queue": call.queue,
            "waited_s": round(time.time() - call.entered_at, 1),
            "pop": call.record.to_dict(),
        }
        await self._send_to(offer.agent, message)
        await self._send_state(offer.agent)

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
        call = self.acd.remove(call_id, time.time())
        if call is None:
            return
        self.storage.queue_left(call.entry_id, result, time.time())
        if result == "callback":
            self.storage.add_callback(call.record, time.time())
        if call.offered_to is not None:
            await self._send_to(call.offered_to, {"type": "offer_withdrawn", "call_id": call_id})
            await self._send_state(call.offered_to)

    async def caller_hung_up(self, call_id: str) -> None:
        """The caller hung up while talking to an agent: the agent goes to wrap-up."""
        for agent, talk in list(self.talks.items()):
            if talk.call_id == call_id and talk.ended_at is None:
                self._end_talk(agent)
                await self._send_to(agent, {"type": "call_ended", "by": "caller"})
                await self._send_state(agent)

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
        seat = self.acd.login(desk.username, time.time(), *skills)
        talk = self.talks.get(desk.username)
        if talk is not None and talk.ended_at is not None:
            # Back from a dropped desk or a restart: the wrap-up resumes, and no call is offered to
            # the agent until it is submitted.
            seat.state, seat.since, seat.call_id = "wrap_up", talk.ended_at, talk.call_id
        await self._send_state(desk.username)

    async def desk_disconnected(self, desk: AgentDesk) -> None:
        if self.desks.get(desk.username) is not desk:
            return  # replaced by a newer connection
        talk = self.talks.get(desk.username)
        if talk is not None and talk.ended_at is None and talk.caller is not None:
            talk.caller.agent_hung_up()  # the agent is gone from the call: it ends, its wrap-up waits
            self._end_talk(desk.username)
        del self.desks[desk.username]
        # The seat goes; a wrap-up left open stays (stored) for when the desk reconnects.
        self.acd.logout(desk.username, time.time())

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
        caller = self.callers.pop(call_id)
        self.storage.queue_left(call.entry_id, "answered", now, agent=username)
        self.talks[username] = Talk(call_id, call.record.to_dict(), caller, started_at=now)
        self.storage.save_pending_wrap_up(PendingWrapUp(username, call_id, now, None))
        caller.connect_agent(self.desks[username])
        await self._send_to(username, {"type": "connected", "call_id": call_id})
        await self._send_state(username)

    async def agent_hangup(self, username: str) -> None:
        talk = self.talks.get(username)
        if talk is None or talk.ended_at is not None or talk.caller is None:
            raise ValueError(f"agent {username} is not on a call")
        talk.caller.agent_hung_up()
        self._end_talk(username)
        await self._send_to(username, {"type": "call_ended", "by": "agent"})
        await self._send_state(username)

    async def wrap_up(self, username: str, disposition: str, notes: str) -> None:
        talk = self.talks.get(username)
        if talk is None or talk.ended_at is None:
            raise ValueError(f"agent {username} has no call to wrap up")
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        now = time.time()
        del self.talks[username]
        # One row per call; the pending wrap-up is closed with it (a second submit finds no talk).
        self.storage.save_disposition(
            DispositionRow(
                talk.call_id,
                username,
                disposition,
                redact_typed_text(notes[:2000]),
                talk.started_at,
                talk.ended_at,
                now,
            )
        )
        self.acd.record_handle_time(now - talk.started_at)
        self.acd.finish_wrap_up(username, now)
        await self._send_state(username)
        await self.dispatch()

    def _end_talk(self, username: str) -> None:
        now = time.time()
        self._talk_ended(username, now)
        self.acd.end_talk(username, now)

    def _talk_ended(self, username: str, at: float) -> None:
        """The talk's end, kept in storage: its wrap-up starts then."""
        talk = self.talks[username]
        talk.ended_at = at
        self.storage.save_pending_wrap_up(PendingWrapUp(username, talk.call_id, talk.started_at, at))

    async def _send_state(self, username: str) -> None:
        """The seat's state; in wrap-up with what the desk needs to show it again (after a reconnect
        or a reload of the page): the screen pop and the talk's times (its end: the wrap-up's start)."""
        seat = self.acd.agents.get(username)
        if seat is None:
            return
        message: dict[str, Any] = {"type": "state", "state": seat.state, "call_id": seat.call_id}
        talk = self.talks.get(username)
        if seat.state == "wrap_up" and talk is not None:
            times = {"talk_started_at": talk.started_at, "talk_ended_at": talk.ended_at}
            message["wrap_up"] = {"pop": talk.pop, **times}
        await self._send_to(username, message)

    async def _send_to(self, username: str, message: dict[str, Any]) -> None:
        desk = self.desks.get(username)
        if desk is not None:
            await desk.send(message)

    # ----- live view -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        queues: dict[str, list[dict[str, Any]]] = {}
        for call in self.acd.waiting():
            queues.setdefault(call.queue, []).append(
                {
                    "call_id": call.call_id,
                    "reason": call.record.reason,
                    "language": call.language,
                    "waiting_s": round(now - call.entered_at, 1),
                    "offered_to": call.offered_to,
                }
            )
        agents = [
            {
                "username": seat.username,
                "state": seat.state,
                "for_s": round(now - seat.since, 1),
                "languages": list(seat.languages),
                "queues": list(seat.queues),
            }
            for seat in sorted(self.acd.agents.values(), key=lambda seat: seat.username)
        ]
        return {"queues": queues, "agents": agents, "aht_s": round(self.acd.aht_s, 1)}
