"""What a queued caller hears: position and wait announcements, and locally generated hold music."""

from __future__ import annotations

import functools
import math

import numpy as np

from voicebot.audio import SAMPLE_RATE


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


ORDINALS = {1: "next", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def position_announcement(position: int, wait_s: float) -> str:
    place = f"{ORDINALS[position]} in line" if position in ORDINALS else f"number {position} in line"
    minutes = max(1, round(wait_s / 60))
    wait = "about one minute" if minutes == 1 else f"about {minutes} minutes"
    return (
        f"You are {place}. The estimated wait is {wait}. "
        "To have us call you back instead, press 1 at any time."
    )


CALLBACK_CONFIRMATION = "Thank you. An agent will call you back on this number. Goodbye."
