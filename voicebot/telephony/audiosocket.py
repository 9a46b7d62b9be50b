"""Asterisk's AudioSocket: one TCP connection per call; Asterisk connects to the bot.

Every message is a type byte, a 2-byte big-endian payload length and the payload. Asterisk sends the
call's UUID first (16 bytes), then audio (8 kHz mono s16le, 320 bytes per 20 ms), keys (one ASCII
byte), a hang-up (no payload) or an error (an optional code byte); closing the connection is a
hang-up too. The bot sends audio, paced in real time, and a hang-up, after which Asterisk's dialplan
goes on with its next priority (e.g. ``Queue()``). Anything malformed closes that connection alone,
logged with the reason and counted by reason; a connection is a call once it sent its UUID and then
audio or a key (one that sends no UUID within ``uuid_timeout_s`` never becomes one). See
docs/telephony.md.

:class:`~voicebot.transports.line.LiveCall` runs the call; this module speaks the wire.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.audio import DTMF_KEYS
from voicebot.config import AudioSocketConfig
from voicebot.engines import Engines
from voicebot.errors import VoicebotError
from voicebot.telephony.narrowband import LINE_FRAME_BYTES, Narrowband
from voicebot.transports.line import CallOwner, HangUp, LiveCall, ProtocolViolation

log = logging.getLogger("voicebot.audiosocket")

HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
HEADER = struct.Struct(">BH")  # type, payload length
UUID_BYTES = 16
MAX_AUDIO_BYTES = 10 * LINE_FRAME_BYTES  # 200 ms; Asterisk sends 20 ms at a time
ERROR_CALLER_HUNG_UP = 0x01  # Asterisk's error code for "the calling party hung up"
WRITE_TIMEOUT_S = 5.0  # a peer that stops reading for this long is gone
CALLER_ID = "unknown"  # AudioSocket carries no caller number


@dataclass(frozen=True)
class Message:
    kind: int
    payload: bytes


def encode(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def check_header(kind: int, length: int) -> None:
    """Refuses a message by its header alone, before its payload is read."""
    if kind == AUDIO:
        if not 0 < length <= MAX_AUDIO_BYTES or length % 2:
            raise ProtocolViolation(
                f"audio must be 2-{MAX_AUDIO_BYTES} bytes of whole 16-bit samples, got {length}", "bad_audio"
            )
        return
    allowed = {HANGUP: (0,), UUID: (UUID_BYTES,), DTMF: (1,), ERROR: (0, 1)}.get(kind)
    if allowed is None:
        raise ProtocolViolation(f"unknown message type 0x{kind:02x}", "bad_message")
    if length not in allowed:
        raise ProtocolViolation(f"message type 0x{kind:02x} with a {length}-byte payload", "bad_message")


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next well-formed message; None when the connection ended between messages."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolViolation("connection closed inside a message header", "bad_message") from None
        return None
    except ConnectionError:
        return None
    kind, length = HEADER.unpack(header)
    check_header(kind, length)
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolViolation(
            f"connection closed inside a message ({len(exc.partial)} of {length} bytes)", "bad_message"
        ) from None
    except ConnectionError:
        return None
    if kind == DTMF and chr(payload[0]) not in DTMF_KEYS:
        raise ProtocolViolation(f"DTMF {payload!r} is not a keypad key (0-9, * or #)", "bad_message")
    return Message(kind, payload)


class AudioSocketCall(LiveCall):
    """One AudioSocket connection as a call; its id is the Asterisk UUID in its 36-character form."""

    line = "audiosocket"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        engines: Engines,
        owner: CallOwner,
        uuid_timeout_s: float,
        in_use: Callable[[str], bool],
    ) -> None:
        super().__init__(engines, owner)
        self.reader = reader
        self.writer = writer
        self.uuid_timeout_s = uuid_timeout_s
        self.in_use = in_use  # whether a live call already has this id
        self.narrowband = Narrowband()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self._peer_gone = False  # it hung up, closed, or reported an error: nothing more to tell it
        self._hangup_sent = False

    @property
    def call_id(self) -> str | None:
        return None if self.session is None else self.session.call_id

    @property
    def line_closed(self) -> bool:
        return self.writer.is_closing()

    def violated(self, reason: str) -> None:
        super().violated(f"{reason} (from {self.peer})")

    def end(self, reason: str) -> None:
        """The bot's side ends the call at the next frame (the server is stopping)."""
        self.end_reason = reason
        self.caller_gone = True

    async def open(self) -> None:
        try:
            first = await asyncio.wait_for(read_message(self.reader), self.uuid_timeout_s)
        except asyncio.TimeoutError:
            raise ProtocolViolation(f"no call UUID within {self.uuid_timeout_s:g} s", "no_start") from None
        if first is None:
            self._peer_gone = True
            raise ProtocolViolation("closed before sending the call UUID", "no_start")
        if first.kind != UUID:
            raise ProtocolViolation(
                f"the first message must be the call UUID, got type 0x{first.kind:02x}", "before_start"
            )
        call_id = str(uuid.UUID(bytes=first.payload))
        if self.in_use(call_id):
            raise ProtocolViolation(f"call UUID {call_id} is already in a live call", "bad_start")
        session = await self.start(CALLER_ID, self.engines.config.language, call_id=call_id)
        log.info("AudioSocket call %s from %s", call_id, self.peer)
        await session.start()

    async def read(self) -> None:
        while (message := await read_message(self.reader)) is not None:
            if message.kind == AUDIO:
                self.receive(self.narrowband.to_call(message.payload))
                self.heard()  # its UUID and then audio: a call
            elif message.kind == DTMF:
                self.keys.append(chr(message.payload[0]))
            elif message.kind == UUID:
                raise ProtocolViolation("call UUID sent twice", "bad_message")
            elif message.kind == HANGUP:
                break
            else:  # ERROR
                if message.payload != bytes([ERROR_CALLER_HUNG_UP]):
                    self.end_reason = "line_error"
                    code = message.payload.hex() or "(none)"
                    log.warning("AudioSocket call %s: Asterisk reported error %s", self.call_id, code)
                break
        self._peer_gone = True

    async def send_frame(self, frame: bytes) -> None:
        await self._send(encode(AUDIO, self.narrowband.to_line(frame)))

    async def send_hangup(self, hangup: HangUp) -> None:
        await self._send(encode(HANGUP))
        self._hangup_sent = True

    async def close(self) -> None:
        if not (self._hangup_sent or self._peer_gone or self.violation or self.line_closed):
            # Ended from our side (the server stopping, a fault): Asterisk's dialplan goes on.
            self.writer.write(encode(HANGUP))
        self.writer.close()  # once what is buffered has gone out; a peer that stopped reading is cut off
        try:
            await asyncio.wait_for(self.writer.wait_closed(), WRITE_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            self.writer.transport.abort()

    async def _send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)
        except ConnectionError:
            self._peer_gone = self.caller_gone = True
        except asyncio.TimeoutError:
            raise ProtocolViolation(f"stopped reading for {WRITE_TIMEOUT_S:g} s", "stalled") from None


class AudioSocketServer:
    """Accepts AudioSocket connections and runs one :class:`AudioSocketCall` each, on the engines of
    the moment (``engines()``: a reload gives new calls the new ones) with the owner ``owner_for``
    makes. One broken call never stops the others or the server."""

    def __init__(
        self,
        settings: AudioSocketConfig,
        engines: Callable[[], Engines],
        owner_for: Callable[[Engines], CallOwner],
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.owner_for = owner_for
        self.calls: dict[AudioSocketCall, asyncio.Task[None]] = {}
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one the system chose for port 0)."""
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, port = self.settings.host, self.settings.port
        try:
            self._server = await asyncio.start_server(self._serve, host, port)
        except OSError as exc:
            raise VoicebotError(f"AudioSocket cannot listen on {host}:{port}: {exc.strerror}") from exc
        log.info("AudioSocket listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        """Stops listening and ends every call, each hung up and recorded, before returning."""
        if self._server is None:
            return
        self._server.close()
        for call, task in list(self.calls.items()):
            if call.session is None:
                task.cancel()  # not a call yet: nothing to record
            else:
                call.end("server_shutdown")
        await asyncio.gather(*self.calls.values(), return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def _in_use(self, call_id: str) -> bool:
        return any(call.call_id == call_id for call in self.calls)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.calls) >= self.settings.max_calls:
            log.warning("AudioSocket: %d connections already, hung up on a new one", len(self.calls))
            writer.write(encode(HANGUP))  # Asterisk's dialplan goes on, e.g. straight to its queue
            writer.close()
            return
        engines = self.engines()
        call = AudioSocketCall(
            reader, writer, engines, self.owner_for(engines), self.settings.uuid_timeout_s, self._in_use
        )
        task = asyncio.current_task()
        assert task is not None
        self.calls[call] = task
        try:
            await call.run()
        except Exception:  # one broken call must not take the server down
            log.exception("AudioSocket call %s failed", call.call_id)
            writer.transport.abort()
        finally:
            del self.calls[call]
