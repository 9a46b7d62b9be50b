"""What a caller on hold or in the queue hears: locally generated hold music, and announcements made
of prompts from ``prompts/<language>.yml`` (their ids are in ``voicebot.dialogue.flow.QUEUE_PROMPTS``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicebot.audio import FRAME_BYTES, SAMPLE_RATE
from voicebot.audio.codecs import split_frames
from voicebot.engines import Engines
from voicebot.tts.piper_engine import synthesize_all

log = logging.getLogger("voicebot.server")
# A prompt id and the values its template is filled with.
PromptPart = tuple[str, dict[str, Any]]
CALLBACK_CONFIRMATION: tuple[PromptPart, ...] = (("callback_confirmation", {}),)
TRANSFER_UNAVAILABLE: tuple[PromptPart, ...] = (("transfer_unavailable", {}),)
HOLD_COMFORT: tuple[PromptPart, ...] = (("hold_comfort", {}),)
TRANSFER_TO_COLLEAGUE: tuple[PromptPart, ...] = (("transfer_to_colleague", {}),)


@functools.cache
def hold_music() -> bytes:
    """A soft, looping arpeggio (C major, A minor, F major, G major), synthesised once per process."""
    chords = (
        (261.63, 329.63, 392.0),
        (220.0, 261.63, 329.63),
        (174.61, 220.0, 261.63),
        (196.0, 246.94, 293.66),
    )
    note_s = 0.25
    t = np.arange(int(SAMPLE_RATE * note_s)) / SAMPLE_RATE
    envelope = np.minimum(1.0, t / 0.02) * np.exp(-3.0 * t)  # quick attack, gentle decay: no clicks
    notes = [
        np.sin(2 * math.pi * freq * t) * envelope
        for chord in chords
        for _ in range(2)
        for freq in (*chord, chord[1])
    ]
    signal = np.concatenate(notes) * 0.15 * 32767  # about -16 dBFS: background, not a fanfare
    return signal.astype("<i2").tobytes()


def position_announcement(position: int, wait_s: float) -> tuple[PromptPart, ...]:
    """Where the caller is in the queue, about how long it will take, and how to ask for a callback."""
    minutes = max(1, round(wait_s / 60))
    return (
        ("queue_next", {}) if position == 1 else ("queue_position", {"position": position}),
        ("queue_wait_one_minute", {}) if minutes == 1 else ("queue_wait_minutes", {"minutes": minutes}),
        ("queue_callback_offer", {}),
    )


def announcement_audio(engines: Engines, language: str, parts: Sequence[PromptPart]) -> bytes:
    """The parts spoken one after another. Blocking: run it in a thread. Static prompts come from the
    prompt cache (pre-synthesised at startup); filled-in templates from the synthesizer."""
    prompts = engines.flow.prompts(language)
    voice = engines.for_language(language)
    audio: list[bytes] = []
    for prompt_id, values in parts:
        text = prompts.render(prompt_id, values)
        if prompts.get(prompt_id).is_static:
            audio.append(voice.prompt_cache.get(text))
        else:
            audio.append(synthesize_all(voice.synthesizer, text))
    return b"".join(audio)


class HoldPlayer:
    """A caller's hold audio, one 20 ms frame at a time: the announcement asked for (synthesised in a
    thread while the music goes on), else the music from where it left off. ``engines`` None: music
    only (a caller the contact centre cannot speak to)."""

    def __init__(self, engines: Engines | None, language: str) -> None:
        self.engines = engines
        self.language = language
        self._frames: deque[bytes] = deque()  # the announcement's, before more music
        self._synthesis: asyncio.Task[bytes] | None = None
        self._music_at = 0

    @property
    def speaking(self) -> bool:
        """An announcement is being synthesised or played."""
        return self._synthesis is not None or bool(self._frames)

    def announce(self, parts: Sequence[PromptPart]) -> None:
        """Says ``parts`` instead of whatever announcement was on (on the event loop)."""
        self.silence()
        if self.engines is not None:
            self._synthesis = asyncio.create_task(
                asyncio.to_thread(announcement_audio, self.engines, self.language, parts)
            )

    def silence(self) -> None:
        if self._synthesis is not None:
            self._synthesis.cancel()
            self._synthesis = None
        self._frames.clear()

    def frame(self) -> bytes:
        if self._synthesis is not None and self._synthesis.done():
            synthesis, self._synthesis = self._synthesis, None
            try:
                self._frames.extend(split_frames(synthesis.result()))
            except Exception:  # a broken synthesizer must not drop a waiting caller: music only
                log.exception("hold announcement failed")
        if self._frames:
            return self._frames.popleft()
        music = hold_music()
        start = self._music_at
        self._music_at = (start + FRAME_BYTES) % (len(music) - len(music) % FRAME_BYTES)
        return music[start : start + FRAME_BYTES]
