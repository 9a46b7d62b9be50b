"""The pure helpers of scripts/bench_asr.py: the WER normaliser, the dev/test split, engine names and
the channel padding. No models are loaded."""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_script
from voicebot.audio import FRAME_BYTES, SAMPLE_RATE

bench = load_script("bench_asr")


@pytest.mark.parametrize(
    ("reference", "hypothesis"),
    [
        ("can you put $40 into savings for me", "Can you put forty dollars into savings for me?"),
        ("shift a hundred and twenty dollars to chequing", "Shift $120 to checking."),
        ("um are you open on the fourth of july", "Are you open on the 4th of July?"),
        ("okay that's all thanks goodbye", "OK, that's all. Thanks, goodbye."),
        ("alright bye now", "All right, bye now."),
        ("i got charged one hundred dollars for nothing", "I got charged $100 for nothing."),
        ("twenty-five thousand", "25,000"),
    ],
)
def test_normaliser_gives_spellings_of_the_same_words_one_form(reference: str, hypothesis: str) -> None:
    assert bench.normalise_for_wer(reference) == bench.normalise_for_wer(hypothesis)


def test_normaliser_keeps_real_differences() -> None:
    assert bench.normalise_for_wer("move 19.99 to checking") == "move 19.99 to checking"
    assert bench.normalise_for_wer("no thank you") != bench.normalise_for_wer("I know, thank you.")
    assert bench.normalise_for_wer("uh um er") == ""


def test_split_is_stable_ignores_case_and_punctuation_and_halves_the_data() -> None:
    assert bench.split_of("What's my balance?") == bench.split_of("whats my balance")
    texts = [f"phrase number {i}" for i in range(400)]
    dev = sum(bench.split_of(text) == "dev" for text in texts)
    assert 150 < dev < 250


def test_a_smaller_limit_selects_a_prefix_of_a_larger_one() -> None:
    phrases = [bench.Phrase(f"phrase number {i}", f"intent_{i % 5}") for i in range(100)]
    ten = bench.select_phrases(phrases, "test", 10)
    assert ten == bench.select_phrases(list(reversed(phrases)), "test", 30)[:10]
    assert all(bench.split_of(p.text) == "test" for p in ten)
    assert len(bench.select_phrases(phrases, "all", None)) == 100


def test_engine_names_and_margins_without_duplicates() -> None:
    specs = bench.engine_specs(["base", "tiny.en-full"], [3, 5])
    assert [(s.name, s.model, s.margin_s) for s in specs] == [
        ("base", "base", 5.0),
        ("tiny.en-full", "tiny.en", None),
        ("base@3s", "base", 3.0),
        ("tiny.en@3s", "tiny.en", 3.0),
        ("tiny.en@5s", "tiny.en", 5.0),
    ]
    with pytest.raises(SystemExit):
        bench.engine_specs(["large"], [])


@pytest.mark.parametrize("channel", bench.CHANNELS)
def test_channels_pad_the_speech_with_silence_in_whole_frames(channel: str) -> None:
    speech = b"\x00\x10\x00\xf0" * (SAMPLE_RATE // 2)  # 1 s of a tone at 8 kHz
    audio = bench.pass_channel(speech, channel, seed=1)
    padded_s = 1.0 + bench.LEAD_SILENCE_S + bench.TRAIL_SILENCE_S
    assert len(audio) % FRAME_BYTES == 0
    assert abs(len(audio) / (SAMPLE_RATE * 2) - padded_s) < 0.02


def test_repetition_is_a_phrase_said_more_than_once() -> None:
    assert bench.is_repetition("can i go back can i go back")
    assert bench.is_repetition("blah blah blah")
    assert not bench.is_repetition("can i go back")
    assert not bench.is_repetition("")
