"""The agent leg's live transcript: both sides' speech endpointed per speaker, recognised off the
loop by the real Whisper recognizer (Piper and espeak-ng voices), redacted, in order; scripted
recognizers only where the recognizer's answer is the point (confidence, failures, card numbers)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.scripted import ScriptedRecognizer, ScriptedStream, silence, voiced
from voicebot.asr.base import RecognitionHints, Recognizer
from voicebot.audio import FRAME_MS, SAMPLE_RATE
from voicebot.audio.codecs import split_frames
from voicebot.audio.wav import pcm_from_samples
from voicebot.call.live_transcript import LiveLine, LiveTranscript
from voicebot.engines import Engines
from voicebot.tts.base import Synthesizer
from voicebot.tts.espeak_engine import EspeakSynthesizer
from voicebot.tts.piper_engine import synthesize_all

CALLER_SENTENCE = "My card was stolen yesterday."
CALLER_WORDS = ("card", "stolen", "yesterday")
AGENT_SENTENCE = "The transfer went through this morning."
AGENT_WORDS = ("transfer", "through", "morning")
PAUSE = silence(1000)  # longer than the endpointer's end silence


def says(line: LiveLine, words: tuple[str, ...]) -> bool:
    """Two of the three content words at least: small recognition differences are allowed."""
    return sum(word in line.text.lower() for word in words) >= 2


def duration_ms(pcm: bytes) -> int:
    return len(pcm) * 1000 // (2 * SAMPLE_RATE)


def ticks(audio_by_speaker: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """Each speaker's audio as the loop feeds it: one frame of each per tick, silence once theirs is over."""
    frames = {speaker: split_frames(pcm) for speaker, pcm in audio_by_speaker.items()}
    for tick in range(max(map(len, frames.values()))):
        for speaker, theirs in frames.items():
            yield speaker, theirs[tick] if tick < len(theirs) else silence(FRAME_MS)


async def transcribed(
    recognizer: Recognizer, engines: Engines, audio_by_speaker: dict[str, bytes]
) -> list[LiveLine]:
    """The lines of a leg where each speaker says their audio, once the transcript is closed."""
    lines: list[LiveLine] = []
    live = LiveTranscript(recognizer, engines.config.endpoint, "en", lines.append)
    for speaker, frame in ticks(audio_by_speaker):
        live.feed(speaker, frame)
        await asyncio.sleep(0)  # the loop's tick: deliveries run between frames
    await live.close()
    return lines


def test_a_callers_sentence_becomes_one_caller_line_once_they_stop(
    engines: Engines, caller_voice: Synthesizer
) -> None:
    speech = synthesize_all(caller_voice, CALLER_SENTENCE)

    async def first_line() -> tuple[LiveLine, bool]:
        delivered: asyncio.Queue[LiveLine] = asyncio.Queue()
        recognizer = engines.for_language("en").recognizer
        live = LiveTranscript(recognizer, engines.config.endpoint, "en", delivered.put_nowait)
        for speaker, frame in ticks({"Caller": speech + PAUSE}):
            live.feed(speaker, frame)
        line = await asyncio.wait_for(delivered.get(), timeout=120)  # before close: the pause ended it
        await live.close()
        return line, delivered.empty()

    started = time.time()
    line, no_more = asyncio.run(first_line())
    assert line.speaker == "Caller" and says(line, CALLER_WORDS), line
    assert no_more
    assert started <= line.at <= time.time()
    assert duration_ms(speech) / 2 <= line.audio_ms <= duration_ms(speech + PAUSE)


def test_two_speakers_come_out_as_their_own_lines_in_the_order_spoken(
    engines: Engines, caller_voice: Synthesizer
) -> None:
    caller = synthesize_all(caller_voice, CALLER_SENTENCE)
    agent = synthesize_all(EspeakSynthesizer("en-us", speed=150), AGENT_SENTENCE)
    # Both lines are fed every tick, as on the bridge: each is quiet while the other talks.
    conversation = {"Caller": caller + PAUSE, "Agent": silence(duration_ms(caller)) + PAUSE + agent + PAUSE}
    lines = asyncio.run(transcribed(engines.for_language("en").recognizer, engines, conversation))
    assert [line.speaker for line in lines] == ["Caller", "Agent"], lines
    assert says(lines[0], CALLER_WORDS) and says(lines[1], AGENT_WORDS), lines
    assert lines[0].at <= lines[1].at


@pytest.mark.parametrize(
    "heard",
    [
        "my card is four one one one one one one one one one one one one one one one",
        "it's 4111 1111 1111 1111",
    ],
)
def test_a_card_number_is_redacted_before_the_line_leaves(engines: Engines, heard: str) -> None:
    recognizer = ScriptedRecognizer(heard, "my account is 12345678")
    lines = asyncio.run(
        transcribed(recognizer, engines, {"Caller": voiced(600) + PAUSE + voiced(600) + PAUSE})
    )
    card, account = (line.text for line in lines)
    assert "[card ending 1111]" in card and not re.search(r"\d{13,}", card) and "one one" not in card, card
    assert account == "my account is 12345678"  # not a card number: left as said


@pytest.mark.parametrize("kind", ["tone", "noise"])
def test_a_tone_or_noise_gives_no_line(engines: Engines, kind: str) -> None:
    seconds = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(7)
    sound = 0.3 * np.sin(2 * np.pi * 1000 * seconds) if kind == "tone" else rng.normal(0, 0.1, len(seconds))
    audio = pcm_from_samples(np.clip(sound, -1, 1))
    assert (
        asyncio.run(transcribed(engines.for_language("en").recognizer, engines, {"Caller": audio + PAUSE}))
        == []
    )


def test_unsure_empty_and_too_short_utterances_are_dropped(engines: Engines) -> None:
    recognizer = ScriptedRecognizer(
        ("see you soon I remember", 0.34), ("  ", 0.9), (" yes ", 0.6), "never heard"
    )
    cough = voiced(140)  # 260 ms voiced with webrtcvad's hangover
    utterance = voiced(600) + PAUSE
    audio = utterance * 3 + cough + PAUSE
    lines = asyncio.run(transcribed(recognizer, engines, {"Caller": audio}))
    assert [line.text for line in lines] == ["yes"]
    assert recognizer.finishes == 3  # the cough was never recognised


def test_close_delivers_the_utterance_still_being_said_then_ignores_frames(
    engines: Engines, caller_voice: Synthesizer
) -> None:
    speech = synthesize_all(caller_voice, CALLER_SENTENCE)

    async def leg() -> list[LiveLine]:
        lines: list[LiveLine] = []
        live = LiveTranscript(
            engines.for_language("en").recognizer, engines.config.endpoint, "en", lines.append
        )
        for speaker, frame in ticks({"Caller": speech}):  # no trailing silence: still open at close
            live.feed(speaker, frame)
        await live.close()
        for speaker, frame in ticks({"Caller": speech + PAUSE}):
            live.feed(speaker, frame)
        await live.close()
        return lines

    lines = asyncio.run(leg())
    assert len(lines) == 1 and lines[0].speaker == "Caller" and says(lines[0], CALLER_WORDS), lines


class FirstStreamFails(ScriptedRecognizer):
    """The first utterance's recognition raises; later ones are recognised as scripted."""

    def __init__(self, *texts: str) -> None:
        super().__init__(*texts)
        self.failed = False

    def open_stream(self, hints: RecognitionHints | None = None) -> ScriptedStream:
        if not self.failed:
            self.failed = True
            raise RuntimeError("recognizer crashed")
        return super().open_stream(hints)


def test_a_failing_recognition_is_logged_and_dropped_and_later_lines_still_come(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    recognizer = FirstStreamFails("I'll hold")
    audio = (voiced(600) + PAUSE) * 2
    with caplog.at_level(logging.WARNING, logger="voicebot.call"):
        lines = asyncio.run(transcribed(recognizer, engines, {"Caller": audio}))
    assert [(line.speaker, line.text) for line in lines] == [("Caller", "I'll hold")]
    assert "recognizer crashed" in caplog.text and "line dropped" in caplog.text
