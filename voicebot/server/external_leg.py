"""A call whose escalation goes to someone else's queue: the PBX's (Asterisk's Queue() after an
AudioSocket call, a SIP transfer target), not the built-in contact centre.

The records are kept as for the contact centre's calls (:class:`CallRecords`): the handoff record is
stored under the call's id the moment the bot escalates, so the PBX or its agents' desktop can fetch
it (``GET /api/handoffs/{call_id}``).

- :class:`ExternalTransferLeg` (AudioSocket): once the transfer prompt has played, the line hangs up
  with reason ``transferred`` and the dialplan goes on with its next priority.
- :class:`TransferLeg` (SIP): the transfer is attempted while the caller is still ours; when it
  fails (the target is busy, unreachable or refuses), the caller is told and waits in the built-in
  contact centre's queue instead, so an escalated caller is never simply cut off.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod

from voicebot.call import SILENCE
from voicebot.events import CallEvent
from voicebot.handoff.record import HandoffRecord
from voicebot.server.call_records import CallRecords
from voicebot.server.caller_leg import CallerLeg
from voicebot.server.hold import TRANSFER_UNAVAILABLE
from voicebot.telephony.sip import Dialog, SipUserAgent
from voicebot.telephony.sip_call import refer
from voicebot.transports.line import CallerLine, HangUp

log = logging.getLogger("voicebot.server")
TRANSFERRED = HangUp("transferred", "escalated")


class ExternalTransferLeg(CallRecords):
    """The :class:`~voicebot.transports.line.CallOwner` of a call handed to an external queue."""

    def escalated(self, record: HandoffRecord, line: CallerLine) -> None:
        """Nothing to set up: the first step after the transfer prompt hands the caller over."""

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        return TRANSFERRED

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        self.record_end(outcome, reason, events)


class TransferLeg(ABC):
    """A :class:`~voicebot.transports.line.CallOwner` that transfers the caller elsewhere, with the
    contact centre's :class:`CallerLeg` (which also keeps the call's records) as the fallback."""

    def __init__(self, fallback: CallerLeg) -> None:
        self.fallback = fallback
        self.result: str | None = None  # transferred | transfer_failed, once known
        self._attempt: asyncio.Task[bool] | None = None
        self._record: HandoffRecord | None = None
        self._line: CallerLine | None = None
        self._fell_back = False

    @abstractmethod
    async def transfer(self, record: HandoffRecord) -> bool:
        """Hands the caller over; False when that failed (logged with why)."""

    @abstractmethod
    async def transferred_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        """A frame once the transfer went through."""

    def started(self, call_id: str, caller_id: str, language: str, at: float) -> None:
        self.fallback.started(call_id, caller_id, language, at)

    def event(self, event: CallEvent) -> None:
        self.fallback.event(event)

    def handoff(self, record: HandoffRecord) -> None:
        self.fallback.handoff(record)

    def escalated(self, record: HandoffRecord, line: CallerLine) -> None:
        self._record, self._line = record, line
        self._attempt = asyncio.create_task(self.transfer(record))

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        if self._fell_back:
            return await self.fallback.step(frame, key)
        if self._attempt is None or not self._attempt.done():
            return SILENCE  # the target is ringing
        if self._attempt.result():
            self.result = "transferred"
            return await self.transferred_step(frame, key)
        self.result = "transfer_failed"
        assert self._record is not None and self._line is not None
        log.warning("call %s: transfer failed; the caller waits in the built-in queue", self._record.call_id)
        self._fell_back = True
        self.fallback.escalated(self._record, self._line, preface=TRANSFER_UNAVAILABLE)
        return await self.fallback.step(frame, key)

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        if self._attempt is not None and not self._attempt.done():
            self._attempt.cancel()
        await self.fallback.ended(outcome, reason if self._fell_back else (self.result or reason), events)


class ReferTransferLeg(TransferLeg):
    """SIP blind transfer (``transfer_method: refer``): the caller's side is REFERred to ``target``;
    once it accepted, the bot's side of the call ends (the line hangs up: BYE)."""

    def __init__(self, fallback: CallerLeg, sip: SipUserAgent, dialog: Dialog, target: str) -> None:
        super().__init__(fallback)
        self.sip, self.dialog, self.target = sip, dialog, target

    async def transfer(self, record: HandoffRecord) -> bool:
        return await refer(self.sip, self.dialog, self.target, record)

    async def transferred_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        return TRANSFERRED
