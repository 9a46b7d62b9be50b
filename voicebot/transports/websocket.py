"""The media WebSocket: one caller per connection (a gateway or the browser softphone).

Caller -> server: JSON text messages ``start`` (first, once), ``dtmf``, ``hangup``; binary audio of
whole 20 ms frames (16 kHz mono s16le, 640 bytes each, up to 10 per message). Server -> caller:
``started``, binary audio paced in real time, ``clear`` (barge-in: drop what is buffered), the
owner's control messages, ``hangup``. Anything else closes this connection only (code 1008 and a
logged reason). See docs/media-websocket.md.

This module speaks the protocol and runs the bot. Everything else about the call belongs to its
owner, a :class:`CallOwner` handed in by whoever accepted the connection (the contact-centre server):
it keeps the call's records, and after an escalation it takes the caller (queue, hold, agent) while
this transport keeps pacing frames and sending the owner's messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from voicebot.audio import DTMF_KEYS, FRAME_BYTES, FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.call import SILENCE, CallSession
from voicebot.engines import Engines
from voicebot.errors import DataFileError
from voicebot.events import BargeIn, CallEvent
from voicebot.handoff.record import HandoffRecord

log = logging.getLogger("voicebot.media")
MAX_FRAMES_PER_MESSAGE = 10
MAX_MESSAGE_BYTES = FRAME_BYTES * MAX_FRAMES_PER_MESSAGE
WS_MAX_MSG_SIZE = MAX_MESSAGE_BYTES + 1  # aiohttp refuses a message whose size is >= max_msg_size
MAX_BUFFERED_FRAMES = 25  # 0.5 s jitter buffer; a caller sending faster than real time loses the oldest
MAX_BUFFERED_KEYS = 32
START_TIMEOUT_S = 10.0
FRAME_S = FRAME_MS / 1000


class ProtocolViolation(Exception):
    """The peer broke the protocol: its connection is closed with this reason."""


def parse_control(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, a number too long to convert, nesting too deep
        raise ProtocolViolation("text message is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolViolation("control message must be a JSON object with a 'type'")
    return message


def audio_frames(data: bytes) -> list[bytes]:
    if not data or len(data) % FRAME_BYTES or len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(
            f"audio must be 1-{MAX_FRAMES_PER_MESSAGE} whole frames of {FRAME_BYTES} bytes, got {len(data)}"
        )
    return split_frames(data)


@dataclass(frozen=True)
class HangUp:
    """What the owner's ``step`` returns to end the call; the caller gets it as a ``hangup`` message."""

    reason: str
    outcome: str | None = None


class CallerLine(Protocol):
    """The caller's connection, as the call's owner sees it."""

    def send(self, message: dict[str, Any]) -> None:
        """Queues a control message; it goes out before the next audio frame."""


class CallOwner(Protocol):
    """What the server plugs into one media call: its records, and the caller after an escalation."""

    def started(self, call_id: str, caller_id: str, language: str) -> None:
        """The call is up; the greeting follows."""

    def handoff(self, record: HandoffRecord) -> None:
        """The bot escalated; the transfer prompt is about to play (the caller may hang up during it)."""

    def escalated(self, record: HandoffRecord, line: CallerLine) -> None:
        """The transfer prompt has played: from the next frame on, :meth:`step` serves the caller."""

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        """One 20 ms frame after the escalation: the caller's audio and key in, what they hear out."""

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        """The connection is over, whoever hung up: the bot's outcome, why it ended, its events."""


class MediaCall:
    def __init__(self, ws: web.WebSocketResponse, engines: Engines, owner: CallOwner) -> None:
        self.ws = ws
        self.engines = engines
        self.owner = owner
        self.session: CallSession | None = None
        self.inbound: deque[bytes] = deque(maxlen=MAX_BUFFERED_FRAMES)
        self.keys: deque[str] = deque(maxlen=MAX_BUFFERED_KEYS)
        self.caller_gone = False
        self.violation: str | None = None
        self.end_reason = "caller_hangup"
        self._escalated = False  # the owner serves the caller (see CallOwner.escalated)
        self._outbox: deque[dict[str, Any]] = deque()  # control messages to send before the next frame

    # ----- connection --------------------------------------------------------------------------

    async def run(self) -> None:
        reader: asyncio.Task[None] | None = None
        try:
            await self._start(await self._receive_start())
            reader = asyncio.create_task(self._read())
            await self._pace()
        except ProtocolViolation as exc:
            self._violated(str(exc))
        finally:
            if reader is not None:
                reader.cancel()
            await self._finish()

    async def _receive_start(self) -> dict[str, Any]:
        try:
            msg = await self.ws.receive(timeout=START_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ProtocolViolation("no start message") from None
        if msg.type != WSMsgType.TEXT:
            raise ProtocolViolation("the first message must be 'start'")
        message = parse_control(msg.data)
        if message["type"] != "start":
            raise ProtocolViolation(f"'{message['type']}' before 'start'")
        return message

    async def _start(self, message: dict[str, Any]) -> None:
        caller_id = str(message.get("caller_id") or "unknown")
        language = str(message.get("language") or self.engines.config.language)
        if len(caller_id) > 32 or not caller_id.isprintable():
            raise ProtocolViolation("caller_id must be at most 32 printable characters")
        try:
            self.engines.flow.prompts(language)
        except DataFileError:
            raise ProtocolViolation(f"unsupported language '{language[:16]}'") from None
        self.session = CallSession(
            self.engines,
            caller_id=caller_id,
            language=language,
            listeners=[self._on_event],
            on_handoff=self.owner.handoff,
        )
        self.owner.started(self.session.call_id, caller_id, language)
        await self.ws.send_json({"type": "started", "call_id": self.session.call_id})
        await self.session.start()

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    self.inbound.extend(audio_frames(msg.data))
                elif msg.type == WSMsgType.TEXT:
                    self._control(parse_control(msg.data))
                else:
                    raise ProtocolViolation(f"unexpected message type {msg.type.name}")
        except ProtocolViolation as exc:
            self._violated(str(exc))
        self.caller_gone = True

    def _control(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "dtmf":
            digit = message.get("digit")
            if not isinstance(digit, str) or digit not in DTMF_KEYS:
                raise ProtocolViolation("dtmf needs one 'digit' of 0-9, * or #")
            self.keys.append(digit)
        elif kind == "hangup":
            self.caller_gone = True
        elif kind == "start":
            raise ProtocolViolation("'start' sent twice")
        else:
            raise ProtocolViolation(f"unknown message type '{kind[:32]}'")

    def _violated(self, reason: str) -> None:
        if self.violation is None:
            log.warning("media connection closed: %s", reason)
            self.violation = reason
            self.end_reason = "protocol_error"
        self.caller_gone = True

    def send(self, message: dict[str, Any]) -> None:
        self._outbox.append(message)

    async def _pace(self) -> None:
        """One frame in, one frame out every 20 ms of wall time, until either side hangs up."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self.caller_gone:
            frame = self.inbound.popleft() if self.inbound else SILENCE
            key = self.keys.popleft() if self.keys else None
            out = await (self.owner.step(frame, key) if self._escalated else self._bot_step(frame, key))
            if self.ws.closed:
                return
            while self._outbox:
                await self.ws.send_json(self._outbox.popleft())
            if isinstance(out, HangUp):
                self.end_reason = out.reason
                await self.ws.send_json({"type": "hangup", "reason": out.reason, "outcome": out.outcome})
                return
            await self.ws.send_bytes(out)
            next_tick += FRAME_S
            delay = next_tick - loop.time()
            if delay < -0.2:
                next_tick = loop.time()  # fell far behind (a slow turn): resume, don't burst
            await asyncio.sleep(max(0.0, delay))

    async def _finish(self) -> None:
        session = self.session
        if session is not None:
            if not session.ended:
                await session.hangup(self.end_reason)
            await self.owner.ended(session.outcome or "abandoned", self.end_reason, session.events)
        if not self.ws.closed:
            code = WSCloseCode.POLICY_VIOLATION if self.violation else WSCloseCode.OK
            await self.ws.close(code=code, message=(self.violation or "").encode()[:120])

    # ----- the bot -------------------------------------------------------------------------------

    def _on_event(self, event: CallEvent) -> None:
        if isinstance(event, BargeIn):
            self.send({"type": "clear"})

    async def _bot_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        session = self.session
        assert session is not None
        out = await session.step(frame, key)
        if not session.ended:
            return out
        if session.outcome == "escalated" and session.handoff is not None:
            self._escalated = True
            self.owner.escalated(session.handoff, self)
            return out
        return HangUp("bot_hangup", session.outcome)
