"""What the speech benchmarks share (scripts/bench_asr.py and scripts/bench_languages.py): espeak-ng
voice configurations, the held-out NLU phrases, speech padded with silence in whole frames, corpus
word error rate, an NLU that parses each text once, the dialogue's n-best choice, and rates. Not a
benchmark of its own.

The scripts import it as ``scripts.bench_speech`` once they have put the project root on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer

from voicebot.audio import FRAME_BYTES, SAMPLE_RATE
from voicebot.call.understanding import MAX_HYPOTHESES_PARSED
from voicebot.config import PolicyConfig
from voicebot.dialogue.policy import Decision, best_understood, decide
from voicebot.nlu.base import NluEngine, NluResult
from voicebot.tts.espeak_engine import EspeakSynthesizer

# Words a WER normaliser drops, per language: fillers the recognisers leave out and no intent hinges on.
FILLERS: dict[str, frozenset[str]] = {
    "en": frozenset({"um", "umm", "uh", "uhm", "er", "erm", "hmm", "mm", "mhm", "ah"}),
    "es": frozenset({"eh", "em", "mm", "mmm", "ah", "ehm"}),
    "fa": frozenset({"اِم", "ام", "اوم", "امم", "اه"}),
}


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice configuration: voice (with variant), words per minute, pitch 0-99."""

    voice: str
    speed: int
    pitch: int

    @property
    def name(self) -> str:
        return f"{self.voice} s{self.speed} p{self.pitch}"


def espeak_speaker(voice: Voice) -> Callable[[str], bytes]:
    """Text -> 16 kHz PCM in the voice."""
    synthesizer = EspeakSynthesizer(voice.voice, speed=voice.speed, pitch=voice.pitch)
    return lambda text: b"".join(synthesizer.synthesize(text))


@dataclass(frozen=True)
class Phrase:
    text: str  # what the caller says: the example with its entity markup stripped
    intent: str  # the label


def load_phrases(test_dir: Path) -> list[Phrase]:
    """Every labelled example of the held-out set (``test_dir/*.yml``), without repeats, sorted;
    Rasa's reader strips the entity markup."""
    from rasa.shared.nlu.training_data.loading import load_data

    files = sorted(test_dir.glob("*.yml"))
    if not files:
        raise SystemExit(f"no held-out NLU data in {test_dir}")
    phrases: set[Phrase] = set()
    for path in files:
        data = load_data(str(path))
        phrases |= {Phrase(m.get("text"), m.get("intent")) for m in data.intent_examples}
    return sorted(phrases, key=lambda p: (p.text, p.intent))


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * round(seconds * SAMPLE_RATE)


def pad(speech: bytes, lead_s: float, trail_s: float) -> bytes:
    """The speech between silences, zero-filled up to a whole number of frames."""
    padded = silence(lead_s) + speech + silence(trail_s)
    return padded + b"\x00" * (-len(padded) % FRAME_BYTES)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (all errors over all reference words); an empty hypothesis is all deletions."""
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r]
    if not pairs:
        return float("nan")
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


class CachedNlu:
    """Parses each distinct text once: engines, voices, channels and bands often agree on a transcript."""

    def __init__(self, nlu: NluEngine) -> None:
        self._nlu = nlu
        self._parsed: dict[str, NluResult] = {}

    async def parse(self, text: str) -> NluResult:
        if text not in self._parsed:
            self._parsed[text] = await self._nlu.parse(text)
        return self._parsed[text]


async def understand(
    nlu: NluEngine | CachedNlu, text: str, alternatives: Sequence[str], policy: PolicyConfig, n_best: bool
) -> tuple[NluResult, bool]:
    """The NLU result the dialogue acts on for a request, as the call's understanding stage picks
    it (``dialogue.policy.best_understood``): the recogniser's best, or a hypothesis further down its
    n-best list that the NLU understood where it did not understand the best; and whether it was
    one further down."""
    best = await nlu.parse(text)
    if not n_best or not alternatives or decide(best, policy) is Decision.ACCEPT:
        return best, False
    hypotheses = [best, *[await nlu.parse(other) for other in alternatives[:MAX_HYPOTHESES_PARSED]]]
    chosen = best_understood(hypotheses, policy)
    return hypotheses[chosen], chosen > 0


def rate(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")
