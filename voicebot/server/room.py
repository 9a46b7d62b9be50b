"""The agent leg of one call: the caller, the agents on it and any supervisor, mixed every 20 ms.

The caller's line drives the tick (:meth:`CallRoom.tick`, from the caller's ``step``): each member's
next frame in, and out to each member the mix of the members they may hear. Who hears whom:

- an agent who muted is heard by nobody; a supervisor who monitors by nobody, one who whispers by
  the agents (and other supervisors) only, one who barged in by everyone;
- while the call is on hold the caller and the others do not hear each other (agents on it can
  consult among themselves): the caller hears hold music, with a comfort message now and then.

What is heard is recognised as it is said (:class:`~voicebot.call.live_transcript.LiveTranscript`):
each line goes to ``on_line`` listeners (the desks, the call's trace).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from aiohttp import web

from voicebot.audio import FRAME_MS
from voicebot.call import SILENCE
from voicebot.call.live_transcript import LiveLine, LiveTranscript
from voicebot.server.hold import HOLD_COMFORT, HoldPlayer, PromptPart

log = logging.getLogger("voicebot.server")
CALLER = "Caller"  # the caller's name in the room and in transcripts
MAX_DESK_BUFFERED_FRAMES = 25  # 0.5 s of a desk's microphone; older audio is dropped
SUPERVISOR_MODES = ("monitor", "whisper", "barge")
Role = Literal["caller", "agent", "supervisor"]
# Makes the room's live transcript, given where its lines go.
TranscriptFactory = Callable[[Callable[[LiveLine], None]], LiveTranscript]


@dataclass(eq=False)
class AgentDesk:
    """One logged-in agent's or supervisor's desk connection; ``inbound`` holds their microphone's
    frames until the call's next tick takes one."""

    username: str
    ws: web.WebSocketResponse
    inbound: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_DESK_BUFFERED_FRAMES))

    async def send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_json(message)

    async def send_audio(self, frame: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(frame)

    def take(self) -> bytes:
        return self.inbound.popleft() if self.inbound else SILENCE


@dataclass(eq=False)
class Member:
    name: str
    role: Role
    desk: AgentDesk | None = None  # None: the caller (their audio comes with the tick)
    mode: str = "talk"  # a supervisor's: monitor | whisper | barge
    muted: bool = False

    @property
    def speaks(self) -> bool:
        return not self.muted and self.mode != "monitor"


def hears(listener: Member, speaker: Member, on_hold: bool) -> bool:
    """Whether ``listener`` hears ``speaker`` (see the module's docstring)."""
    if listener is speaker or not speaker.speaks:
        return False
    if speaker.mode == "whisper" and listener.role == "caller":
        return False
    return not (on_hold and CALLER in (listener.name, speaker.name))


def mix(frames: list[bytes]) -> bytes:
    if not frames:
        return SILENCE
    if len(frames) == 1:
        return frames[0]
    total = np.sum([np.frombuffer(frame, dtype="<i2").astype(np.int32) for frame in frames], axis=0)
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


class CallRoom:
    def __init__(
        self,
        call_id: str,
        hold: HoldPlayer,
        transcript: TranscriptFactory | None = None,
        comfort_interval_ms: int = 30_000,
    ) -> None:
        self.call_id = call_id
        self.hold = hold
        self.transcript = transcript(self._line) if transcript is not None else None
        self.comfort_interval_ms = comfort_interval_ms
        self.caller = Member(CALLER, "caller")
        self.members: dict[str, Member] = {}  # agents and supervisors, by username
        self.on_hold = False
        self.on_line: list[Callable[[LiveLine], None]] = []
        self._since_comfort_ms = 0
        self._closed = False

    # ----- membership and controls (the contact centre's) ------------------------------------------

    def join(self, member: Member) -> None:
        self.members[member.name] = member

    def leave(self, name: str) -> Member | None:
        return self.members.pop(name, None)

    @property
    def agents(self) -> list[str]:
        return [m.name for m in self.members.values() if m.role == "agent"]

    def set_hold(self, on: bool, announcement: tuple[PromptPart, ...] = HOLD_COMFORT) -> None:
        """On hold the caller hears ``announcement``, then music, the comfort message every
        ``comfort_interval_ms``; off hold, the announcement stops at once."""
        self.on_hold = on
        self._since_comfort_ms = 0
        if on:
            self.hold.announce(announcement)
        else:
            self.hold.silence()

    async def close(self) -> None:
        """The call is over: the last lines are recognised and delivered."""
        self._closed = True
        if self.transcript is not None:
            await self.transcript.close()

    # ----- the tick ------------------------------------------------------------------------------

    async def tick(self, caller_frame: bytes) -> bytes:
        """One 20 ms: the caller's frame in, what the caller hears out; every desk gets its mix."""
        frames = {CALLER: caller_frame}
        for member in self.members.values():
            assert member.desk is not None
            frames[member.name] = member.desk.take()
        everyone = [self.caller, *self.members.values()]
        for listener in everyone[1:]:
            assert listener.desk is not None
            heard = [frames[s.name] for s in everyone if hears(listener, s, self.on_hold)]
            await listener.desk.send_audio(mix(heard))
        if self.transcript is not None and not self._closed:
            for speaker in everyone:
                if any(hears(listener, speaker, self.on_hold) for listener in everyone):
                    self.transcript.feed(speaker.name, frames[speaker.name])
        if self.on_hold:
            return self._hold_frame()
        return mix([frames[s.name] for s in everyone[1:] if hears(self.caller, s, False)])

    def _hold_frame(self) -> bytes:
        if not self.hold.speaking:
            self._since_comfort_ms += FRAME_MS
            if self._since_comfort_ms >= self.comfort_interval_ms:
                self._since_comfort_ms = 0
                self.hold.announce(HOLD_COMFORT)
        return self.hold.frame()

    def _line(self, line: LiveLine) -> None:
        for listener in self.on_line:
            try:
                listener(line)
            except Exception:  # one listener's fault must not lose the line for the others
                log.exception("call %s: a transcript listener failed", self.call_id)
