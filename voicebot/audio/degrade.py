"""Caller-channel degradation for scripted tests: background noise and a G.711 telephone leg."""

from __future__ import annotations

from typing import Literal

import numpy as np

from voicebot.audio import FRAME_SAMPLES, SAMPLE_RATE
from voicebot.audio.codecs import alaw_decode, alaw_encode, resample, ulaw_decode, ulaw_encode
from voicebot.audio.wav import pcm_from_samples, samples_from_pcm

TELEPHONE_RATE = 8_000
# Frames more than this far below the loudest frame are pauses, not speech, for the level estimate.
_ACTIVE_FLOOR_DB = 40.0
_CODECS = {"ulaw": (ulaw_encode, ulaw_decode), "alaw": (alaw_encode, alaw_decode)}


def active_rms(pcm: bytes) -> float:
    """RMS (full scale = 1.0) over the 20 ms frames that carry signal, so pauses do not dilute it."""
    samples = samples_from_pcm(pcm)
    if not len(samples):
        return 0.0
    padded = np.pad(samples, (0, -len(samples) % FRAME_SAMPLES))
    frame_power = np.mean(np.square(padded.reshape(-1, FRAME_SAMPLES)), axis=1)
    active = frame_power >= frame_power.max() * 10 ** (-_ACTIVE_FLOOR_DB / 10)
    return float(np.sqrt(np.mean(frame_power[active])))


def add_noise(pcm: bytes, snr_db: float, seed: int = 0, speech_rms: float | None = None) -> bytes:
    """Adds white Gaussian noise ``snr_db`` below the speech level.

    The level is the active RMS of ``pcm`` unless ``speech_rms`` gives it, which lets noise-only
    audio be made at the level that would accompany some speech.
    """
    reference_rms = active_rms(pcm) if speech_rms is None else speech_rms
    if reference_rms <= 0.0:
        raise ValueError("cannot set a signal-to-noise ratio on silent audio without speech_rms")
    noise_rms = reference_rms * 10 ** (-snr_db / 20)
    samples = samples_from_pcm(pcm)
    noise = np.random.default_rng(seed).normal(0.0, noise_rms, size=len(samples))
    return pcm_from_samples(samples + noise)


def telephone_channel(pcm: bytes, law: Literal["ulaw", "alaw"] = "ulaw") -> bytes:
    """Passes 16 kHz PCM through a narrowband G.711 leg (8 kHz, 8-bit companding) and back to 16 kHz."""
    encode, decode = _CODECS[law]
    narrowband = resample(pcm, SAMPLE_RATE, TELEPHONE_RATE)
    wideband = resample(decode(encode(narrowband)), TELEPHONE_RATE, SAMPLE_RATE)
    # Rounding at 8 kHz can add or drop a sample; keep the input's length so timings line up.
    return wideband[: len(pcm)].ljust(len(pcm), b"\x00")
