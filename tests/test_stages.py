"""The call's stages with scripted models: timing logic (barge-in, speculation, playout, the tick)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from tests.scripted import (
    ScriptedNlu,
    ScriptedRecognizer,
    ScriptedSynthesizer,
    scripted_engines,
    silence,
    voiced,
)
from voicebot.asr.base import Transcript
from voicebot.audio.codecs import split_frames
from voicebot.call import CallSession
from voicebot.call.playout import SILENCE, Playout, Utterance, resume_point
from voicebot.call.session import NOTHING_HEARD_RESUME_MS
from voicebot.call.understanding import only_backchannel
from voicebot.config import PROJECT_ROOT, Config
from voicebot.dialogue.flow import load_flow
from voicebot.dialogue.outputs import Say
from voicebot.errors import DataFileError
from voicebot.events import BargeIn, CallEvent, PromptResumed, TtsFinished
from voicebot.handoff.record import HandoffRecord

EventT = TypeVar("EventT", bound=CallEvent)

INTENTS: dict[str, str | tuple[str, float]] = {
    "pay my bill": "pay_bill",
    "my balance": "check_balance",
    "maybe the bill": ("pay_bill", 0.55),
    "a person please": "talk_to_agent",
    "yes": "affirm",
    "okay": "affirm",
    "yeah": "affirm",
}


def session_with(
    tmp_path: Path,
    *texts: str | tuple[str, float] | Transcript,
    delay_s: float = 0.0,
    config: Config | None = None,
    **synth: object,
) -> tuple[CallSession, ScriptedRecognizer, ScriptedNlu, list[HandoffRecord]]:
    recognizer, nlu = ScriptedRecognizer(*texts, delay_s=delay_s), ScriptedNlu(INTENTS)
    engines = scripted_engines(tmp_path, recognizer, nlu, ScriptedSynthesizer(**synth), config)  # type: ignore[arg-type]
    handoffs: list[HandoffRecord] = []
    return CallSession(engines, on_handoff=handoffs.append), recognizer, nlu, handoffs


async def feed(session: CallSession, pcm: bytes) -> None:
    for frame in split_frames(pcm):
        await session.step(frame)
        await session.settle()


async def until_quiet(session: CallSession, limit_ms: int = 60_000) -> None:
    """Silence until the bot has said everything it queued."""
    for _ in range(limit_ms // 20):
        if not session.bot_speaking or session.ended:
            return
        await feed(session, silence(20))
    raise AssertionError("the bot never went quiet")


async def until_said(session: CallSession, prompt_id: str, limit_ms: int = 20_000) -> None:
    for _ in range(limit_ms // 20):
        if any(getattr(e, "prompt_id", "") == prompt_id for e in of_type(session, "bot_said")):
            return
        await feed(session, silence(20))
    raise AssertionError(f"the bot never said {prompt_id}")


def of_type(session: CallSession, kind: str) -> list[CallEvent]:
    return [e for e in session.events if e.type == kind]


def said(session: CallSession) -> list[str]:
    return [getattr(e, "prompt_id", "") for e in of_type(session, "bot_said")]


def test_the_tick_never_waits_for_recognition(tmp_path: Path) -> None:
    async def call() -> None:
        session, recognizer, _, _ = session_with(tmp_path, "pay my bill")
        await session.start()
        await session.settle()
        await until_quiet(session)
        recognizer.gate.clear()  # recognition now blocks until the test opens the gate
        try:
            for frame in split_frames(voiced(800) + silence(900)):
                await asyncio.wait_for(session.step(frame), timeout=1.0)
            assert of_type(session, "speech_ended") and not of_type(session, "asr_final")
            # Seven seconds of frames while the turn is being understood: each one answered at once,
            # the bot waits quietly, and the no-input timer does not run.
            for frame in split_frames(silence(7000)):
                assert await asyncio.wait_for(session.step(frame), timeout=1.0) == SILENCE
            assert not of_type(session, "no_input")
        finally:
            recognizer.gate.set()
        await session.settle()
        await until_said(session, "pay_bill_info")
        assert [getattr(e, "intent", "") for e in of_type(session, "nlu_parsed")] == ["pay_bill"]

    asyncio.run(call())


def test_barge_in_needs_real_speech_and_spares_prompts_that_must_be_heard(tmp_path: Path) -> None:
    async def call() -> None:
        session, recognizer, _, handoffs = session_with(tmp_path, "", "a person please", ms_per_char=60)
        await session.start()
        await until_said(session, "greeting")
        await feed(session, voiced(140) + silence(900))  # a cough over the greeting (webrtcvad hears ~260 ms)
        assert not of_type(session, "barge_in") and not of_type(session, "asr_final")
        await until_said(session, "main_menu")
        await feed(session, silence(400) + voiced(600))
        barge_in = of_type(session, "barge_in")
        assert len(barge_in) == 1 and isinstance(barge_in[0], BargeIn)
        assert barge_in[0].by == "speech" and 0 < barge_in[0].heard_ms < barge_in[0].prompt_ms
        await feed(session, silence(900))
        finished = [e for e in of_type(session, "tts_finished") if isinstance(e, TtsFinished)]
        assert [e.interrupted for e in finished] == [False, True]  # greeting whole, main menu cut
        await until_said(session, "transfer")
        await feed(session, voiced(1500) + silence(900))  # talking over the transfer announcement
        assert len(of_type(session, "barge_in")) == 1 and recognizer.finishes + recognizer.peeks <= 2
        await until_quiet(session)
        assert session.outcome == "escalated" and handoffs and handoffs[0].reason == "caller_request"

    asyncio.run(call())


@pytest.mark.parametrize("speculate_after_ms", [200, 0])
def test_speculative_recognition_is_used_when_the_caller_stays_quiet(
    tmp_path: Path, speculate_after_ms: int
) -> None:
    config = Config().replace(endpoint=Config().endpoint.replace(speculate_after_ms=speculate_after_ms))

    async def call() -> None:
        session, recognizer, nlu, _ = session_with(tmp_path, "pay my bill", config=config)
        await session.start()
        await until_quiet(session)
        await feed(session, voiced(800) + silence(900))
        final = of_type(session, "asr_final")
        assert len(final) == 1 and final[0].speculative is bool(speculate_after_ms)
        assert (recognizer.peeks, recognizer.finishes) == ((1, 0) if speculate_after_ms else (0, 1))
        assert nlu.parsed == ["pay my bill"]  # parsed once, during the silence when speculating

    asyncio.run(call())


@pytest.mark.parametrize(
    ("heard", "intent", "from_n_best"),
    [
        (Transcript("play my pill", 0.5, alternatives=("play my bell", "pay my bill")), "pay_bill", True),
        (Transcript("a person please", 0.8, alternatives=("pay my bill",)), "talk_to_agent", False),
        (Transcript("play my pill", 0.5, alternatives=("play my bell",)), "nlu_fallback", False),
    ],
    ids=["understood further down", "best understood", "none understood"],
)
def test_a_request_is_taken_from_the_n_best_list_when_only_an_alternative_is_understood(
    tmp_path: Path, heard: Transcript, intent: str, from_n_best: bool
) -> None:
    async def call() -> None:
        session, _, _, _ = session_with(tmp_path, heard)
        await session.start()
        await until_quiet(session)
        await feed(session, voiced(800) + silence(900))
        await until_quiet(session)
        (parsed,) = of_type(session, "nlu_parsed")
        assert (parsed.intent, parsed.from_n_best) == (intent, from_n_best)

    asyncio.run(call())


def test_a_slot_answer_is_never_replaced_by_a_better_understood_alternative(tmp_path: Path) -> None:
    async def call() -> None:
        digits = Transcript("one two three four five six seven eight", 0.8, alternatives=("pay my bill",))
        session, _, _, _ = session_with(tmp_path, "my balance", digits)
        await session.start()
        await until_quiet(session)
        await feed(session, voiced(800) + silence(900))  # the request; it asks for the account number
        await until_quiet(session)
        await feed(session, voiced(1500) + silence(900))
        await until_quiet(session)
        parsed = of_type(session, "nlu_parsed")
        assert [p.from_n_best for p in parsed] == [False, False]
        assert parsed[1].text == "****5678"  # the digits said, as the trace keeps an account number

    asyncio.run(call())


def test_a_caller_who_resumes_talking_is_recognised_in_full(tmp_path: Path) -> None:
    async def call() -> None:
        session, recognizer, _, _ = session_with(tmp_path, "pay my bill")
        await session.start()
        await until_quiet(session)
        await feed(session, voiced(600) + silence(450) + voiced(600) + silence(900))
        assert len(of_type(session, "speech_ended")) == 1
        # The guess made during the pause is not used: the one after the whole utterance is.
        assert recognizer.peeks == 2 and len(of_type(session, "asr_final")) == 1

    asyncio.run(call())


def test_the_recogniser_is_told_what_the_dialogue_expects(tmp_path: Path) -> None:
    async def call() -> None:
        session, recognizer, _, _ = session_with(tmp_path, "maybe the bill", "yes")
        await session.start()
        await until_quiet(session)
        for _ in range(2):
            await feed(session, voiced(800) + silence(900))
            await until_quiet(session)
        menu, confirmation = recognizer.hints
        yes_no = session.dialogue.prompts.grammars["yes_no"]
        assert menu is not None and menu.grammar is None  # open recognition at the menu
        assert confirmation is not None and confirmation.grammar == yes_no and "yes" in yes_no
        assert "pay_bill_info" in said(session)

    asyncio.run(call())


def test_turn_latency_counts_the_time_models_take(tmp_path: Path) -> None:
    config = Config().replace(endpoint=Config().endpoint.replace(speculate_after_ms=0))

    async def call() -> None:
        session, _, _, _ = session_with(tmp_path, "pay my bill", delay_s=0.3, config=config)
        await session.start()
        await until_quiet(session)
        await feed(session, voiced(800) + silence(900))
        await until_said(session, "pay_bill_info")
        latency = of_type(session, "tts_first_audio")[-1].turn_latency_ms
        assert latency >= config.endpoint.end_silence_ms + 300

    asyncio.run(call())


def test_synthesis_failure_is_told_and_escalated(tmp_path: Path) -> None:
    async def call() -> None:
        session, _, _, handoffs = session_with(tmp_path, "maybe the bill", fail_on="Just to check")
        await session.start()
        await until_quiet(session)
        await feed(session, voiced(800) + silence(900))  # mid confidence: the bot asks to confirm
        await until_quiet(session)
        errors = of_type(session, "stage_error")
        assert len(errors) == 1 and errors[0].stage == "tts"
        assert said(session)[-2:] == ["internal_error", "transfer"]
        assert session.outcome == "escalated" and handoffs[0].reason == "internal_error"

    asyncio.run(call())


def test_an_interrupted_utterance_stops_and_reports_once() -> None:
    async def play() -> None:
        events: list[CallEvent] = []
        playout = Playout(events.append)
        chunks = iter([bytes(range(256)) * 25, bytes(range(256)) * 25])  # 2 chunks of 10 frames
        long = Utterance(Say("One. Two.", "long", static=False), chunks)
        kept = Utterance(Say("Hold on.", "transfer", interruptible=False), iter([b"\x01" * 640 * 3]))
        playout.add(long)
        playout.add(kept)
        while not long.started:
            await asyncio.sleep(0.001)
            playout.next_frame()
        for _ in range(4):
            frame, _ = playout.next_frame()
            assert frame != SILENCE
        playout.stop(keep_uninterruptible=True)
        finished = [e for e in events if isinstance(e, TtsFinished)]
        assert [(e.played_ms, e.interrupted) for e in finished] == [(100, True)]
        assert long.pending is None and playout.current is kept
        frames = []
        for _ in range(50):
            await asyncio.sleep(0.001)
            frame, _ = playout.next_frame()
            frames.append(frame)
        assert frames.count(b"\x01" * 640) == 3 and not playout.speaking
        assert [e.interrupted for e in events if isinstance(e, TtsFinished)] == [True, False]

    asyncio.run(play())


# ----- false interruptions: a barge-in by speech pauses the prompt until it is recognised -------------


async def play(session: CallSession, pcm: bytes, key: str | None = None) -> bytes:
    """Feeds the caller's audio (the key with its first frame); returns what the bot said meanwhile."""
    bot = bytearray()
    for index, frame in enumerate(split_frames(pcm)):
        bot += await session.step(frame, key if index == 0 else None)
        await session.settle()
    return bytes(bot)


async def play_until_quiet(session: CallSession, limit_ms: int = 60_000) -> bytes:
    bot = bytearray()
    for _ in range(limit_ms // 20):
        if not session.bot_speaking:
            return bytes(bot)
        bot += await play(session, silence(20))
    raise AssertionError("the bot never went quiet")


def frame_at(bot: bytes, audio_ms: int) -> bytes:
    """The frame the bot gave in the step that took the call to ``audio_ms`` (recorded from the start)."""
    index = audio_ms // 20 - 1
    return bot[index * 640 : (index + 1) * 640]


def understood(session: CallSession) -> list[str]:
    return [getattr(e, "text", "") for e in of_type(session, "nlu_parsed")]


def only(session: CallSession, kind: type[EventT]) -> EventT:
    events = [e for e in session.events if isinstance(e, kind)]
    assert len(events) == 1, events
    return events[0]


def finished(session: CallSession) -> list[TtsFinished]:
    return [e for e in session.events if isinstance(e, TtsFinished)]


def cut(session: CallSession) -> list[tuple[str, bool]]:
    """Each prompt the bot began, and whether it was interrupted (utterances finish in order)."""
    return [(prompt, e.interrupted) for prompt, e in zip(said(session), finished(session), strict=False)]


def test_words_recognised_unsurely_but_understood_interrupt_the_prompt(tmp_path: Path) -> None:
    """Whisper is unsure of short words ("agent." at 0.3): a clear request still interrupts."""

    async def call() -> None:
        session, _, _, _ = session_with(tmp_path, ("a person please", 0.3), ms_per_char=60)
        await session.start()
        await play(session, silence(1000) + voiced(600) + silence(900))
        await play_until_quiet(session)
        assert not of_type(session, "prompt_resumed")
        assert finished(session)[0].interrupted
        assert understood(session) == ["a person please"]

    asyncio.run(call())


@pytest.mark.parametrize(("heard", "reason"), [("", "empty"), (("I'm", 0.05), "low_confidence")])
def test_noise_over_a_prompt_pauses_it_and_the_caller_hears_the_rest(
    tmp_path: Path, heard: str | tuple[str, float], reason: str
) -> None:
    async def call() -> None:
        session, _, _, _ = session_with(tmp_path, heard, ms_per_char=60)
        await session.start()
        bot = await play(session, silence(1000) + voiced(600) + silence(900))  # noise over the greeting
        bot += await play_until_quiet(session)
        barge_in, resumed = only(session, BargeIn), only(session, PromptResumed)
        assert barge_in.by == "speech" and barge_in.paused and 0 < barge_in.heard_ms < barge_in.prompt_ms
        assert resumed.reason == reason and resumed.heard_ms == barge_in.heard_ms
        # Quiet from the barge-in's own frame until the noise is judged.
        assert all(frame_at(bot, ms) == SILENCE for ms in range(barge_in.audio_ms, resumed.audio_ms + 20, 20))
        # Then the rest, from the start of the sentence talked over (the greeting's first and only).
        greeting = session.models.prompt_cache.get(session.dialogue.prompts.render("greeting"))
        assert resumed.resumed_at_ms == 0
        rest = greeting[: len(greeting) // 640 * 640]
        assert bot[resumed.audio_ms // 20 * 640 :].startswith(rest)
        assert not finished(session)[0].interrupted and said(session) == ["greeting", "main_menu"]
        assert finished(session)[0].played_ms == finished(session)[0].total_ms
        # No turn for the dialogue (words recognised unsurely were parsed, to hear whether the NLU
        # was sure of them).
        assert bool(of_type(session, "nlu_parsed")) == (reason == "low_confidence")
        assert not of_type(session, "no_match") and session.dialogue.turn == 0

    asyncio.run(call())


def test_a_real_interruption_stops_the_paused_prompt_and_takes_the_turn(tmp_path: Path) -> None:
    async def call() -> None:
        session, _, nlu, _ = session_with(tmp_path, "pay my bill", ms_per_char=60)
        await session.start()
        await play(session, silence(1000) + voiced(600))
        assert only(session, BargeIn).paused and not finished(session)  # held, not dropped yet
        await play(session, silence(900))
        await until_said(session, "pay_bill_info")
        assert [e.interrupted for e in finished(session)] == [True]  # the greeting; the menu never began
        assert said(session) == ["greeting", "pay_bill_info"] and nlu.parsed == ["pay my bill"]
        assert not of_type(session, "prompt_resumed")

    asyncio.run(call())


def test_backchannel_over_a_menu_plays_it_on_but_answers_a_yes_no_question(tmp_path: Path) -> None:
    async def call() -> None:
        texts = ("Mm-hmm.", "maybe the bill", "okay", "yeah")
        session, _, _, _ = session_with(tmp_path, *texts, ms_per_char=60)
        await session.start()
        await until_said(session, "main_menu")
        await play(session, silence(200) + voiced(600) + silence(900))
        assert only(session, PromptResumed).reason == "backchannel"
        await until_quiet(session)
        assert not finished(session)[-1].interrupted and not of_type(session, "nlu_parsed")
        await play(session, silence(500) + voiced(800) + silence(900))  # mid confidence: the bot confirms
        await until_said(session, "confirm_intent")
        await play(session, silence(500) + voiced(600) + silence(900))  # "okay" over the question
        await until_said(session, "pay_bill_info")
        await until_said(session, "anything_else")
        await play(session, silence(500) + voiced(600) + silence(900))  # "yeah": yes, something else
        await until_quiet(session)
        assert len(of_type(session, "prompt_resumed")) == 1
        assert understood(session) == ["maybe the bill", "okay", "yeah"]
        assert [c for c in cut(session) if c[1]] == [("confirm_intent", True), ("anything_else", True)]
        assert said(session)[-1] == "main_menu"

    asyncio.run(call())


def test_a_key_stops_the_prompt_for_good_even_while_it_is_paused(tmp_path: Path) -> None:
    async def call() -> None:
        session, recognizer, _, _ = session_with(tmp_path, "", ms_per_char=60)
        await session.start()
        await until_said(session, "greeting")
        await play(session, silence(500), key="*")  # repeat the question
        dtmf = only(session, BargeIn)
        assert dtmf.by == "dtmf" and not dtmf.paused
        assert [(e.interrupted, e.audio_ms) for e in finished(session)] == [(True, dtmf.audio_ms)]
        await until_said(session, "main_menu")
        recognizer.gate.clear()  # the noise over the menu is still being recognised when the key comes
        try:
            for frame in split_frames(silence(200) + voiced(600) + silence(900)):
                await session.step(frame)
            assert session.playout.paused and not session.in_speech
            await session.step(SILENCE, "*")
        finally:
            recognizer.gate.set()
        await session.settle()
        await until_quiet(session)
        assert [(e.by, e.paused) for e in of_type(session, "barge_in")] == [
            ("dtmf", False), ("speech", True), ("dtmf", False)
        ]  # fmt: skip
        assert cut(session) == [("greeting", True), ("main_menu", True), ("main_menu", False)]
        assert not of_type(session, "prompt_resumed")

    asyncio.run(call())


def test_speech_that_comes_to_nothing_resumes_the_prompt(tmp_path: Path) -> None:
    async def call() -> None:
        session, _, _, _ = session_with(tmp_path, "pay my bill", ms_per_char=60)
        await session.start()
        await play(session, silence(1000) + voiced(600))
        session.listener.drop()  # the listener forgets the speech: there will be nothing to recognise
        dropped_ms = session.audio_ms
        await play(session, silence(400))
        resumed = only(session, PromptResumed)
        assert resumed.reason == "nothing_heard" and resumed.audio_ms - dropped_ms <= NOTHING_HEARD_RESUME_MS
        await until_quiet(session)
        assert said(session) == ["greeting", "main_menu"] and not of_type(session, "nlu_parsed")

    asyncio.run(call())


def tone_and_pauses(*spans: tuple[str, int]) -> list[bytes]:
    """Frames of loud tone ("tone", n) and silence ("quiet", n)."""
    loud = (np.sin(np.arange(320) * 0.05) * 8000).astype(np.int16).tobytes()
    return [loud if kind == "tone" else SILENCE for kind, count in spans for _ in range(count)]


def test_a_resumed_utterance_backs_up_to_the_start_of_the_phrase_talked_over() -> None:
    sentences = tone_and_pauses(("tone", 60), ("quiet", 10), ("tone", 60))
    # Stopped 40 frames into the second sentence, the caller having talked for 15: its start, with
    # one quiet frame before it.
    assert resume_point(sentences, 110, 15) == 69
    assert resume_point(sentences, 40, 15) == 0  # within the first sentence: from the top
    assert resume_point(sentences, 75, 15) == 0  # talking began as the first ended: that one again
    assert resume_point(sentences, 80, 15) == 64  # talking began in the pause: the second sentence
    # A phrase longer than the rewind limit is taken up at the last gap between words.
    words = tone_and_pauses(*[("tone", 28), ("quiet", 2)] * 12)
    assert resume_point(words, 350, 15) == 329
    assert resume_point(tone_and_pauses(("tone", 400)), 350, 15) == 335  # no gap at all


def test_backchannel_is_whole_phrases_only() -> None:
    phrases = ("uh-huh", "mm-hmm", "okay", "i see")
    assert only_backchannel("Uh-huh.", phrases) and only_backchannel("Okay, mm-hmm, I see.", phrases)
    assert not only_backchannel("okay I lost my card", phrases) and not only_backchannel("", phrases)
    assert not only_backchannel("I", phrases)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  yes_no: [", "  yes_or_no: ["), "needs a 'yes_no' grammar"),
        (("backchannel: [uh-huh,", "backchannel: [oh, uh-huh,"), "'oh' is also in grammar 'digits'"),
        (("backchannel: [uh-huh,", "backchannel: ['...', uh-huh,"), "'...' has no words"),
    ],
)
def test_backchannel_phrases_are_checked_with_file_and_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts", ignore=shutil.ignore_patterns("demo"))
    prompts_file = tmp_path / "prompts" / "en.yml"
    text = prompts_file.read_text()
    prompts_file.write_text(text.replace(*change))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("  backchannel:"))
    with pytest.raises(DataFileError, match=rf"en\.yml:{line}: .*{message}"):
        load_flow(tmp_path / "prompts")


# ----- first audio sooner ------------------------------------------------------------------------------


@pytest.mark.parametrize("opening_cached", [False, True])
def test_the_first_words_of_an_answer_are_synthesised_alone_or_come_from_memory(
    tmp_path: Path, opening_cached: bool
) -> None:
    async def call() -> None:
        session, _, _, _ = session_with(tmp_path, "maybe the bill")
        synthesizer = session.models.synthesizer
        assert isinstance(synthesizer, ScriptedSynthesizer)
        if opening_cached:  # as engines.py does at startup for every template's fixed opening
            session.models.prompt_cache.warm(["Just to check,"])
        await session.start()
        await until_said(session, "main_menu")
        await until_quiet(session)
        synthesizer.spoken.clear()
        await feed(session, voiced(800) + silence(900))  # mid confidence: the bot confirms
        await until_said(session, "confirm_intent")
        await until_quiet(session)
        rest = "you want to pay a bill. Is that right?"
        assert synthesizer.spoken == ([rest] if opening_cached else ["Just to check,", rest])
        first_audio = of_type(session, "tts_first_audio")[-1]
        assert (first_audio.synth_ms == 0.0) is opening_cached  # played from memory at once
        assert cut(session)[-1] == ("confirm_intent", False)

    asyncio.run(call())
