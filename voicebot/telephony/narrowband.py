"""8 kHz telephone audio <-> the call's 16 kHz 20 ms frames, resampler state kept across frames."""

from __future__ import annotations

from voicebot.audio import FRAME_BYTES
from voicebot.audio.codecs import StreamResampler

LINE_RATE = 8000
LINE_FRAME_BYTES = FRAME_BYTES // 2  # 20 ms of 8 kHz s16le: 320 bytes, 160 samples


class Narrowband:
    """One call's two directions. Streaming resamplers emit uneven blocks (and little at first),
    so each direction is buffered into whole frames; the line side is always exactly one frame per
    call frame, padded with silence while the resampler fills."""

    def __init__(self) -> None:
        self._up = StreamResampler(LINE_RATE, LINE_RATE * 2)
        self._down = StreamResampler(LINE_RATE * 2, LINE_RATE)
        self._inbound = bytearray()
        self._outbound = bytearray()

    def to_call(self, pcm: bytes) -> list[bytes]:
        """8 kHz s16le from the line (any length) -> the whole 16 kHz frames it completes."""
        self._inbound += self._up.process(pcm)
        whole = len(self._inbound) - len(self._inbound) % FRAME_BYTES
        frames = [bytes(self._inbound[i : i + FRAME_BYTES]) for i in range(0, whole, FRAME_BYTES)]
        del self._inbound[:whole]
        return frames

    def to_line(self, frame: bytes) -> bytes:
        """One 16 kHz call frame -> exactly 20 ms of 8 kHz s16le for the line."""
        self._outbound += self._down.process(frame)
        if len(self._outbound) < LINE_FRAME_BYTES:
            self._outbound[:0] = bytes(LINE_FRAME_BYTES - len(self._outbound))
        out = bytes(self._outbound[:LINE_FRAME_BYTES])
        del self._outbound[:LINE_FRAME_BYTES]
        return out
