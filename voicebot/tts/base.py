"""The synthesizer interface."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Synthesizer(Protocol):
    """Text to 16 kHz mono s16le PCM, one chunk per sentence so playback can start early."""

    name: str

    def synthesize(self, text: str) -> Iterator[bytes]: ...
