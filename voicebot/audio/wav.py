"""WAV files in and out, always converted to the internal 16 kHz mono s16le format."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import int16_from_pcm, resample
from voicebot.errors import AudioFormatError

# Containers libsndfile reads as RIFF/WAVE variants; anything else is rejected as "not a WAV".
_WAV_CONTAINERS = frozenset({"WAV", "WAVEX", "RF64", "W64"})
# Below telephone narrowband nothing intelligible is left; above this the header is surely corrupt.
_MIN_SAMPLE_RATE = 4_000
_MAX_SAMPLE_RATE = 384_000


def samples_from_pcm(pcm: bytes) -> np.ndarray:
    """s16le PCM to float32 samples in [-1, 1)."""
    return int16_from_pcm(pcm).astype(np.float32) / 32768.0


def pcm_from_samples(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to s16le PCM, clipping anything outside that range."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype(np.int16).tobytes()


def _decode(source: str | io.BytesIO, name: str) -> bytes:
    try:
        info = sf.info(source)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        if info.format not in _WAV_CONTAINERS:
            raise AudioFormatError(f"{name}: not a WAV file (it is {info.format_info})")
        if not _MIN_SAMPLE_RATE <= info.samplerate <= _MAX_SAMPLE_RATE:
            raise AudioFormatError(
                f"{name}: unsupported sample rate {info.samplerate} Hz "
                f"(expected {_MIN_SAMPLE_RATE}-{_MAX_SAMPLE_RATE} Hz)"
            )
        frames, rate = sf.read(source, dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        raise AudioFormatError(f"{name}: not a readable WAV file ({exc})") from exc
    if frames.shape[0] == 0:
        raise AudioFormatError(f"{name}: WAV file contains no audio samples")
    return resample(pcm_from_samples(frames.mean(axis=1)), rate, SAMPLE_RATE)


def load_wav(path: Path) -> bytes:
    """Reads a WAV of any rate, channel count and sample format as 16 kHz mono s16le PCM."""
    if not path.is_file():
        raise AudioFormatError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: the file is empty, not a WAV file")
    return _decode(str(path), str(path))


def decode_wav_bytes(data: bytes, name: str = "<bytes>") -> bytes:
    """Like :func:`load_wav` for WAV data already in memory; ``name`` labels error messages."""
    if not data:
        raise AudioFormatError(f"{name}: empty data, not a WAV file")
    return _decode(io.BytesIO(data), name)


def write_wav(path: Path, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> None:
    """Writes mono s16le PCM as a 16-bit WAV file."""
    sf.write(str(path), int16_from_pcm(pcm), sample_rate, subtype="PCM_16", format="WAV")
