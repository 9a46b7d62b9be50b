"""One media call as the contact centre sees it (the media WebSocket's :class:`CallOwner`).

From the start it keeps the call's rows in storage; the handoff record is stored the moment the bot
escalates, so a caller who hangs up during the transfer prompt still leaves one. After the transfer
prompt the caller is the contact centre's: queued, they hear their position and estimated wait and
hold music between announcements, may press 1 for a callback, and are bridged to the agent who
accepts the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.call import SILENCE
from voicebot.engines import Engines
from voicebot.events import CallEvent
from voicebot.handoff.record import HandoffRecord
from voicebot.server.call_records import CallRecords
from voicebot.server.contact_center import AgentDesk, ContactCenter
from voicebot.server.hold import (
    CALLBACK_CONFIRMATION,
    PromptPart,
    announcement_audio,
    hold_music,
    position_announcement,
)
from voicebot.storage import Storage
from voicebot.transports.line import CallerLine, HangUp

log = logging.getLogger("voicebot.server")
CALLBACK_KEY = "1"
Phase = Callable[[bytes, str | None], Awaitable[bytes | HangUp]]


class CallerLeg(CallRecords):
    """The contact centre's side of one media call (see the module's docstring)."""

    def __init__(
        self, center: ContactCenter, storage: Storage, engines: Engines, announce_interval_ms: int
    ) -> None:
        super().__init__(storage, engines)
        self.center = center
        self.announce_interval_ms = announce_interval_ms
        self.queue_result: str | None = None  # answered | abandoned | callback, once queued
        self._line: CallerLine | None = None
        self._phase: Phase = self._hold_step
        self._agent: AgentDesk | None = None
        self._agent_left = False
        self._hold: deque[bytes] = deque()  # announcement frames to play before more music
        self._announcement: asyncio.Task[bytes] | None = None
        self._music_at = 0
        self._since_announce_ms = 0
        self._leaving = False  # the callback confirmation is playing; end when it is done

    # ----- CallOwner (started and handoff: CallRecords) --------------------------------------------

    def escalated(self, record: HandoffRecord, line: CallerLine, preface: Sequence[PromptPart] = ()) -> None:
        """Queues the caller; ``preface`` is said before the first position announcement."""
        self._line = line
        self.language = record.language  # the caller may have switched language during the bot part
        self.center.enqueue(self, record)
        line.send({"type": "transfer", "queue": record.queue})
        self._announce_position(preface)

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        return await self._phase(frame, key)

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        if self._line is not None and self.queue_result is None:
            self.queue_result = "abandoned"
            await self.center.leave_queue(self.call_id, "abandoned")
        elif self._agent is not None and not self._agent_left:
            await self.center.caller_hung_up(self.call_id)
        if self._announcement is not None:
            self._announcement.cancel()
        self.record_end(outcome, self.queue_result or reason, events)

    # ----- CallerLink (the contact centre's side) --------------------------------------------------

    def connect_agent(self, agent: AgentDesk) -> None:
        assert self._line is not None
        self._agent = agent
        self.queue_result = "answered"
        self._silence_announcement()
        self._phase = self._talk_step
        self._line.send({"type": "clear"})  # drop any buffered hold music
        self._line.send({"type": "agent_connected", "agent": agent.username})

    def agent_hung_up(self) -> None:
        self._agent_left = True

    # ----- queued: announcements and hold music ----------------------------------------------------

    def _announce_position(self, preface: Sequence[PromptPart] = ()) -> None:
        assert self._line is not None
        position = self.center.acd.position(self.call_id)
        wait_s = self.center.acd.estimated_wait_s(self.call_id)
        self._line.send({"type": "queue", "position": position, "estimated_wait_s": round(wait_s)})
        self._speak((*preface, *position_announcement(position, wait_s)))

    def _speak(self, parts: Sequence[PromptPart]) -> None:
        self._silence_announcement()
        # Synthesis (and a cache miss) blocks: in a thread, while the caller keeps hearing music.
        self._announcement = asyncio.create_task(
            asyncio.to_thread(announcement_audio, self.engines, self.language, parts)
        )

    def _silence_announcement(self) -> None:
        if self._announcement is not None:
            self._announcement.cancel()
            self._announcement = None
        self._hold.clear()

    async def _hold_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        assert self._line is not None
        if key == CALLBACK_KEY and not self._leaving:
            self._leaving = True
            self.queue_result = "callback"
            await self.center.leave_queue(self.call_id, "callback")
            self._line.send({"type": "callback_scheduled"})
            self._speak(CALLBACK_CONFIRMATION)
        if self._announcement is not None and self._announcement.done():
            announcement, self._announcement = self._announcement, None
            try:
                self._hold.extend(split_frames(announcement.result()))
            except Exception:  # a broken synthesizer must not drop a waiting caller: music only
                log.exception("call %s: queue announcement failed", self.call_id)
        if self._hold:
            return self._hold.popleft()
        if self._leaving:
            return HangUp("callback") if self._announcement is None else SILENCE
        self._since_announce_ms += FRAME_MS
        if self._since_announce_ms >= self.announce_interval_ms:
            self._since_announce_ms = 0
            self._announce_position()
        return self._music_frame()

    def _music_frame(self) -> bytes:
        music = hold_music()
        start = self._music_at
        self._music_at = (start + FRAME_BYTES) % (len(music) - len(music) % FRAME_BYTES)
        return music[start : start + FRAME_BYTES]

    # ----- talking to the agent ------------------------------------------------------------------

    async def _talk_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        assert self._agent is not None
        if self._agent_left:
            return HangUp("agent_hangup", "escalated")
        return await self._agent.exchange(frame)
