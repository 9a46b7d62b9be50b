"""A real-time call on a line: what every live transport (media WebSocket, SIP, AudioSocket) shares.

A transport reads the caller's audio and keys into :class:`LiveCall`'s buffers from its own reader
task, in the call's 16 kHz frames; :meth:`LiveCall.run` does the rest: one frame in and one frame
out every 20 ms of wall time, the bot until it escalates, then the call's :class:`CallOwner` (the
contact centre: queue, hold, agent), and the records when either side hangs up. A subclass only
says how its wire carries audio, keys, control messages and the hang-up.

The caller's audio is the clock the call keeps up with, not the server's missed wall time. When
the server falls behind (a slow step, a busy event loop), the bot frames it owes are not sent late
(the caller has heard that gap; frames sent for it would only wait in the caller's player as
delay), and the caller frames that piled up meanwhile go into the call at once, without a frame out
for each, so the bot hears the caller as soon as it can again: see :meth:`LiveCall._catch_up`.
Each caller frame keeps when it arrived, for the turn latency (:class:`~voicebot.call.CallSession`).

A connection becomes a call (its row in storage, counted in the figures) only once the caller has
sent valid audio or a key (:meth:`LiveCall.heard`): the owner's ``started`` comes then, with the time
the call started. A connection that breaks its protocol, or ends before sending anything valid, is
counted in :data:`protocol_failures` by line and reason instead (``voicebot_protocol_failures_total``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from voicebot.audio import FRAME_MS
from voicebot.call import SILENCE, CallSession
from voicebot.engines import Engines
from voicebot.events import BargeIn, CallEvent
from voicebot.handoff.record import HandoffRecord

log = logging.getLogger("voicebot.media")
MAX_BUFFERED_FRAMES = 25  # 0.5 s jitter buffer; a caller sending faster than real time loses the oldest
MAX_BUFFERED_KEYS = 32
FRAME_S = FRAME_MS / 1000
# A stall longer than this is a gap the caller has heard: the frames owed for it are not sent (a
# gateway's jitter buffer absorbs a shorter one, which is caught up on at once).
MAX_OWED_FRAMES = 3
# Caller frames that waited through this many ticks, the queue never running below them, are a lag
# (the server fell behind), not a burst: a caller may send 200 ms at once (the media WebSocket's 10
# frames, AudioSocket's 200 ms), which empties within 10 ticks. A lag is taken down to CAUGHT_UP_FRAMES.
STANDING_QUEUE_TICKS = 10
CAUGHT_UP_FRAMES = 1
# Why a connection failed, a bounded set (a metric's label values): nothing or a close before the
# start (or call UUID), something else first, a start that is not valid, a malformed or unexpected
# message, malformed audio, a peer that stopped reading, and a connection that ended before it sent
# any valid audio or key (no protocol broken, but not a call either). Then connections refused before
# they were let in (voicebot/server/media_door.py): an Origin not allowed, no token, a wrong or expired
# token, an address not trusted without a token, too many connections in all or from one address.
FAILURE_REASONS = (
    "no_start",
    "before_start",
    "bad_start",
    "bad_message",
    "bad_audio",
    "stalled",
    "no_media",
    "foreign_origin",
    "no_token",
    "bad_token",
    "expired_token",
    "address_not_allowed",
    "over_capacity",
    "address_over_capacity",
    "other",
)
# Failed connections since the process started, by (line, reason): /metrics shows them as a counter.
protocol_failures: Counter[tuple[str, str]] = Counter()


def count_failure(line: str, reason: str) -> None:
    protocol_failures[line, reason if reason in FAILURE_REASONS else "other"] += 1


class ProtocolViolation(Exception):
    """The peer broke its protocol: this call alone is closed, with this message; ``reason`` is one
    of :data:`FAILURE_REASONS`, for the count of failures."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason if reason in FAILURE_REASONS else "other"


@dataclass(frozen=True)
class HangUp:
    """What the owner's ``step`` returns to end the call."""

    reason: str
    outcome: str | None = None


class CallerLine(Protocol):
    """The caller's connection, as the call's owner sees it."""

    def send(self, message: dict[str, Any]) -> None:
        """Queues a control message; it goes out before the next audio frame (where the wire has
        control messages: a telephone line has none and drops them)."""


class CallOwner(Protocol):
    """What the server plugs into one live call: its records, and the caller after an escalation."""

    def started(self, call_id: str, caller_id: str, language: str, at: float) -> None:
        """The connection is a call: the caller sent valid audio or a key (or the bot escalated).
        ``at`` is when it started (its start message: the greeting played from then)."""

    def event(self, event: CallEvent) -> None:
        """One of the bot's events as it happens, from any thread (stages emit from worker threads):
        the records write the trace during the call, so a server that dies mid-call keeps it."""

    def handoff(self, record: HandoffRecord) -> None:
        """The bot escalated; the transfer prompt is about to play (the caller may hang up during it)."""

    def escalated(self, record: HandoffRecord, line: CallerLine) -> None:
        """The transfer prompt has played: from the next frame on, :meth:`step` serves the caller."""

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        """One 20 ms frame after the escalation: the caller's audio and key in, what they hear out."""

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        """The call is over, whoever hung up: the bot's outcome, why it ended, its events."""


class LiveCall(ABC):
    """One caller on a real-time line (see the module's docstring)."""

    line: ClassVar[str] = "other"  # the line's name in the count of failures: media, sip, audiosocket

    def __init__(self, engines: Engines, owner: CallOwner) -> None:
        self.engines = engines
        self.owner = owner
        self.session: CallSession | None = None
        # The caller's frames not taken yet, each with when it arrived (time.monotonic()).
        self.inbound: deque[tuple[bytes, float]] = deque(maxlen=MAX_BUFFERED_FRAMES)
        self.keys: deque[str] = deque(maxlen=MAX_BUFFERED_KEYS)
        self.caller_gone = False
        self.violation: str | None = None
        self.end_reason = "caller_hangup"
        self._escalated = False  # the owner serves the caller (see CallOwner.escalated)
        self.is_call = False  # the caller sent valid audio or a key: the owner keeps its records
        self._opening: tuple[str, str, float] = ("", "", 0.0)  # caller id, language, start time
        self._outbox: deque[dict[str, Any]] = deque()  # control messages to send before the next frame
        # The fewest caller frames waiting at a tick, over the ticks watched so far (see _catch_up).
        self._least_waiting = MAX_BUFFERED_FRAMES
        self._watched_ticks = 0

    # ----- what a transport provides ---------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Whatever comes before the greeting (a start message); ends by calling :meth:`start`."""

    @abstractmethod
    async def read(self) -> None:
        """Fills :attr:`inbound` (by :meth:`receive`) and :attr:`keys` until the caller's side closes."""

    @abstractmethod
    async def send_frame(self, frame: bytes) -> None:
        """One 20 ms frame of 16 kHz s16le the caller hears."""

    async def send_control(self, message: dict[str, Any]) -> None:  # noqa: B027 (optional)
        """A control message from the bot or the owner; a wire without them drops it."""

    @abstractmethod
    async def send_hangup(self, hangup: HangUp) -> None:
        """The bot's side ends the call."""

    @abstractmethod
    async def close(self) -> None:
        """Releases the connection, whoever ended the call (always called, once)."""

    def receive(self, frames: Iterable[bytes], arrived: float | None = None) -> None:
        """The caller's audio from the wire, in the call's frames, and when it arrived (now)."""
        at = time.monotonic() if arrived is None else arrived
        self.inbound.extend((frame, at) for frame in frames)

    def caller_frame(self) -> tuple[bytes, float] | None:
        """The caller's next 20 ms and when it arrived; None when nothing came."""
        return self.inbound.popleft() if self.inbound else None

    @property
    def waiting(self) -> int:
        """Caller frames received and not taken yet (beyond any the line holds back on purpose)."""
        return len(self.inbound)

    def skipped(self, frames: int) -> None:  # noqa: B027 (optional)
        """The server fell behind: nothing was sent for this many frames (a wire with timestamps
        moves them on)."""

    @property
    def line_closed(self) -> bool:
        """The connection is gone even if the reader has not noticed yet."""
        return False

    def on_event(self, event: CallEvent) -> None:
        """The bot's events as they happen: to the owner's records; a barge-in also clears what is
        buffered."""
        self.owner.event(event)
        if isinstance(event, BargeIn):
            self.send({"type": "clear"})

    # ----- the call --------------------------------------------------------------------------------

    async def run(self) -> None:
        reader: asyncio.Task[None] | None = None
        try:
            await self.open()
            reader = asyncio.create_task(self._read_until_gone())
            await self._pace()
        except ProtocolViolation as exc:
            self._broke(exc)
        finally:
            if reader is not None:
                reader.cancel()
            await self._finish()

    async def start(
        self, caller_id: str, language: str, call_id: str | None = None, home: str | None = None
    ) -> CallSession:
        self.session = CallSession(
            self.engines,
            caller_id=caller_id,
            language=language,
            home=home,
            call_id=call_id,
            listeners=[self.on_event],
            on_handoff=self._handoff,
        )
        self._opening = (caller_id, language, time.time())
        return self.session

    def heard(self) -> None:
        """The caller sent valid audio or a key: from now on the connection is a call. A transport
        calls it when the caller's audio comes (keys in :attr:`keys` count when they are taken)."""
        if self.is_call or self.session is None:
            return
        self.is_call = True
        caller_id, language, at = self._opening
        self.owner.started(self.session.call_id, caller_id, language, at)

    def _handoff(self, record: HandoffRecord) -> None:
        self.heard()  # an escalation is a call, even one that never heard the caller: an agent takes it
        self.owner.handoff(record)

    def serve_owner(self, record: HandoffRecord) -> None:
        """The owner serves the call from its first frame, with no bot on it (a callback that the
        contact centre placed for an agent): what :meth:`open` calls instead of :meth:`start`."""
        self._escalated = True
        self.is_call = True
        self.owner.escalated(record, self)

    def violated(self, reason: str) -> None:
        if self.violation is None:
            log.warning("%s closed: %s", type(self).__name__, reason)
            self.violation = reason
            self.end_reason = "protocol_error"
        self.caller_gone = True

    def _broke(self, exc: ProtocolViolation) -> None:
        if self.violation is None:
            count_failure(self.line, exc.reason)
        self.violated(str(exc))

    def send(self, message: dict[str, Any]) -> None:
        self._outbox.append(message)

    async def _read_until_gone(self) -> None:
        try:
            await self.read()
        except ProtocolViolation as exc:
            self._broke(exc)
        self.caller_gone = True

    async def _pace(self) -> None:
        """One frame out every 20 ms of wall time, and the caller's next frame in with it, until
        either side hangs up (see the module's docstring for a server that falls behind)."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self.caller_gone:
            self._catch_up()
            frame, arrived = self.caller_frame() or (SILENCE, time.monotonic())
            key = self.keys.popleft() if self.keys else None
            if key is not None:
                self.heard()
            if self._escalated:
                out = await self.owner.step(frame, key)
            else:
                out = await self._bot_step(frame, key, arrived)
            if self.caller_gone or self.line_closed:
                return
            while self._outbox:
                await self.send_control(self._outbox.popleft())
            if isinstance(out, HangUp):
                self.end_reason = out.reason
                await self.send_hangup(out)
                return
            await self.send_frame(out)
            next_tick += FRAME_S
            owed = int((loop.time() - next_tick) / FRAME_S)
            if owed > MAX_OWED_FRAMES:  # held up: the caller heard the gap, their audio piled up
                next_tick += owed * FRAME_S
                self.skipped(owed)
                self._watch_queue(STANDING_QUEUE_TICKS - 1)  # judged at the next tick: no need to wait
            await asyncio.sleep(max(0.0, next_tick - loop.time()))

    def _catch_up(self) -> None:
        """Takes at once the caller frames the call fell behind on: those that waited through
        STANDING_QUEUE_TICKS ticks (or a stall), all but CAUGHT_UP_FRAMES. The bot hears them with no
        frame out for each (:meth:`CallSession.catch_up`): its audio goes on where it stopped. Once
        the owner serves the call they are dropped instead, as a jitter buffer does: a person hears
        them, and late audio would only delay the rest."""
        self._least_waiting = min(self._least_waiting, self.waiting)
        self._watched_ticks += 1
        if self._watched_ticks < STANDING_QUEUE_TICKS:
            return
        lagging = self._least_waiting - CAUGHT_UP_FRAMES
        self._watch_queue()
        for _ in range(lagging):
            taken = self.caller_frame()
            if taken is None:
                return
            if self.session is not None and not self._escalated:
                self.session.catch_up(*taken)

    def _watch_queue(self, watched_ticks: int = 0) -> None:
        """Starts watching the caller's queue afresh, as if ``watched_ticks`` had found it full."""
        self._least_waiting = MAX_BUFFERED_FRAMES
        self._watched_ticks = watched_ticks

    async def _bot_step(self, frame: bytes, key: str | None, arrived: float) -> bytes | HangUp:
        session = self.session
        assert session is not None
        out = await session.step(frame, key, arrived=arrived)
        if not session.ended:
            return out
        if session.outcome == "escalated" and session.handoff is not None:
            self._escalated = True
            self.owner.escalated(session.handoff, self)
            return out
        return HangUp("bot_hangup", session.outcome)

    async def _finish(self) -> None:
        session = self.session
        try:
            if session is not None:
                if self.keys:
                    self.heard()  # a key came just before the end, not taken yet
                if not session.ended:
                    await session.hangup(self.end_reason)
                if self.is_call:
                    await self.owner.ended(session.outcome or "abandoned", self.end_reason, session.events)
                else:  # nothing valid came: not a call, no records
                    if self.violation is None:
                        count_failure(self.line, "no_media")
                    log.info("%s %s ended before any audio or key: not a call", self.line, session.call_id)
            elif self._escalated:
                await self.owner.ended("escalated", self.end_reason, [])
        finally:
            await self.close()
