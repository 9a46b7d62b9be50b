"""End of turn: the decision at a pause, the listener acting on it, and Smart Turn on real speech."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tests.scripted import ScriptedNlu, silence, voiced
from voicebot.asr.base import RecognitionHints, Transcript
from voicebot.audio.codecs import split_frames
from voicebot.audio.degrade import telephone_channel
from voicebot.call.listener import Listener
from voicebot.config import Config, EndpointConfig
from voicebot.engines import Engines
from voicebot.events import CallEvent, SpeechEnded
from voicebot.nlu.base import NluEngine, NluResult
from voicebot.tts.espeak_engine import EspeakSynthesizer
from voicebot.turn.detector import CompletionModel, Pause, turn_is_over

CONFIG = EndpointConfig()


class ConstantModel:
    name = "constant"

    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.calls = 0

    def complete(self, pcm: bytes) -> float:
        self.calls += 1
        return self.probability


# --- the decision --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pause", "over"),
    [
        (Pause(100, complete=0.99, understood=0.99), False),  # too early to judge
        (Pause(220, complete=None, understood=0.99), False),  # the model has not answered yet
        (Pause(220, complete=0.6, understood=0.95), True),  # understood, and the model agrees
        (Pause(220, complete=0.2, understood=0.9), False),  # "I want to transfer | fifty dollars"
        (Pause(CONFIG.turn_sure_silence_ms - 20, complete=0.05, understood=0.97), False),
        (Pause(CONFIG.turn_sure_silence_ms, complete=0.05, understood=0.97), True),  # sure words
        (Pause(CONFIG.turn_sure_silence_ms, complete=None, understood=0.97), True),  # model still busy
        (Pause(CONFIG.turn_sure_silence_ms, complete=0.05, understood=0.9), False),  # not sure enough
        (Pause(220, complete=0.9, understood=0.4), False),  # sounds final, but nothing understood
        (Pause(220, complete=0.9, understood=None), False),
        (Pause(CONFIG.turn_max_silence_ms, complete=0.0), True),  # silence decides in the end
        (Pause(300, complete=0.99, understood=0.99, digits_expected=8, digits_heard=4), False),
        (Pause(300, complete=0.1, digits_expected=8, digits_heard=8), True),
        (Pause(300, complete=0.99, digits_expected=8, digits_heard=None), False),  # transcript pending
        (Pause(1500, complete=0.99, digits_expected=8, digits_heard=4), False),  # digit groups pause long
        (Pause(CONFIG.digits_pause_ms, complete=0.0, digits_expected=8, digits_heard=4), True),
        (Pause(300, complete=0.6, understood=0.95, digits_expected=8, digits_heard=0), True),  # "agent"
        (Pause(1500, complete=0.99, digits_expected=0, digits_heard=6), False),  # any length: wait
    ],
)
def test_turn_decision(pause: Pause, over: bool) -> None:
    assert turn_is_over(CONFIG, ConstantModel(0.0), pause) is over


def test_without_a_model_or_with_silence_only_the_pause_length_decides() -> None:
    sure = Pause(300, complete=1.0, understood=1.0)
    silence_only = CONFIG.replace(end_of_turn="silence")

    assert not turn_is_over(CONFIG, None, sure)
    assert not turn_is_over(silence_only, ConstantModel(1.0), sure)
    assert turn_is_over(CONFIG, None, Pause(CONFIG.end_silence_ms))


def test_a_confident_model_alone_ends_the_turn_when_configured() -> None:
    trusting = CONFIG.replace(turn_complete_threshold=0.8)

    assert turn_is_over(trusting, ConstantModel(0.0), Pause(220, complete=0.85))
    assert not turn_is_over(CONFIG, ConstantModel(0.0), Pause(220, complete=0.85))


# --- the listener --------------------------------------------------------------------------------


@dataclass
class GrowingStream:
    """Each speculative look hears one more phrase of the caller's turn."""

    phrases: tuple[str, ...]
    peeks: int = 0

    def accept(self, pcm: bytes) -> str | None:
        return None

    def peek(self) -> Transcript:
        self.peeks += 1
        return Transcript(" ".join(self.phrases[: self.peeks]), 0.9)

    def finish(self) -> Transcript:
        return Transcript(" ".join(self.phrases), 0.9)


class GrowingRecognizer:
    name = "growing"
    language = "en"

    def __init__(self, *phrases: str) -> None:
        self.phrases = phrases

    def open_stream(self, hints: RecognitionHints | None = None) -> GrowingStream:
        return GrowingStream(self.phrases)


async def listen(
    audio: bytes,
    recognizer: GrowingRecognizer,
    model: CompletionModel | None,
    *,
    nlu: NluEngine | None = None,
    digits: int | None = None,
    config: EndpointConfig = CONFIG,
    interruptible: bool = True,
    language: str = "en",
) -> tuple[list[int], list[SpeechEnded]]:
    """Feeds ``audio`` as a call does, awaiting the models after each frame (the audio clock);
    returns where each turn ended (ms) and the SpeechEnded events."""
    events: list[CallEvent] = []

    def understand(transcript: Transcript) -> asyncio.Task[tuple[NluResult, float]] | None:
        async def parse() -> tuple[NluResult, float]:
            return await nlu.parse(transcript.text), 1.0

        return asyncio.create_task(parse()) if nlu is not None else None

    listener = Listener(config, recognizer, events.append, understand, model, language=language)
    hints = RecognitionHints(digits=digits)
    ended_at = []
    for index, frame in enumerate(split_frames(audio)):
        utterance = listener.feed(
            frame, bot_speaking=False, interruptible=interruptible, hints=lambda: hints, secret=False
        )
        if pending := listener.pending():
            await asyncio.wait(pending)
        if utterance is not None:
            await utterance.recognition
            ended_at.append((index + 1) * 20)
    return ended_at, [e for e in events if isinstance(e, SpeechEnded)]


DIGITS = ("one two three four", "five six seven eight")


def test_digits_are_counted_in_the_call_language() -> None:
    audio = voiced(800) + silence(700) + voiced(800) + silence(2500)
    spanish = GrowingRecognizer("uno dos tres cuatro", "cinco seis siete ocho")
    ended, events = asyncio.run(listen(audio, spanish, ConstantModel(0.99), digits=8, language="es"))
    assert len(ended) == 1
    assert events[0].reason == "digits"


def test_a_paused_digit_string_is_one_turn_ended_when_all_digits_are_heard() -> None:
    audio = voiced(800) + silence(700) + voiced(800) + silence(2500)
    ended, events = asyncio.run(listen(audio, GrowingRecognizer(*DIGITS), ConstantModel(0.99), digits=8))

    assert len(ended) == 1 and ended[0] > 2300, "the pause between digit groups must not end the turn"
    assert events[0].reason == "digits"
    assert events[0].pause_ms < CONFIG.turn_max_silence_ms


def test_a_digit_string_of_unknown_length_waits_for_the_long_pause() -> None:
    audio = voiced(800) + silence(700) + voiced(800) + silence(2500)
    ended, events = asyncio.run(listen(audio, GrowingRecognizer(*DIGITS), ConstantModel(0.99), digits=0))

    assert len(ended) == 1
    assert events[0].reason == "silence" and events[0].pause_ms >= CONFIG.digits_pause_ms


def test_an_understood_request_ends_at_the_first_check_and_a_doubtful_one_waits() -> None:
    nlu = ScriptedNlu({"what is my balance": ("check_balance", 0.9)})
    audio = voiced(900) + silence(1500)

    quick, quick_events = asyncio.run(
        listen(audio, GrowingRecognizer("what is my balance"), ConstantModel(0.7), nlu=nlu)
    )
    slow, slow_events = asyncio.run(
        listen(audio, GrowingRecognizer("what is my balance"), ConstantModel(0.1), nlu=nlu)
    )

    assert quick_events[0].reason == "end_of_turn" and quick_events[0].turn_complete == 0.7
    assert slow_events[0].reason == "silence" and slow_events[0].pause_ms >= CONFIG.turn_max_silence_ms
    assert quick[0] + 300 < slow[0]


def test_sure_words_end_the_turn_at_a_longer_pause_when_the_model_hears_it_unfinished() -> None:
    nlu = ScriptedNlu({"what is my balance": ("check_balance", 0.99)})
    audio = voiced(900) + silence(1500)

    _, events = asyncio.run(
        listen(audio, GrowingRecognizer("what is my balance"), ConstantModel(0.05), nlu=nlu)
    )

    assert events[0].reason == "end_of_turn"
    assert CONFIG.turn_sure_silence_ms <= events[0].pause_ms < CONFIG.turn_max_silence_ms


@pytest.mark.parametrize("intent", ["out_of_scope", "nlu_fallback"])
def test_a_fragment_parsed_as_out_of_scope_is_not_understood(intent: str) -> None:
    # "so the thing is | there is a charge I don't know": the first half is confidently out of scope.
    nlu = ScriptedNlu({"so the thing is": (intent, 0.99)})
    audio = voiced(900) + silence(700) + voiced(900) + silence(1500)

    ended, _ = asyncio.run(
        listen(
            audio,
            GrowingRecognizer("so the thing is", "so the thing is there is a charge"),
            ConstantModel(0.9),
            nlu=nlu,
        )
    )

    assert len(ended) == 1 and ended[0] > 2500, "the first half must not end the turn"


def test_silence_only_ends_after_end_silence_ms_and_never_asks_the_model() -> None:
    model = ConstantModel(1.0)
    silence_only = CONFIG.replace(end_of_turn="silence")
    nlu = ScriptedNlu({"agent": "talk_to_agent"})

    _, events = asyncio.run(
        listen(voiced(600) + silence(1200), GrowingRecognizer("agent"), model, nlu=nlu, config=silence_only)
    )

    assert events[0].reason == "silence" and events[0].pause_ms == silence_only.end_silence_ms
    assert model.calls == 0


def test_speech_that_is_not_listened_to_ends_on_silence_alone() -> None:
    """Talk over a prompt that cannot be interrupted is ignored; it must not hold the endpointer
    for the long digit pause."""
    _, events = asyncio.run(
        listen(
            voiced(600) + silence(2500), GrowingRecognizer("agent"), ConstantModel(1.0), interruptible=False
        )
    )

    assert events[0].reason == "silence" and events[0].pause_ms == CONFIG.turn_max_silence_ms


class BrokenModel:
    name = "broken"

    def complete(self, pcm: bytes) -> float:
        raise RuntimeError("onnxruntime failed")


def test_a_failing_end_of_turn_model_leaves_the_turn_to_silence() -> None:
    nlu = ScriptedNlu({"agent": ("talk_to_agent", 0.9)})  # understood, not sure: the model would decide

    ended, events = asyncio.run(
        listen(voiced(600) + silence(1500), GrowingRecognizer("agent"), BrokenModel(), nlu=nlu)
    )

    assert len(ended) == 1
    assert events[0].reason == "silence" and events[0].pause_ms >= CONFIG.turn_max_silence_ms
    assert events[0].turn_complete is None


# --- Smart Turn and the recogniser on real speech ------------------------------------------------


def spoken(voice: EspeakSynthesizer, *phrases: str, pause_ms: int) -> bytes:
    parts = [b"".join(voice.synthesize(phrase)) for phrase in phrases]
    return silence(300) + silence(pause_ms).join(parts) + silence(3000)


@pytest.fixture(scope="module")
def real(engines: Engines) -> tuple[Config, object, NluEngine, CompletionModel]:
    models = engines.for_language("en")
    assert models.turn_model is not None, "the Smart Turn model is provisioned by `make setup`"
    return engines.config, models.recognizer, models.nlu, models.turn_model


@pytest.mark.parametrize("phone", [False, True], ids=["wideband", "phone"])
def test_smart_turn_keeps_a_paused_account_number_as_one_turn(real: tuple, phone: bool) -> None:
    config, recognizer, nlu, model = real
    audio = spoken(
        EspeakSynthesizer("en-gb+f2", 150, 60), "one two three four", "five six seven eight", pause_ms=900
    )
    audio = telephone_channel(audio) if phone else audio

    ended, events = asyncio.run(listen(audio, recognizer, model, nlu=nlu, digits=8, config=config.endpoint))

    assert len(ended) == 1, f"the turn was cut at a digit group: {events}"


def test_smart_turn_ends_a_complete_question_early(real: tuple) -> None:
    config, recognizer, nlu, model = real
    audio = spoken(EspeakSynthesizer("en-us+m3", 165, 45), "where is the closest branch", pause_ms=0)

    ended, events = asyncio.run(listen(audio, recognizer, model, nlu=nlu, config=config.endpoint))

    assert len(ended) == 1
    assert events[0].reason == "end_of_turn"
    assert events[0].pause_ms < config.endpoint.turn_max_silence_ms
