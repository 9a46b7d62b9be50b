"""One media call as the contact centre sees it (the media WebSocket's :class:`CallOwner`).

From the start it keeps the call's rows in storage; the handoff record is stored the moment the bot
escalates, so a caller who hangs up during the transfer prompt still leaves one. After the transfer
prompt the caller is the contact centre's: queued, they hear their position and estimated wait and
hold music between announcements, may press 1 for a callback, and are bridged to the agent who
accepts the call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from voicebot.audio import FRAME_MS
from voicebot.call.live_transcript import LiveTranscript
from voicebot.engines import Engines
from voicebot.events import CallEvent
from voicebot.handoff.record import HandoffRecord
from voicebot.server.call_records import CallRecords
from voicebot.server.contact_center import ContactCenter
from voicebot.server.hold import CALLBACK_CONFIRMATION, HoldPlayer, PromptPart, position_announcement
from voicebot.server.room import CallRoom
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
        self._room: CallRoom | None = None
        self._agent_left = False
        self._hold: HoldPlayer | None = None  # while queued: announcements and music
        self._since_announce_ms = 0
        self._leaving = False  # the callback confirmation is playing; end when it is done

    # ----- CallOwner (started and handoff: CallRecords) --------------------------------------------

    def escalated(self, record: HandoffRecord, line: CallerLine, preface: Sequence[PromptPart] = ()) -> None:
        """Queues the caller; ``preface`` is said before the first position announcement."""
        self._line = line
        self.language = record.language  # the caller may have switched language during the bot part
        self._hold = HoldPlayer(self.engines, self.language)
        self.center.enqueue(self, record)
        line.send({"type": "transfer", "queue": record.queue})
        self._announce_position(preface)

    async def step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        return await self._phase(frame, key)

    async def ended(self, outcome: str, reason: str, events: list[CallEvent]) -> None:
        if self._line is not None and self.queue_result is None:
            self.queue_result = "abandoned"
            await self.center.leave_queue(self.call_id, "abandoned")
        elif self._room is not None and not self._agent_left:
            await self.center.caller_hung_up(self.call_id)
        if self._hold is not None:
            self._hold.silence()
        if self._room is not None:
            await self._room.close()  # the last words said are recognised and traced before the end
        self.record_end(outcome, self.queue_result or reason, events)

    # ----- CallerLink (the contact centre's side) --------------------------------------------------

    def open_room(self, agent: str) -> CallRoom:
        assert self._line is not None and self._hold is not None
        self.queue_result = "answered"
        self._hold.silence()
        voice = self.engines.for_language(self.language)
        transcript = functools.partial(
            LiveTranscript, voice.recognizer, self.engines.config.endpoint, self.language
        )
        self._room = CallRoom(self.call_id, HoldPlayer(self.engines, self.language), transcript)
        self._phase = self._talk_step
        self._line.send({"type": "clear"})  # drop any buffered hold music
        self._line.send({"type": "agent_connected", "agent": agent})
        return self._room

    def agent_hung_up(self) -> None:
        self._agent_left = True

    # ----- queued: announcements and hold music ----------------------------------------------------

    def _announce_position(self, preface: Sequence[PromptPart] = ()) -> None:
        assert self._line is not None and self._hold is not None
        position = self.center.acd.position(self.call_id)
        wait_s = self.center.acd.estimated_wait_s(self.call_id)
        self._line.send({"type": "queue", "position": position, "estimated_wait_s": round(wait_s)})
        self._hold.announce((*preface, *position_announcement(position, wait_s)))

    async def _hold_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        assert self._line is not None and self._hold is not None
        if key == CALLBACK_KEY and not self._leaving:
            self._leaving = True
            self.queue_result = "callback"
            await self.center.leave_queue(self.call_id, "callback")
            self._line.send({"type": "callback_scheduled"})
            self._hold.announce(CALLBACK_CONFIRMATION)
        if self._leaving:
            return self._hold.frame() if self._hold.speaking else HangUp("callback")
        if not self._hold.speaking:
            self._since_announce_ms += FRAME_MS
            if self._since_announce_ms >= self.announce_interval_ms:
                self._since_announce_ms = 0
                self._announce_position()
        return self._hold.frame()

    # ----- talking to the agents -----------------------------------------------------------------

    async def _talk_step(self, frame: bytes, key: str | None) -> bytes | HangUp:
        assert self._room is not None
        if self._agent_left:
            return HangUp("agent_hangup", "escalated")
        return await self._room.tick(frame)
