"""The media WebSocket: one caller per connection (a gateway or the browser softphone).

Caller -> server: JSON text messages ``start`` (first, once), ``dtmf``, ``hangup``; binary audio of
whole 20 ms frames (16 kHz mono s16le, 640 bytes each, up to 10 per message). Server -> caller:
``started``, binary audio paced in real time, ``clear`` (barge-in: drop what is buffered), the
owner's control messages, ``hangup``. Anything else closes this connection only (code 1008 and a
logged reason, counted by reason). The connection is a call once it sent valid audio or a key.
See docs/media-websocket.md.

This module speaks the protocol; :class:`~voicebot.transports.line.LiveCall` runs the call and
hands the caller to its owner after an escalation.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError, WebSocketReader, WSParserState

from voicebot.audio import DTMF_KEYS, FRAME_BYTES
from voicebot.audio.codecs import split_frames
from voicebot.engines import Engines
from voicebot.transports.line import CallOwner, HangUp, LiveCall, ProtocolViolation

MAX_FRAMES_PER_MESSAGE = 10
MAX_MESSAGE_BYTES = FRAME_BYTES * MAX_FRAMES_PER_MESSAGE
WS_MAX_MSG_SIZE = MAX_MESSAGE_BYTES + 1  # aiohttp refuses a message whose size is >= max_msg_size
START_TIMEOUT_S = 10.0


def parse_control(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, a number too long to convert, nesting too deep
        raise ProtocolViolation("text message is not JSON", "bad_message") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolViolation("control message must be a JSON object with a 'type'", "bad_message")
    return message


def audio_frames(data: bytes) -> list[bytes]:
    if not data or len(data) % FRAME_BYTES or len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(
            f"audio must be 1-{MAX_FRAMES_PER_MESSAGE} whole frames of {FRAME_BYTES} bytes, got {len(data)}",
            "bad_audio",
        )
    return split_frames(data)


class FrameCappedReader(WebSocketReader):
    """Refuses a frame as soon as its header announces more than the largest message allowed.

    aiohttp 3.9 (the newest that Rasa 3.6 allows) checks a message's size only once the whole frame
    is in memory: one 32 MB frame cost 67 MB that the process never returned. Here at most one read
    from the socket is buffered beyond the limit."""

    def parse_frame(self, buf: bytes) -> list[tuple[bool, int | None, bytearray, bool | None]]:
        frames = super().parse_frame(buf)
        if self._state is not WSParserState.READ_HEADER and self._max_msg_size:
            announced = len(self._frame_payload) + self._payload_length
            if announced >= self._max_msg_size:
                raise WebSocketError(
                    WSCloseCode.MESSAGE_TOO_BIG,
                    f"frame of {announced} bytes, the limit is {self._max_msg_size - 1}",
                )
        return frames


class CappedWebSocketResponse(web.WebSocketResponse):
    """A WebSocket whose frames are refused by their announced size (see :class:`FrameCappedReader`)."""

    def _post_start(self, request: web.BaseRequest, protocol: str, writer: Any) -> None:
        super()._post_start(request, protocol, writer)
        parser = request.protocol._payload_parser
        # aiohttp 3.9 builds its reader here with no hook to choose the class; the subclass adds no
        # state, so the reader (and anything it parsed already) carries on as the capped one.
        if type(parser) is WebSocketReader:
            parser.__class__ = FrameCappedReader


class MediaCall(LiveCall):
    line = "media"

    def __init__(self, ws: web.WebSocketResponse, engines: Engines, owner: CallOwner) -> None:
        super().__init__(engines, owner)
        self.ws = ws

    @property
    def line_closed(self) -> bool:
        return self.ws.closed

    async def open(self) -> None:
        try:
            msg = await self.ws.receive(timeout=START_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ProtocolViolation("no start message", "no_start") from None
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            raise ProtocolViolation("closed before 'start'", "no_start")
        if msg.type != WSMsgType.TEXT:
            raise ProtocolViolation("the first message must be 'start'", "before_start")
        message = parse_control(msg.data)
        if message["type"] != "start":
            raise ProtocolViolation(f"'{message['type'][:32]}' before 'start'", "before_start")
        caller_id = str(message.get("caller_id") or "unknown")
        language = str(message.get("language") or self.engines.config.language)
        if len(caller_id) > 32 or not caller_id.isprintable():
            raise ProtocolViolation("caller_id must be at most 32 printable characters", "bad_start")
        if len(language) > 16 or not language.isprintable():
            raise ProtocolViolation("language must be at most 16 printable characters", "bad_start")
        # A language the bot does not serve gets the default language, with an apology (CallSession).
        session = await self.start(caller_id, language)
        await self.ws.send_json({"type": "started", "call_id": session.call_id})
        await session.start()

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                self.receive(audio_frames(msg.data))
                self.heard()
            elif msg.type == WSMsgType.TEXT:
                self._control(parse_control(msg.data))
            else:
                raise ProtocolViolation(f"unexpected message type {msg.type.name}", "bad_message")

    def _control(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "dtmf":
            digit = message.get("digit")
            if not isinstance(digit, str) or digit not in DTMF_KEYS:
                raise ProtocolViolation("dtmf needs one 'digit' of 0-9, * or #", "bad_message")
            self.keys.append(digit)
        elif kind == "hangup":
            self.caller_gone = True
        elif kind == "start":
            raise ProtocolViolation("'start' sent twice", "bad_message")
        else:
            raise ProtocolViolation(f"unknown message type '{kind[:32]}'", "bad_message")

    async def send_frame(self, frame: bytes) -> None:
        await self.ws.send_bytes(frame)

    async def send_control(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def send_hangup(self, hangup: HangUp) -> None:
        await self.ws.send_json({"type": "hangup", "reason": hangup.reason, "outcome": hangup.outcome})

    async def close(self) -> None:
        if not self.ws.closed:
            code = WSCloseCode.POLICY_VIOLATION if self.violation else WSCloseCode.OK
            await self.ws.close(code=code, message=(self.violation or "").encode()[:120])
