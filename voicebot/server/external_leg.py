"""A call whose escalation goes to someone else's queue: the PBX's (Asterisk's Queue() after an
AudioSocket call, a SIP transfer target), not the built-in contact centre.

The records are kept as for the contact centre's calls (:class:`CallRecords`): the handoff record is
stored under the call's id the moment the bot escalates, so the PBX or its agents' desktop can fetch
it (``GET /api/handoffs/{call_id}``). Once the transfer prompt has played, the line hangs up with
reason ``transferred``; what that does is the transport's business (AudioSocket: the dialplan goes
on with its next priority; SIP: a REFER).
"""

from __future__ import annotations

from voicebot.events import CallEvent
from voicebot.handoff.record import HandoffRecord
from voicebot.server.call_records import CallRecords
from voicebot.transports.line import CallerLine, HangUp

TRANSFERRED = HangUp("transferred", "escalated")


class ExternalTransferLeg(CallRecords):
    """The :class:`~voicebot.transports.line.CallOwner` of a call handed to an external queue."""

    def escalated(self, record: HandoffRecord, line: CallerLine) -> None:
        """Nothing to set up: the first step after the transfer prompt hands the caller over."""

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        return TRANSFERRED

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        self.record_end(outcome, reason, events)
