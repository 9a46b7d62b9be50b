"""Small scripted engines behind the real interfaces, for fast tests of the call's timing logic.

They stand in for our models only where the model's answer is not what a test is about: the stages
(endpointer, listener, understanding, playout, dialogue) under test are the real ones.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from voicebot.asr.base import RecognitionHints, Transcript
from voicebot.audio import FRAME_BYTES, SAMPLE_RATE
from voicebot.config import PROJECT_ROOT, Config
from voicebot.dialogue.actions import ActionRegistry
from voicebot.dialogue.flow import load_flow
from voicebot.engines import Engines, LanguageEngines
from voicebot.handoff.record import CallStore
from voicebot.nlu.base import IntentScore, NluResult
from voicebot.tts.piper_engine import PromptCache


def voiced(ms: int) -> bytes:
    """A vowel-like harmonic tone: webrtcvad takes it for speech (the scripted recogniser ignores it)."""
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((140, 280, 420, 700, 1100, 2400)))
    return (wave * 0.15 * 32767).astype(np.int16).tobytes()


def silence(ms: int) -> bytes:
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


class ScriptedStream:
    def __init__(self, recognizer: ScriptedRecognizer, transcript: Transcript) -> None:
        self._recognizer = recognizer
        self._transcript = transcript

    def accept(self, pcm: bytes) -> str | None:
        return None

    def peek(self) -> Transcript | None:
        self._recognizer.peeks += 1
        return self._result()

    def finish(self) -> Transcript:
        self._recognizer.finishes += 1
        return self._result()

    def _result(self) -> Transcript:
        self._recognizer.gate.wait()
        time.sleep(self._recognizer.delay_s)
        return self._transcript


class ScriptedRecognizer:
    """Each utterance is recognised as the next scripted text (confidence 0.9 unless given; or a
    whole Transcript, with alternatives), after ``delay_s`` and once ``gate`` opens."""

    name = "scripted-asr"
    language = "en"

    def __init__(self, *texts: str | tuple[str, float] | Transcript, delay_s: float = 0.0) -> None:
        self.texts = deque(texts)
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.peeks = self.finishes = 0
        self.hints: list[RecognitionHints | None] = []

    def open_stream(self, hints: RecognitionHints | None = None) -> ScriptedStream:
        self.hints.append(hints)
        scripted = self.texts.popleft() if self.texts else ""
        if isinstance(scripted, Transcript):
            return ScriptedStream(self, scripted)
        text, confidence = (scripted, 0.9) if isinstance(scripted, str) else scripted
        return ScriptedStream(self, Transcript(text, confidence))


class ScriptedNlu:
    """Maps known phrases to an intent (confidence 0.97 unless given); anything else is the fallback."""

    name = "scripted-nlu"

    def __init__(self, intents: dict[str, str | tuple[str, float]]) -> None:
        self.intents = intents
        self.parsed: list[str] = []

    async def parse(self, text: str) -> NluResult:
        self.parsed.append(text)
        known = self.intents.get(text, ("nlu_fallback", 0.3))
        name, confidence = (known, 0.97) if isinstance(known, str) else known
        top = IntentScore(name, confidence)
        return NluResult(text, top, (top, IntentScore("other", 0.01)))


class ScriptedSynthesizer:
    """A tone of ``ms_per_char`` per character, one chunk per sentence; may fail on a chosen text.
    ``spoken`` is every text it was given."""

    name = "scripted-tts"

    def __init__(self, ms_per_char: int = 20, fail_on: str = "") -> None:
        self.ms_per_char = ms_per_char
        self.fail_on = fail_on
        self.spoken: list[str] = []

    def synthesize(self, text: str) -> Iterator[bytes]:
        self.spoken.append(text)
        for sentence in filter(None, (s.strip() for s in text.split("."))):
            if self.fail_on and self.fail_on in sentence:
                raise RuntimeError("scripted synthesis failure")
            frames = max(1, len(sentence) * self.ms_per_char // 20)
            tone = (np.sin(np.arange(frames * FRAME_BYTES // 2) * 0.05) * 8000).astype(np.int16)
            yield tone.tobytes()


def scripted_engines(
    tmp_path: Path,
    recognizer: ScriptedRecognizer,
    nlu: ScriptedNlu,
    synthesizer: ScriptedSynthesizer | None = None,
    config: Config | None = None,
    others: dict[str, tuple[ScriptedRecognizer, ScriptedNlu, ScriptedSynthesizer]] | None = None,
) -> Engines:
    """The demo flow with scripted models (no backend actions: tests stay on nodes without them);
    English, and ``others`` languages served too."""
    synthesizer = synthesizer or ScriptedSynthesizer()
    models = {"en": (recognizer, nlu, synthesizer), **(others or {})}
    return Engines(
        config=config or Config(),
        languages={
            language: LanguageEngines(asr, understood, voice, PromptCache(voice, tmp_path / "tts-cache"))
            for language, (asr, understood, voice) in models.items()
        },
        flow=load_flow(PROJECT_ROOT / "prompts"),
        actions=ActionRegistry(),
        call_store=CallStore(tmp_path / "calls"),
    )
