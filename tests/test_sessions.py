"""Recorded sessions: what is recorded, replaying it through the current models, and turning it into a
scenario that passes. The recording comes from a simulated call (the PulseAudio test records a live one)."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from pathlib import Path

import pytest

from voicebot.audio import FRAME_BYTES
from voicebot.audio.wav import load_wav
from voicebot.call import CallSession
from voicebot.config import PROJECT_ROOT, Config
from voicebot.engines import Engines
from voicebot.errors import VoicebotError
from voicebot.events import read_trace
from voicebot.scenarios import load_scenario, run_scenario
from voicebot.sessions import (
    SessionRecorder,
    compare_summaries,
    load_summary,
    replay_session,
    scenario_from_session,
)
from voicebot.tester_commands import add_from_session
from voicebot.transports.simulated import CallerTurn, run_simulated_call
from voicebot.tts.base import Synthesizer

DEMO = PROJECT_ROOT / "prompts" / "demo"
PIN = "4321"


@pytest.fixture(scope="module")
def recorded(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A call recorded like `voicebot mic` records one: lost card, account number spoken, PIN keyed."""
    folder = tmp_path_factory.mktemp("sessions") / "call"
    session = CallSession(engines, caller_id="+15550199")
    recorder = SessionRecorder(folder, session)
    turns = [
        CallerTurn(audio=load_wav(DEMO / "01_lost_card.wav")),
        CallerTurn(audio=load_wav(DEMO / "02_account_number.wav")),
        CallerTurn(dtmf=PIN),
    ]
    call = asyncio.run(run_simulated_call(session, turns))
    recorder.add_frames(bytes(call.caller_audio), bytes(call.bot_audio))
    recorder.close()
    return folder


def test_a_session_holds_both_sides_the_trace_and_a_summary(recorded: Path) -> None:
    caller, bot = load_wav(recorded / "caller.wav"), load_wav(recorded / "bot.wav")
    assert len(caller) == len(bot) > 0 and len(caller) % FRAME_BYTES == 0  # aligned, frame by frame
    events = read_trace(recorded / "trace.jsonl")
    summary = json.loads((recorded / "summary.json").read_text())
    assert summary["call_id"] == events[0]["call_id"]
    assert summary["outcome"] == events[-1]["outcome"]
    assert summary["duration_ms"] == events[-1]["audio_ms"] == len(caller) // FRAME_BYTES * 20
    speech, account, keys = summary["turns"]
    assert speech["intent"] == "report_lost_card" and "card" in speech["transcript"].lower()
    assert speech["confidence"] > 0.5 and account["kind"] == "speech"
    assert keys["kind"] == "dtmf" and keys["secret"] and keys["keys"] == "****"
    # In no text of the trace or the summary (numbers such as timings may hold the digits by chance).
    assert not [text for text in strings([*events, summary]) if PIN in text.replace(" ", "")]


def strings(value: object) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(text for item in value.values() for text in strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def test_replay_through_the_same_models_changes_nothing(engines: Engines, recorded: Path) -> None:
    replayed = asyncio.run(replay_session(engines, recorded, [PIN]))
    rows, changed = compare_summaries(load_summary(recorded), replayed)
    assert not changed, rows
    assert [row[3] for row in rows] == [""] * len(rows)


def test_replay_report_shows_a_changed_intent_and_outcome(recorded: Path) -> None:
    old = load_summary(recorded)
    new = copy.deepcopy(old)
    new["turns"][0]["intent"] = "branch_hours"
    new["outcome"] = "escalated"
    rows, changed = compare_summaries(old, new)
    assert changed
    assert (
        rows[0][3] == "INTENT CHANGED" and "report_lost_card" in rows[0][1] and "branch_hours" in rows[0][2]
    )
    assert rows[-1] == ["outcome", old["outcome"], "escalated", "CHANGED"]


def test_masked_pin_needs_the_keys_again(engines: Engines, recorded: Path, tmp_path: Path) -> None:
    with pytest.raises(VoicebotError, match="--secret-keys"):
        scenario_from_session(recorded, engines.config.endpoint, tmp_path / "s.yml")
    with pytest.raises(VoicebotError, match="4 secret keys"):
        scenario_from_session(recorded, engines.config.endpoint, tmp_path / "s.yml", ["12"])


def test_a_recording_becomes_a_passing_scenario(
    engines: Engines, config: Config, caller_voice: Synthesizer, recorded: Path, tmp_path: Path
) -> None:
    out = tmp_path / "regression" / "recorded.yml"
    parser = argparse.ArgumentParser()
    add_from_session(parser.add_subparsers())
    args = parser.parse_args(["from-session", str(recorded), "--out", str(out), "--secret-keys", PIN])
    assert args.handler(args, config) == 0

    summary = load_summary(recorded)
    text = out.read_text()
    assert PIN in text  # given on the command line; the scenario replays it
    wavs = sorted(out.parent.glob("recorded-turn*.wav"))
    assert len(wavs) == 2 and all(len(load_wav(w)) > 16_000 for w in wavs)  # the two spoken turns
    scenario = load_scenario(out)
    assert [t.audio is not None for t in scenario.turns] == [True, True, False]
    assert scenario.turns[0].expect == {"intent": "report_lost_card"}
    assert scenario.outcome == summary["outcome"]
    result = asyncio.run(run_scenario(engines, scenario, caller_voice))
    assert result.passed, result.failures
