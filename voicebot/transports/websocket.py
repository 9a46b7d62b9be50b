"""The media WebSocket: one caller per connection (a gateway or the browser softphone).

Caller -> server: JSON text messages ``start`` (first, once), ``dtmf``, ``hangup``; binary audio of
whole 20 ms frames (16 kHz mono s16le, 640 bytes each, up to 10 per message). Server -> caller:
``started``, binary audio paced in real time, ``clear`` (barge-in: drop what is buffered), ``transfer``,
``queue`` (position and estimated wait), ``agent_connected``, ``callback_scheduled``, ``hangup``.
Anything else closes this connection only (code 1008 and a logged reason). See docs/media-websocket.md.

After an escalation the session ends but the connection stays: the caller is moved into the queue,
hears announcements and hold music, may press 1 for a callback, and is bridged to the agent who
accepts the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.call import SILENCE, CallSession
from voicebot.engines import Engines
from voicebot.errors import DataFileError
from voicebot.events import BargeIn, CallEvent
from voicebot.server.contact_center import AgentDesk, ContactCenter
from voicebot.server.hold import CALLBACK_CONFIRMATION, hold_music, position_announcement
from voicebot.storage import Storage
from voicebot.tts.piper_engine import synthesize_all

log = logging.getLogger("voicebot.media")
MAX_FRAMES_PER_MESSAGE = 10
MAX_MESSAGE_BYTES = FRAME_BYTES * MAX_FRAMES_PER_MESSAGE
MAX_BUFFERED_FRAMES = 25  # 0.5 s jitter buffer; a caller sending faster than real time loses the oldest
MAX_BUFFERED_KEYS = 32
START_TIMEOUT_S = 10.0
DTMF_KEYS = frozenset("0123456789*#")
CALLBACK_KEY = "1"
FRAME_S = FRAME_MS / 1000


class ProtocolViolation(Exception):
    """The peer broke the protocol: its connection is closed with this reason."""


def parse_control(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
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


class MediaCall:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        engines: Engines,
        center: ContactCenter,
        storage: Storage,
        announce_interval_ms: int,
    ) -> None:
        self.ws = ws
        self.engines = engines
        self.center = center
        self.storage = storage
        self.announce_interval_ms = announce_interval_ms
        self.session: CallSession | None = None
        self.inbound: deque[bytes] = deque(maxlen=MAX_BUFFERED_FRAMES)
        self.keys: deque[str] = deque(maxlen=MAX_BUFFERED_KEYS)
        self.caller_gone = False
        self.violation: str | None = None
        self.phase: Callable[[bytes, str | None], Awaitable[bytes | None]] = self._bot_step
        self.end_reason = "caller_hangup"
        self.queue_result: str | None = None  # answered | abandoned | callback, once queued
        self._outbox: deque[dict[str, Any]] = deque()  # control messages to send before the next frame
        self._agent: AgentDesk | None = None
        self._agent_left = False
        self._hold: deque[bytes] = deque()  # announcement frames to play before more music
        self._announcement: asyncio.Task[bytes] | None = None
        self._music_at = 0
        self._since_announce_ms = 0
        self._leaving = False  # the callback confirmation is playing; end when it is done

    @property
    def call_id(self) -> str:
        assert self.session is not None
        return self.session.call_id

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
            self.engines, caller_id=caller_id, language=language, listeners=[self._on_event]
        )
        self.storage.call_started(self.session.call_id, caller_id, language, time.time())
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

    async def _pace(self) -> None:
        """One frame in, one frame out every 20 ms of wall time, until either side hangs up."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self.caller_gone:
            frame = self.inbound.popleft() if self.inbound else SILENCE
            key = self.keys.popleft() if self.keys else None
            out = await self.phase(frame, key)
            if out is None or self.ws.closed:
                return
            while self._outbox:
                await self.ws.send_json(self._outbox.popleft())
            await self.ws.send_bytes(out)
            next_tick += FRAME_S
            delay = next_tick - loop.time()
            if delay < -0.2:
                next_tick = loop.time()  # fell far behind (a slow turn): resume, don't burst
            await asyncio.sleep(max(0.0, delay))

    async def _hang_up(self, reason: str, outcome: str | None = None) -> None:
        self.end_reason = reason
        if not self.ws.closed:
            await self.ws.send_json({"type": "hangup", "reason": reason, "outcome": outcome})

    async def _finish(self) -> None:
        session = self.session
        if session is not None:
            if not session.ended:
                await session.hangup()
            if self.queue_result is None and self.phase == self._hold_step:
                self.queue_result = "abandoned"
                await self.center.leave_queue(session.call_id, "abandoned")
            elif self._agent is not None and not self._agent_left:
                await self.center.caller_hung_up(session.call_id)
            reason = self.queue_result or self.end_reason
            self.storage.call_ended(session.call_id, session.outcome or "abandoned", reason, time.time())
            self.storage.add_trace_events(session.events, time.time() - time.monotonic())
        if self._announcement is not None:
            self._announcement.cancel()
        if not self.ws.closed:
            code = WSCloseCode.POLICY_VIOLATION if self.violation else WSCloseCode.OK
            await self.ws.close(code=code, message=(self.violation or "").encode()[:120])

    # ----- phases: bot, queue, agent -----------------------------------------------------------

    def _on_event(self, event: CallEvent) -> None:
        if isinstance(event, BargeIn):
            self._outbox.append({"type": "clear"})

    async def _bot_step(self, frame: bytes, key: str | None) -> bytes | None:
        session = self.session
        assert session is not None
        out = await session.step(frame, key)
        if not session.ended:
            return out
        if session.outcome == "escalated" and session.dialogue.handoff is not None:
            await self._enter_queue()
            return out
        await self._hang_up("bot_hangup", session.outcome)
        return None

    async def _enter_queue(self) -> None:
        assert self.session is not None and self.session.dialogue.handoff is not None
        record = self.session.dialogue.handoff
        self.center.enqueue(self, record)
        self.phase = self._hold_step
        await self.ws.send_json({"type": "transfer", "queue": record.queue})
        await self._announce_position()

    async def _announce_position(self) -> None:
        position = self.center.acd.position(self.call_id)
        wait_s = self.center.acd.estimated_wait_s(self.call_id)
        await self.ws.send_json({"type": "queue", "position": position, "estimated_wait_s": round(wait_s)})
        self._speak(position_announcement(position, wait_s))

    def _speak(self, text: str) -> None:
        if self._announcement is not None:
            self._announcement.cancel()
        self._hold.clear()
        synthesizer = self.engines.synthesizer
        self._announcement = asyncio.create_task(asyncio.to_thread(synthesize_all, synthesizer, text))

    async def _hold_step(self, frame: bytes, key: str | None) -> bytes | None:
        if key == CALLBACK_KEY and not self._leaving:
            self._leaving = True
            self.queue_result = "callback"
            await self.center.leave_queue(self.call_id, "callback")
            await self.ws.send_json({"type": "callback_scheduled"})
            self._speak(CALLBACK_CONFIRMATION)
        if self._announcement is not None and self._announcement.done():
            self._hold.extend(split_frames(self._announcement.result()))
            self._announcement = None
        if self._hold:
            return self._hold.popleft()
        if self._leaving:
            if self._announcement is None:
                await self._hang_up("callback")
                return None
            return SILENCE
        self._since_announce_ms += FRAME_MS
        if self._since_announce_ms >= self.announce_interval_ms:
            self._since_announce_ms = 0
            await self._announce_position()
        return self._music_frame()

    def _music_frame(self) -> bytes:
        music = hold_music()
        start = self._music_at
        self._music_at = (start + FRAME_BYTES) % (len(music) - len(music) % FRAME_BYTES)
        return music[start : start + FRAME_BYTES]

    def connect_agent(self, agent: AgentDesk) -> None:
        self._agent = agent
        self.queue_result = "answered"
        if self._announcement is not None:
            self._announcement.cancel()
            self._announcement = None
        self._hold.clear()
        self.phase = self._talk_step
        self._outbox.append({"type": "clear"})  # drop any buffered hold music
        self._outbox.append({"type": "agent_connected", "agent": agent.username})

    def agent_hung_up(self) -> None:
        self._agent_left = True

    async def _talk_step(self, frame: bytes, key: str | None) -> bytes | None:
        assert self._agent is not None
        if self._agent_left:
            await self._hang_up("agent_hangup", "escalated")
            return None
        await self._agent.send_audio(frame)
        return self._agent.inbound.popleft() if self._agent.inbound else SILENCE
