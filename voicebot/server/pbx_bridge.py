"""SIP escalation as a B2BUA (``transfer_method: invite``): after the transfer prompt the bot calls
the PBX's queue (``transfer_uri``) with the handoff's context in ``X-Voicebot-*`` and
``User-to-User`` headers of its INVITE, and bridges the caller to it until either side hangs up.
The caller hears silence while the PBX rings; when it does not answer (busy, unreachable, no
answer within ``ring_timeout_s``), the caller waits in the built-in queue instead (TransferLeg).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from voicebot.call import SILENCE
from voicebot.config import SipConfig
from voicebot.engines import Engines
from voicebot.events import CallEvent
from voicebot.handoff.record import HandoffRecord
from voicebot.server.caller_leg import CallerLeg
from voicebot.server.external_leg import TransferLeg
from voicebot.telephony.sip import IncomingCall, SipUserAgent
from voicebot.telephony.sip_call import SipCall, context_headers
from voicebot.transports.line import MAX_BUFFERED_FRAMES, CallerLine, HangUp

log = logging.getLogger("voicebot.server")


class PbxSide:
    """The owner of the call to the PBX: it trades frames with the caller's side."""

    def __init__(self, to_pbx: deque[bytes], from_pbx: deque[bytes]) -> None:
        self.to_pbx, self.from_pbx = to_pbx, from_pbx
        self.caller_gone = False
        self.hung_up = asyncio.Event()  # the PBX's side of the call is over

    def started(self, call_id: str, caller_id: str, language: str, at: float) -> None:
        """Never called: the PBX's side has no bot session."""

    def event(self, event: CallEvent) -> None:
        """Never called: the PBX's side has no bot session."""

    def handoff(self, record: HandoffRecord) -> None:
        """Never called: the PBX's side has no bot session."""

    def escalated(self, record: HandoffRecord, line: CallerLine) -> None:
        """The PBX answered: the bridge is up from the next frame."""

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        if self.caller_gone:
            return HangUp("caller_hangup", "escalated")
        self.from_pbx.append(frame)
        return self.to_pbx.popleft() if self.to_pbx else SILENCE

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        self.hung_up.set()


class PbxBridgeLeg(TransferLeg):
    """The caller's owner after the escalation (see the module's docstring)."""

    def __init__(self, fallback: CallerLeg, engines: Engines, sip: SipUserAgent, settings: SipConfig) -> None:
        super().__init__(fallback)
        self.engines = engines
        self.sip = sip
        self.settings = settings
        self.to_pbx: deque[bytes] = deque(maxlen=MAX_BUFFERED_FRAMES)
        self.from_pbx: deque[bytes] = deque(maxlen=MAX_BUFFERED_FRAMES)
        self.pbx = PbxSide(self.to_pbx, self.from_pbx)
        self._bridge: asyncio.Task[None] | None = None

    async def transfer(self, record: HandoffRecord) -> bool:
        target = self.settings.transfer_uri
        assert target is not None
        try:
            dialog = await self.sip.dial(
                target, record.caller_id, self.settings.ring_timeout_s, headers=context_headers(record)
            )
        except Exception as exc:  # busy, no answer, unreachable
            log.error("call %s: transfer to %s failed: %s", record.call_id, target, exc)
            return False
        pbx_call = SipCall(self.engines, self.pbx, IncomingCall(dialog, record.caller_id, target), self.sip,
                           callback=record)  # fmt: skip
        self._bridge = asyncio.create_task(self._run_bridge(pbx_call, record))
        return True

    async def _run_bridge(self, pbx_call: SipCall, record: HandoffRecord) -> None:
        try:
            await pbx_call.run()
        except Exception:  # the bridge broke: the caller's side ends too, never left in silence
            log.exception("call %s: the bridge to %s failed", record.call_id, self.settings.transfer_uri)
        finally:
            self.pbx.hung_up.set()

    async def transferred_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        if self.pbx.hung_up.is_set():
            return HangUp("transferred", "escalated")
        self.to_pbx.append(frame)
        return self.from_pbx.popleft() if self.from_pbx else SILENCE

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        self.pbx.caller_gone = True
        await super().ended(outcome, reason, events)
