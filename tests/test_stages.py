"""The call's stages with scripted models: timing logic (barge-in, speculation, playout, the tick)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.scripted import (
    ScriptedNlu,
    ScriptedRecognizer,
    ScriptedSynthesizer,
    scripted_engines,
    silence,
    voiced,
)
from voicebot.audio.codecs import split_frames
from voicebot.call import CallSession
from voicebot.call.playout import SILENCE, Playout, Utterance
from voicebot.config import Config
from voicebot.dialogue.outputs import Say
from voicebot.events import BargeIn, CallEvent, TtsFinished
from voicebot.handoff.record import HandoffRecord

INTENTS: dict[str, str | tuple[str, float]] = {
    "pay my bill": "pay_bill",
    "maybe the bill": ("pay_bill", 0.55),
    "a person please": "talk_to_agent",
    "yes": "affirm",
}


def session_with(
    tmp_path: Path, *texts: str, delay_s: float = 0.0, config: Config | None = None, **synth: object
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
        finished = [e for e in of_type(session, "tts_finished") if isinstance(e, TtsFinished)]
        assert [e.interrupted for e in finished] == [False, True]  # greeting whole, main menu cut
        await feed(session, silence(900))
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
