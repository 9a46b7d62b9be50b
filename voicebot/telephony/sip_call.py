"""One answered SIP call as a live call: RTP in through a jitter buffer, G.711 out every 20 ms.

The caller's keys come as RFC 4733 telephone-events or SIP INFO. While the caller holds the call
(re-INVITE sendonly/inactive) nothing is sent and silence of the caller is expected; otherwise a
caller whose RTP stops for ``no_rtp_timeout_s`` is hung up. :func:`refer` transfers the caller
elsewhere, with the handoff's context in ``X-Voicebot-*`` and ``User-to-User`` headers and its id
in Refer-To.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from voicebot.audio import FRAME_MS
from voicebot.engines import Engines
from voicebot.handoff.record import HandoffRecord
from voicebot.telephony.narrowband import LINE_FRAME_BYTES, Narrowband
from voicebot.telephony.rtp import DECODERS, ENCODERS, JitterBuffer, RtpPacket, RtpSender, TelephoneEvents
from voicebot.telephony.sip import Dialog, IncomingCall, SipUserAgent
from voicebot.transports.line import MAX_BUFFERED_FRAMES, CallOwner, HangUp, LiveCall

log = logging.getLogger("voicebot.sip")
LINE_SILENCE = bytes(LINE_FRAME_BYTES)
TRANSFER_NOTIFY_WAIT_S = 60.0  # a ringing target reports its final answer within this
MAX_UUI_BYTES = 400  # hex-encoded it stays under the ~1 KB that PBXs pass on (RFC 7433)


async def refer(agent: SipUserAgent, dialog: Dialog, target: str, record: HandoffRecord) -> bool:
    """Blind transfer (RFC 3515): asks the caller's side to call ``target``; False when it refused,
    or reported that the new call failed. The context headers ride on the REFER (a PBX that carries
    out the transfer reads them); the handoff id also rides in Refer-To as the URI parameter
    ``handoff``, which every phone copies into the INVITE it sends (URI headers, ``?X-...=``, are
    not: baresip refuses such a Refer-To)."""
    dialog.transfer_result = asyncio.get_running_loop().create_future()
    response = await agent.request(
        dialog,
        "REFER",
        {
            "Refer-To": f"<{target};handoff={record.call_id}>",
            "Referred-By": f"<{agent.contact_uri}>",
            **context_headers(record),
        },
    )
    if response is None or response.code >= 300:
        log.error("SIP call %s: REFER to %s refused (%s)", dialog.call_id[:40], target,
                  "timeout" if response is None else response.code)  # fmt: skip
        return False
    # The caller's phone reports the new call's fate in NOTIFYs. One that stays silent is trusted.
    try:
        status = await asyncio.wait_for(dialog.transfer_result, TRANSFER_NOTIFY_WAIT_S)
    except asyncio.TimeoutError:
        return True
    log.info("SIP call %s: transfer to %s answered %s", dialog.call_id[:40], target, status)
    return status < 300


def context_headers(record: HandoffRecord) -> dict[str, str]:
    """What an external ACD needs to route and greet the caller; the rest is fetched by the id."""
    intent = record.intents[-1].intent if record.intents else ""
    context = {
        "id": record.call_id,
        "reason": record.reason,
        "intent": intent,
        "queue": record.queue,
        "auth": record.auth_level,
        "lang": record.language,
    }
    uui = json.dumps(context, separators=(",", ":")).encode()[:MAX_UUI_BYTES]
    headers = {f"X-Voicebot-{name.title()}": value for name, value in context.items() if value}
    headers["User-to-User"] = f"{uui.hex()};encoding=hex;purpose=voicebot-handoff"
    return headers


class SipCall(LiveCall):
    """An answered SIP call; it is a call (stored, counted) once the caller's RTP or a key came."""

    line = "sip"

    def __init__(
        self,
        engines: Engines,
        owner: CallOwner,
        incoming: IncomingCall,
        agent: SipUserAgent,
        callback: HandoffRecord | None = None,
    ) -> None:
        super().__init__(engines, owner)
        self.callback = callback  # a call we placed for an agent: the owner serves it, no bot
        self.incoming = incoming
        self.dialog: Dialog = incoming.dialog
        self.agent = agent
        name, pt = self.dialog.codec
        self._decode, self._encode = DECODERS[name], ENCODERS[name]
        self._payload_type = pt
        self._sender = RtpSender(pt)
        # Each payload with when it arrived; it holds as much as the other lines' buffers, so a
        # server that fell behind catches up on the caller's audio rather than drop it.
        self._jitter: JitterBuffer[tuple[bytes, float]] = JitterBuffer(capacity=MAX_BUFFERED_FRAMES)
        event_pt = self.dialog.telephone_event_pt
        self._events = TelephoneEvents(event_pt) if event_pt is not None else None
        self._audio = Narrowband()
        self._held = self.dialog.offer.on_hold
        self._quiet_ms = 0  # since the caller's last RTP packet
        self._no_rtp_limit_ms = engines.config.telephony.sip.no_rtp_timeout_s * 1000
        self.dialog.keys = self.keys.append
        self.dialog.hold_changed = self._hold_changed
        self.dialog.rtp.on_packet = self._packet

    async def open(self) -> None:
        if self.callback is not None:
            self.serve_owner(self.callback)
            return
        settings = self.engines.config
        route = settings.telephony.route(self.incoming.dialled)
        language = route.language or settings.language  # one not served: the default, with an apology
        session = await self.start(self.incoming.caller_id, language, home=route.start)
        log.info("SIP call %s from %s to %s", session.call_id, self.incoming.caller_id, self.incoming.dialled)
        await session.start()

    async def read(self) -> None:
        await self.dialog.ended.wait()
        self.end_reason = self.dialog.end_reason

    def _packet(self, packet: RtpPacket) -> None:
        self._quiet_ms = 0
        if packet.payload_type == self._payload_type:
            self._jitter.push(packet.sequence, (packet.payload, time.monotonic()))
            self.heard()  # answered, and the caller's RTP came: a call
        elif self._events is not None and packet.payload_type == self._events.payload_type:
            key = self._events.key(packet)
            if key is not None:
                self.keys.append(key)

    def _hold_changed(self, held: bool) -> None:
        self._held = held
        self._quiet_ms = 0

    def caller_frame(self) -> tuple[bytes, float] | None:
        payload, arrived = self._jitter.pop() or (b"", time.monotonic())
        self.receive(self._audio.to_call(self._decode(payload) if payload else LINE_SILENCE), arrived)
        self._quiet_ms += FRAME_MS
        if not self._held and self._quiet_ms >= self._no_rtp_limit_ms:
            log.warning("SIP call %s: no RTP for %d ms; hanging up", self.dialog.call_id[:40], self._quiet_ms)
            self.end_reason = "no_rtp"
            self.caller_gone = True
        return super().caller_frame()

    @property
    def waiting(self) -> int:
        """Frames not taken yet, and packets beyond the jitter buffer's depth (held back on purpose)."""
        return len(self.inbound) + max(0, len(self._jitter) - self._jitter.depth)

    def skipped(self, frames: int) -> None:
        for _ in range(frames):  # the RTP timestamps say how long nothing came: a gap, not late packets
            self._sender.skip()

    async def send_frame(self, frame: bytes) -> None:
        line = self._audio.to_line(frame)
        if self._held:
            self._sender.skip()  # the caller is not listening: send nothing (RFC 3264 section 8.4)
            return
        self.dialog.rtp.send(self._sender.packet(self._encode(line)))

    async def send_hangup(self, hangup: HangUp) -> None:
        """Nothing to say first: :meth:`close` ends the call (BYE)."""

    async def close(self) -> None:
        if self.dialog.ended.is_set() and self.dialog.end_reason == "caller_hangup":
            self.agent.forget(self.dialog)
        else:
            self.agent.hang_up(self.dialog, self.end_reason)
