"""Scripted callers through the whole audio pipeline.

Piper speaks for the caller -> VAD -> Whisper -> Rasa -> dialogue -> Piper speaks for the bot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from voicebot.config import PROJECT_ROOT
from voicebot.engines import Engines
from voicebot.scenarios import load_scenario, run_scenario
from voicebot.tts.base import Synthesizer

SCENARIOS = [
    *sorted((PROJECT_ROOT / "tests" / "scenarios").glob("*.yml")),
    PROJECT_ROOT / "prompts" / "demo" / "demo_call.yml",
]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, engines: Engines, caller_voice: Synthesizer) -> None:
    scenario = load_scenario(path)
    result = asyncio.run(run_scenario(engines, scenario, caller_voice))
    assert result.passed, "\n".join(result.failures + [f"turn: {t}" for t in result.turns])
