"""Scripted callers through the whole audio pipeline.

Piper speaks for the caller -> VAD -> Whisper -> Rasa -> dialogue -> Piper speaks for the bot. The
same scenarios are also spoken by espeak-ng voices unlike Piper's (accents, sexes, speeds, pitches),
some over the G.711 phone channel, so the suite hears callers other than the bot's own voice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from voicebot.config import PROJECT_ROOT
from voicebot.engines import Engines
from voicebot.scenarios import load_scenario, run_scenario
from voicebot.tts.base import Synthesizer
from voicebot.tts.espeak_engine import EspeakSynthesizer

SCENARIOS = [
    *sorted((PROJECT_ROOT / "tests" / "scenarios").glob("*.yml")),
    PROJECT_ROOT / "prompts" / "demo" / "demo_call.yml",
]
# (scenario, espeak-ng voice, words per minute, pitch, phone channel)
OTHER_VOICES = [
    ("balance_dtmf", "en-us+m3", 170, 40, False),
    ("agent_by_voice", "en-gb+f2", 150, 60, True),
    ("lost_card_spoken_digits", "en-us", 160, 50, False),
    ("navigation", "en-gb-x-rp+f4", 140, 65, False),
    ("transfer_confirm", "en-029", 165, 45, False),
    ("dispute_charge", "en-us+f2", 155, 70, True),
    ("out_of_scope", "en-gb-scotland", 160, 35, True),
    ("contact_and_bill", "en-gb-x-gbclan+m7", 180, 50, False),
    # Callers in their own language (no Spanish or Persian Piper voice installs here).
    ("languages/es_balance_keypad", "es-419", 150, 50, False),
    ("languages/es_balance_keypad", "es", 160, 40, True),
    ("languages/es_spoken_amount", "es-419", 155, 45, False),
    ("languages/es_agent_by_request", "es-419+m3", 155, 45, False),
    ("languages/switch_to_spanish", "es", 150, 50, False),
    ("languages/detect_spanish", "es-419", 150, 50, False),
    ("languages/fa_keypad", "fa", 150, 50, True),
]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, engines: Engines, caller_voice: Synthesizer) -> None:
    scenario = load_scenario(path)
    result = asyncio.run(run_scenario(engines, scenario, caller_voice))
    assert result.passed, "\n".join(result.failures + [f"turn: {t}" for t in result.turns])


@pytest.mark.parametrize(
    ("stem", "voice", "speed", "pitch", "phone"),
    OTHER_VOICES,
    ids=[f"{stem}-{voice}-{'phone' if phone else 'wideband'}" for stem, voice, _, _, phone in OTHER_VOICES],
)
def test_scenario_in_another_voice(
    engines: Engines, stem: str, voice: str, speed: int, pitch: int, phone: bool
) -> None:
    scenario = load_scenario(PROJECT_ROOT / "tests" / "scenarios" / f"{stem}.yml")
    caller = EspeakSynthesizer(voice, speed, pitch)
    result = asyncio.run(run_scenario(engines, scenario, caller, telephone=phone))
    assert result.passed, "\n".join(result.failures + [f"turn: {t}" for t in result.turns])
