"""Callbacks dialled out over SIP: a caller who pressed the callback key is queued again for the
agents as soon as it is stored, like a waiting caller; the agent who accepts sees the screen pop
first, then the bot dials the caller (``telephony.sip.callback_uri``) and bridges the two. What
became of it (answered, busy, no_answer, failed) is stored with the callback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from voicebot.config import SipConfig
from voicebot.engines import Engines
from voicebot.events import CallEvent
from voicebot.handoff.record import HandoffRecord
from voicebot.server.call_records import wall_offset
from voicebot.server.contact_center import ContactCenter
from voicebot.server.hold import HoldPlayer
from voicebot.server.room import CallRoom
from voicebot.storage import CallbackRequest, Storage
from voicebot.telephony.sip import DialFailed, IncomingCall, SipUserAgent
from voicebot.telephony.sip_call import SipCall
from voicebot.transports.line import CallerLine, HangUp

log = logging.getLogger("voicebot.server")
DIALER_INTERVAL_S = 1.0


class CallbackLeg:
    """One callback: the contact centre's CallerLink while queued, the SIP call's owner once placed."""

    def __init__(
        self, request: CallbackRequest, dialer: CallbackDialer, on_done: Callable[[CallbackRequest], None]
    ) -> None:
        self.request = request
        self.dialer = dialer
        self.call_id = request.call_id
        self.record = HandoffRecord.from_dict(request.record)
        self.uri = dialer.settings.callback_uri.format(caller_id=request.caller_id)  # type: ignore[union-attr]
        self._on_done = on_done
        self._room: CallRoom | None = None
        self._agent_left = False
        self.task: asyncio.Task[None] | None = None

    # ----- CallerLink ----------------------------------------------------------------------------

    def open_room(self, agent: str) -> CallRoom:
        """The agent accepted: the caller is dialled, and bridged to the room once they answer."""
        engines = self.dialer.engines()
        self._room = CallRoom(self.call_id, HoldPlayer(engines, self.record.language))
        self.task = asyncio.create_task(self._place())
        return self._room

    def agent_hung_up(self) -> None:
        self._agent_left = True

    async def _place(self) -> None:
        dialer = self.dialer
        try:
            dialog = await dialer.sip.dial(self.uri, "voicebot", dialer.settings.ring_timeout_s)
        except Exception as exc:  # busy, no answer, unreachable: the agent is told and wraps up
            result = exc.result if isinstance(exc, DialFailed) else "failed"
            log.info("callback %d to %s: %s", self.request.id, self.uri, exc)
            self._finish(result)
            await dialer.center.caller_hung_up(self.call_id)
            return
        incoming = IncomingCall(dialog, self.request.caller_id, self.uri)
        try:
            await SipCall(dialer.engines(), self, incoming, dialer.sip, callback=self.record).run()
        except Exception:  # the agent must not be left on a dead call
            log.exception("callback %d: the call failed", self.request.id)
            self._finish("failed")
            await dialer.center.caller_hung_up(self.call_id)

    def _finish(self, result: str) -> None:
        self.dialer.storage.callback_finished(self.request.id, result, time.time())
        self._on_done(self.request)

    # ----- CallOwner of the placed call (no bot: it serves from the first frame) --------------------

    def started(self, call_id: str, caller_id: str, language: str, at: float) -> None:
        """Never called: a callback has no bot session."""

    def event(self, event: CallEvent) -> None:
        """The agent leg's events (hold, transfers), in the trace of the call called back."""
        self.dialer.storage.buffer_trace_event(event, wall_offset())

    def handoff(self, record: HandoffRecord) -> None:
        """Never called: a callback has no bot session."""

    def escalated(self, record: HandoffRecord, line: CallerLine) -> None:
        """The placed call starts here: the agent accepted it, so it is theirs from the first frame."""

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        assert self._room is not None
        if self._agent_left:
            return HangUp("agent_hangup", "escalated")
        return await self._room.tick(frame)

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        self._finish("answered")
        if not self._agent_left:
            await self.dialer.center.caller_hung_up(self.call_id)


class CallbackDialer:
    """Queues every pending callback for the agents once (see the module's docstring)."""

    def __init__(
        self,
        center: ContactCenter,
        storage: Storage,
        engines: Callable[[], Engines],
        sip: SipUserAgent,
        settings: SipConfig,
    ) -> None:
        self.center = center
        self.storage = storage
        self.engines = engines
        self.sip = sip
        self.settings = settings
        self.legs: dict[int, CallbackLeg] = {}  # queued or in progress, by callback id

    async def run_forever(self) -> None:
        while True:
            try:
                self.queue_pending()
            except Exception:  # a bad stored record must not stop the others
                log.exception("callback dialer failed")
            await asyncio.sleep(DIALER_INTERVAL_S)

    def queue_pending(self) -> None:
        for request in self.storage.pending_callbacks():
            if request.id not in self.legs:
                leg = CallbackLeg(request, self, lambda done: self.legs.pop(done.id, None))
                self.legs[request.id] = leg
                self.center.enqueue(leg, leg.record)
