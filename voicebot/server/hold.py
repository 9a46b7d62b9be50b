"""What a queued caller hears: locally generated hold music, and announcements made of prompts from
``prompts/<language>.yml`` (their ids are in ``voicebot.dialogue.flow.QUEUE_PROMPTS``)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicebot.audio import SAMPLE_RATE
from voicebot.engines import Engines
from voicebot.tts.piper_engine import synthesize_all

# A prompt id and the values its template is filled with.
PromptPart = tuple[str, dict[str, Any]]
CALLBACK_CONFIRMATION: tuple[PromptPart, ...] = (("callback_confirmation", {}),)
TRANSFER_UNAVAILABLE: tuple[PromptPart, ...] = (("transfer_unavailable", {}),)


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
