"""Whole calls: the trace, the handoff record, faults, bad input, and the audio clock."""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voicebot.audio.wav import load_wav
from voicebot.call import SILENCE, CallSession, Fault
from voicebot.cli import main
from voicebot.config import PROJECT_ROOT
from voicebot.engines import Engines
from voicebot.errors import DataFileError
from voicebot.events import Escalated, TraceWriter, TtsStarted, read_trace
from voicebot.scenarios import load_scenario
from voicebot.transports.simulated import CallerTurn, run_simulated_call
from voicebot.tts.base import Synthesizer
from voicebot.tts.piper_engine import synthesize_all

DEMO = PROJECT_ROOT / "prompts" / "demo"


def spoken(voice: Synthesizer, text: str) -> CallerTurn:
    return CallerTurn(audio=synthesize_all(voice, text))


def test_trace_has_every_stage_in_order(engines: Engines, caller_voice: Synthesizer, tmp_path: Path) -> None:
    trace_path = tmp_path / "trace.jsonl"
    writer = TraceWriter(trace_path)
    session = CallSession(engines, listeners=[writer])
    turns = [
        spoken(caller_voice, "what time does the branch close today"),
        spoken(caller_voice, "no thanks bye"),
    ]
    call = asyncio.run(run_simulated_call(session, turns))
    writer.close()
    events = read_trace(trace_path)
    kinds = [e["type"] for e in events]
    for kind in (
        "call_started", "speech_started", "speech_ended", "asr_final", "nlu_parsed", "dialogue_transition",
        "tts_started", "bot_said", "tts_first_audio", "tts_finished", "call_ended",
    ):  # fmt: skip
        assert kind in kinds, kind
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert events[-1]["outcome"] == "contained"
    assert all(a["t"] <= b["t"] and a["audio_ms"] <= b["audio_ms"] for a, b in pairwise(events))
    assert {e["call_id"] for e in events} == {session.call_id}
    # Recognition started during the trailing silence and its result was used at the endpoint.
    assert any(e["type"] == "asr_final" and e["speculative"] for e in events)
    # The first answer starts after the caller stopped; that its latency counts the models' time is
    # tested with a slow scripted recogniser in test_stages.py.
    speech_end = next(e for e in events if e["type"] == "speech_ended")
    first_audio = next(e for e in events if e["type"] == "tts_first_audio")
    assert first_audio["audio_ms"] > speech_end["audio_ms"] and first_audio["t"] > speech_end["t"]
    assert len(call.bot_audio) > 16000 * 2 * 3  # the bot spoke for seconds


def test_escalation_stores_a_complete_handoff(engines: Engines, caller_voice: Synthesizer) -> None:
    session = CallSession(engines, caller_id="+15550123", on_handoff=engines.call_store.save_handoff)
    turns = [
        spoken(caller_voice, "I want to dispute a charge on my card"),
        CallerTurn(dtmf="12345678"),
        spoken(caller_voice, "actually can I speak to somebody"),
    ]
    asyncio.run(run_simulated_call(session, turns))
    assert session.outcome == "escalated"
    record = engines.call_store.load_handoff(session.call_id)
    assert record["reason"] == "caller_request"
    assert record["caller_id"] == "+15550123" and record["language"] == "en"
    assert record["queue"] == "cards"
    assert record["intents"][0]["intent"] == "dispute_charge"
    assert record["slots"]["account_number"] == "****5678"
    assert record["auth_level"] == "identified"
    assert "dispute_charge" in record["menu_path"]
    speakers = {line["speaker"] for line in record["transcript"]}
    assert speakers == {"Caller", "Bot"}
    assert "12345678" not in json.dumps(record)


@pytest.mark.parametrize("stage", ["asr", "nlu", "tts", "dialogue"])
def test_engine_fault_is_announced_and_escalated(
    engines: Engines, caller_voice: Synthesizer, stage: str
) -> None:
    session = CallSession(engines, faults=(Fault(stage, turn=1),), on_handoff=engines.call_store.save_handoff)
    # The answer (an address) is not a cached prompt, so turn 1 runs every stage including TTS.
    asyncio.run(run_simulated_call(session, [spoken(caller_voice, "where is the downtown branch")]))
    kinds = [e.type for e in session.events]
    assert "stage_error" in kinds
    said = [getattr(e, "prompt_id", "") for e in session.events if e.type == "bot_said"]
    assert "internal_error" in said and "transfer" in said
    assert session.outcome == "escalated"
    record = engines.call_store.load_handoff(session.call_id)
    assert record["reason"] == "internal_error" and stage in record["detail"]


def test_paced_and_unpaced_calls_behave_the_same(engines: Engines) -> None:
    def timeline(paced: bool) -> list[tuple[str, int]]:
        # Cached prompts only: Piper's sampling makes fresh syntheses differ in length run to run.
        session = CallSession(engines)
        asyncio.run(run_simulated_call(session, [CallerTurn(dtmf="*"), CallerTurn(dtmf="0")], paced=paced))
        return [(e.type, e.audio_ms) for e in session.events if e.type not in ("tts_first_audio",)]

    assert timeline(paced=False) == timeline(paced=True)


def test_a_key_pressed_before_the_greeting_reaches_the_playout_cuts_it(engines: Engines) -> None:
    """0 on the call's first frame, while the dialogue still prepares the greeting: the caller goes
    to an agent at once and never hears the greeting (as a key during it would have stopped it)."""

    async def scenario() -> CallSession:
        session = CallSession(engines)
        await session.start()
        await session.step(SILENCE, "0")  # no await in between: the greeting is not delivered yet
        for _ in range(1500):  # 30 s of audio clock at most: the transfer prompt, then the handoff
            await session.settle()
            await session.step(SILENCE)
            if session.ended:
                break
        return session

    session = asyncio.run(scenario())
    started = [e.text for e in session.events if isinstance(e, TtsStarted)]
    greeting = engines.flow.prompts(engines.config.language).prompts["greeting"].text
    assert session.outcome == "escalated" and started, started
    assert greeting not in started
    assert any(isinstance(e, Escalated) for e in session.events)


def test_wrong_frame_size_is_refused(engines: Engines) -> None:
    session = CallSession(engines)
    asyncio.run(session.start())
    with pytest.raises(ValueError, match="640 bytes"):
        asyncio.run(session.step(b"\x00" * 100))


def test_cli_call_with_8khz_recording(
    engines: Engines, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`voicebot call` loads its own engines; the fixture only makes sure the NLU model is trained."""
    audio = tmp_path / "caller_8k.wav"
    pcm = np.frombuffer(load_wav(DEMO / "04_branch.wav"), dtype=np.int16)
    soundfile.write(audio, pcm[::2], 8000)  # a crude 8 kHz file: the call resamples it properly
    trace, out = tmp_path / "trace.jsonl", tmp_path / "bot.wav"
    assert main(["call", "--audio", str(audio), "--trace", str(trace), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Bot:" in printed and "Caller:" in printed and "branch_hours" in printed
    assert read_trace(trace)[-1]["type"] == "call_ended"
    info = soundfile.info(out)
    assert info.samplerate == 16000 and info.frames > 3 * 16000  # the bot spoke for over 3 s of audio


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"this is not audio", "not a"), (b"", "empty")],
    ids=["not-wav", "empty"],
)
def test_cli_call_rejects_bad_audio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    assert main(["call", "--audio", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "bad.wav" in error and message in error


def test_cli_call_rejects_empty_wav(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "silent.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.int16), 16000)
    assert main(["call", "--audio", str(empty)]) == 2
    assert "no audio" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", r"x\.yml:1: 'turns' must be a non-empty list"),
        ("turns:\n  - say: hi\n    shout: hey\n", r"x\.yml:3: turn: unknown key 'shout'"),
        ("turns:\n  - dtmf: '12a'\n", r"x\.yml:2: dtmf '12a'"),
        ("turns:\n  - audio: missing.wav\n", r"x\.yml:2: audio file .*missing\.wav not found"),
        ("turns:\n  - say: hi\n    expect: {mood: happy}\n", r"x\.yml:3: expect: unknown key 'mood'"),
        ("turns:\n  - say: hi\noutcome: happy\n", r"x\.yml:3: outcome must be one of"),
        ("turns: [\n", r"x\.yml:\d+: invalid YAML"),
    ],
)
def test_malformed_scenarios_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.yml"
    path.write_text(text)
    with pytest.raises(DataFileError, match=message):
        load_scenario(path)
