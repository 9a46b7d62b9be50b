"""PCM conversions: resampling (soxr) and G.711 mu-law / A-law for telephony edges."""

from __future__ import annotations

import numpy as np
import soxr


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resamples mono s16le PCM with soxr's high-quality filter (never naive decimation)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    out = soxr.resample(samples, src_rate, dst_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16).tobytes()
