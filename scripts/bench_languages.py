"""Per-language figures through the audio pipeline: intent accuracy, word error and language
identification for every language the product serves (en, es, fa).

Data: the held-out NLU sets ``nlu_data/test/<language>/*.yml`` only (never the training data), read
with Rasa's loader (which strips the entity markup): each example's text and intent. Per language a
fixed sample (``--per-language`` examples after a shuffle with ``--seed``; a smaller sample is a
prefix of a larger one), each spoken by one of several espeak-ng voices of the language (variants,
speeds, pitches; round robin over the shuffled order), then heard in each band: wideband (16 kHz as
synthesised) and the phone band (``telephone_channel``: 8 kHz G.711 mu-law and back).

Engines: the product's own, loaded as the product loads them (``load_config()`` then
``load_engines(config)``): per language the recogniser (Whisper base, multilingual, one model shared
by all languages) and the language's Rasa NLU. Each utterance (0.1 s of silence before, 0.4 s after,
fed in 20 ms frames to a stream) is recognised twice:

- in its own language (``engines.for_language(language).recognizer``, a call already in that
  language, e.g. by the dialled number): transcript -> that language's NLU -> "intent acc (audio)";
  "with n-best": the intent the dialogue acts on, which may come from the recogniser's n-best list
  (``policy.n_best_accept_threshold``, as in every call); compared with the NLU on the example's
  exact words, "intent acc (text)";
- as the caller's first request in a call in the default language (en), as the product checks it:
  the default language's recogniser with ``RecognitionHints(languages=config.languages,
  language_threshold=policy.language_switch_probability)``. ``Transcript.language`` is the language
  heard ("LID acc": heard == the example's language); at the threshold or above the text is in that
  language and the call switches to it ("switched"; "to its language": to the example's, so for
  English utterances every switch is a wrong one), below it the text stays in the default
  language and the heard language is only offered ("offered"). "first request acc": the intent is
  right after that check (the text is in the example's language and its NLU gets the intent), which
  is what the caller experiences on a call that starts in English.

WER (rough): both sides normalised with the NLU's own ``normalise(text, language)``, number words as
digits for en and es (text2num), punctuation and fillers dropped; Persian number words are not mapped.

No assertions: prints the JSON summary (the file also has every utterance), then tables.

    .venv/bin/python scripts/bench_languages.py [--languages en,es,fa] [--per-language 150]
        [--bands wideband,phone] [--seed 1] [--jobs 2] [--out reports/bench_languages.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
from voicebot.asr.base import RecognitionHints, Recognizer, Transcript
from voicebot.audio.codecs import split_frames
from voicebot.audio.degrade import telephone_channel
from voicebot.config import PROJECT_ROOT, load_config
from voicebot.console import quiet_console
from voicebot.engines import Engines, load_engines
from voicebot.nlu.normalize import normalise

BANDS = ("wideband", "phone")
LEAD_SILENCE_S = 0.1  # about what the endpointer's pre-roll keeps before the first word
TRAIL_SILENCE_S = 0.4  # the pause the end-of-turn decision has heard when the stream finishes
LID_TARGET = 0.95  # language heard right, English and Spanish utterances together
CONFUSIONS_SHOWN = 5  # per language and band
TRANSCRIPTS_PER_CONFUSION = 2


# Debian's espeak-ng (no MBROLA voices): per language its accents and variants, 135-185 words a
# minute, pitch 35-65.
VOICES: dict[str, tuple[Voice, ...]] = {
    "en": (
        Voice("en-us", 160, 50),
        Voice("en-gb", 175, 40),
        Voice("en-us+f3", 145, 65),
        Voice("en-gb-scotland+m3", 185, 35),
        Voice("en-029", 150, 55),
    ),
    "es": (
        Voice("es", 160, 50),
        Voice("es-419", 150, 45),
        Voice("es+f3", 140, 65),
        Voice("es-419+m3", 175, 35),
    ),
    "fa": (
        Voice("fa", 150, 50),
        Voice("fa+f3", 140, 65),
        Voice("fa+m3", 170, 40),
    ),
}


@dataclass(frozen=True)
class Utterance:
    """One example in one voice and band, with what the pipeline made of it."""

    language: str
    band: str
    voice: str
    text: str
    intent: str
    transcript: str  # in the example's language
    transcript_confidence: float
    intent_audio: str
    intent_audio_n_best: str  # what the dialogue acts on: the best, or an n-best hypothesis understood
    confidence_audio: float
    intent_text: str
    heard: str | None  # the first-request check: the language heard ...
    heard_probability: float  # ... its probability among the call's languages
    first_text: str  # ... the text, in text_language
    first_text_language: str | None
    intent_first: str  # ... and the intent in that language's NLU
    wer_reference: str
    wer_hypothesis: str


# --- examples -------------------------------------------------------------------------------------


def sample(examples: Sequence[Phrase], count: int, seed: int) -> list[Phrase]:
    """A fixed shuffle, then the first ``count`` (0: all): a smaller sample is a prefix of a larger one."""
    ordered = list(examples)
    random.Random(seed).shuffle(ordered)
    return ordered[:count] if count > 0 else ordered


# --- audio ----------------------------------------------------------------------------------------


def utterance_audio(speech: bytes, band: str) -> bytes:
    padded = pad(speech, LEAD_SILENCE_S, TRAIL_SILENCE_S)
    if band == "wideband":
        return padded
    if band == "phone":
        return telephone_channel(padded, "ulaw")
    raise ValueError(f"unknown band {band!r} (known: {', '.join(BANDS)})")


def recognise(recognizer: Recognizer, audio: bytes, hints: RecognitionHints) -> Transcript:
    """As a call's listener does: a stream per utterance, fed 20 ms frames, then finished."""
    stream = recognizer.open_stream(hints)
    for frame in split_frames(audio):
        stream.accept(frame)
    return stream.finish()


# --- WER ------------------------------------------------------------------------------------------

_THOUSANDS = re.compile(r"(?<=\d)[,.](?=\d{3}\b)")  # "15,000" / "15.000" -> "15000"
_PUNCTUATION = re.compile(r"(?!(?<=\d)[.,](?=\d))[^\w\s]")  # all but a decimal point between digits


def normalise_for_wer(text: str, language: str) -> str:
    text = normalise(text, language).replace("-", " ")
    if language in ("en", "es"):
        text = alpha2digit(text, language, threshold=0)
    text = _PUNCTUATION.sub(" ", _THOUSANDS.sub("", text).replace("'", ""))
    return " ".join(word for word in text.split() if word not in FILLERS.get(language, ()))


# --- the run --------------------------------------------------------------------------------------


def summarise(utterances: Sequence[Utterance], default_language: str, threshold: float) -> dict[str, Any]:
    n = len(utterances)
    switched = [u.first_text_language not in (None, default_language) for u in utterances]
    return {
        "examples": n,
        "wer": round(
            word_error_rate([u.wer_reference for u in utterances], [u.wer_hypothesis for u in utterances]), 3
        ),
        "intent_accuracy_audio": rate(sum(u.intent_audio == u.intent for u in utterances), n),
        "intent_accuracy_audio_n_best": rate(sum(u.intent_audio_n_best == u.intent for u in utterances), n),
        "intent_accuracy_text": rate(sum(u.intent_text == u.intent for u in utterances), n),
        "lid_accuracy": rate(sum(u.heard == u.language for u in utterances), n),
        "heard": dict(Counter(u.heard or "-" for u in utterances).most_common()),
        # At the threshold or above the call goes on in the language heard; below, it is offered.
        "switched": rate(sum(switched), n),
        "switched_right": rate(
            sum(s and u.first_text_language == u.language for s, u in zip(switched, utterances, strict=True)),
            n,
        ),
        "offered": rate(sum(u.heard not in (None, u.first_text_language) for u in utterances), n),
        "first_request_accuracy": rate(
            sum(u.first_text_language == u.language and u.intent_first == u.intent for u in utterances), n
        ),
        "no_transcript": sum(not u.transcript for u in utterances),
        "threshold": threshold,
    }


def voice_figures(utterances: Sequence[Utterance]) -> dict[str, Any]:
    n = len(utterances)
    return {
        "examples": n,
        "intent_accuracy_audio": rate(sum(u.intent_audio == u.intent for u in utterances), n),
        "lid_accuracy": rate(sum(u.heard == u.language for u in utterances), n),
    }


def confusions(utterances: Sequence[Utterance]) -> list[dict[str, Any]]:
    """The most common (expected -> got) pairs of the audio pipeline, with transcripts."""
    wrong = [u for u in utterances if u.intent_audio != u.intent]
    pairs = Counter((u.intent, u.intent_audio) for u in wrong)
    shown = []
    for (expected, got), count in pairs.most_common(CONFUSIONS_SHOWN):
        cases = [u for u in wrong if (u.intent, u.intent_audio) == (expected, got)]
        shown.append(
            {
                "expected": expected,
                "got": got,
                "count": count,
                "cases": [
                    {"said": u.text, "heard": u.transcript, "voice": u.voice, "text_intent": u.intent_text}
                    for u in cases[:TRANSCRIPTS_PER_CONFUSION]
                ],
            }
        )
    return shown


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Utterance]]:
    started = time.monotonic()
    config = load_config()
    default = config.language
    threshold = config.policy.language_switch_probability
    # The call's languages, its own first (as the dialogue manager passes them).
    call_languages = (default, *[lang for lang in config.languages if lang != default])
    first_request_hints = RecognitionHints(languages=call_languages, language_threshold=threshold)

    loading = time.monotonic()
    engines: Engines = load_engines(config)
    load_s = time.monotonic() - loading
    missing = [lang for lang in [*args.languages, default] if lang not in engines.languages]
    if missing:
        raise SystemExit(
            f"no engines loaded for {', '.join(missing)} (loaded: {', '.join(engines.languages)})"
        )
    nlu = {  # one cache per language
        lang: CachedNlu(engines.for_language(lang).nlu)
        for lang in call_languages
        if lang in engines.languages
    }
    first_recognizer = engines.for_language(default).recognizer

    samples: dict[str, list[tuple[Phrase, Voice]]] = {}
    for lang in args.languages:
        voices = VOICES.get(lang)
        if not voices:
            raise SystemExit(f"no espeak-ng voices listed for {lang!r} (known: {', '.join(VOICES)})")
        examples = sample(
            load_phrases(config.path(config.nlu.data_dir) / "test" / lang), args.per_language, args.seed
        )
        samples[lang] = [(example, voices[i % len(voices)]) for i, example in enumerate(examples)]

    speakers = {v.name: espeak_speaker(v) for vs in VOICES.values() for v in vs}

    def speak(item: tuple[Phrase, Voice]) -> bytes:
        example, voice = item
        return speakers[voice.name](example.text)

    def hear(job: tuple[str, Phrase, bytes]) -> tuple[Transcript, Transcript]:
        lang, _, audio = job
        own = recognise(engines.for_language(lang).recognizer, audio, RecognitionHints())
        first = recognise(first_recognizer, audio, first_request_hints)
        return own, first

    utterances: list[Utterance] = []
    timings: dict[str, float] = {"load_engines_s": round(load_s, 1)}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        synthesis_started = time.monotonic()
        speech = {lang: list(pool.map(speak, items)) for lang, items in samples.items()}
        timings["synthesis_s"] = round(time.monotonic() - synthesis_started, 1)
        recognition_started = time.monotonic()
        for lang, items in samples.items():
            for band in args.bands:
                jobs = [
                    (lang, ex, utterance_audio(pcm, band))
                    for (ex, _), pcm in zip(items, speech[lang], strict=True)
                ]
                heard = list(pool.map(hear, jobs))
                for (example, voice), (own, first) in zip(items, heard, strict=True):
                    parsed = await nlu[lang].parse(own.text)
                    chosen, _ = await understand(nlu[lang], own.text, own.alternatives, config.policy, True)
                    exact = await nlu[lang].parse(example.text)
                    first_language = first.text_language or default
                    first_parsed = await nlu[first_language].parse(first.text)
                    utterances.append(
                        Utterance(
                            language=lang,
                            band=band,
                            voice=voice.name,
                            text=example.text,
                            intent=example.intent,
                            transcript=own.text,
                            transcript_confidence=round(own.confidence, 3),
                            intent_audio=parsed.intent.name,
                            intent_audio_n_best=chosen.intent.name,
                            confidence_audio=round(parsed.intent.confidence, 3),
                            intent_text=exact.intent.name,
                            heard=first.language,
                            heard_probability=round(first.language_probability, 3),
                            first_text=first.text,
                            first_text_language=first.text_language,
                            intent_first=first_parsed.intent.name,
                            wer_reference=normalise_for_wer(example.text, lang),
                            wer_hypothesis=normalise_for_wer(own.text, lang),
                        )
                    )
                print(f"{lang} {band}: {len(jobs)} utterances", file=sys.stderr, flush=True)
        timings["recognition_s"] = round(time.monotonic() - recognition_started, 1)
    timings["total_s"] = round(time.monotonic() - started, 1)

    rows = []
    for lang in args.languages:
        for band in args.bands:
            chosen = [u for u in utterances if u.language == lang and u.band == band]
            per_voice = {
                voice: voice_figures([u for u in chosen if u.voice == voice])
                for voice in dict.fromkeys(u.voice for u in chosen)
            }
            rows.append(
                {
                    "language": lang,
                    "band": band,
                    **summarise(chosen, default, threshold),
                    "per_voice": per_voice,
                    "confusions": confusions(chosen),
                }
            )
    # The target: the language heard right between English and Spanish (both directions pooled).
    en_es = {}
    for band in args.bands:
        pooled = [u for u in utterances if u.band == band and u.language in ("en", "es")]
        if pooled:
            accuracy = rate(sum(u.heard == u.language for u in pooled), len(pooled))
            en_es[band] = {
                "utterances": len(pooled),
                "lid_accuracy": accuracy,
                "target_met": accuracy >= LID_TARGET,
            }
    report = {
        "languages": list(args.languages),
        "bands": list(args.bands),
        "per_language": args.per_language,
        "examples": {lang: len(items) for lang, items in samples.items()},
        "seed": args.seed,
        "default_language": default,
        "call_languages": list(call_languages),
        "language_switch_probability": threshold,
        "asr": {
            "engine": config.asr.engine,
            "model": config.asr.whisper_model,
            "margin_s": config.asr.whisper_margin_s,
        },
        "voices": {lang: [v.name for v in VOICES[lang]] for lang in args.languages},
        "timings": timings,
        "lid_en_es": en_es,
        "lid_target": LID_TARGET,
        "results": rows,
    }
    return report, utterances


def print_tables(report: dict[str, Any]) -> None:
    table = [
        [
            r["language"],
            r["band"],
            r["examples"],
            r["wer"],
            r["intent_accuracy_audio"],
            r["intent_accuracy_audio_n_best"],
            r["intent_accuracy_text"],
            r["lid_accuracy"],
            ", ".join(f"{k} {v}" for k, v in r["heard"].items()),
            r["switched"],
            r["switched_right"],
            r["offered"],
            r["first_request_accuracy"],
        ]
        for r in report["results"]
    ]
    headers = [
        "lang",
        "band",
        "n",
        "WER",
        "intent acc (audio)",
        "with n-best",
        "intent acc (text)",
        "LID acc",
        "heard",
        "switched",
        "to its language",
        "offered",
        "first request acc",
    ]
    print()
    print(
        f"held-out examples {', '.join(f'{k} {v}' for k, v in report['examples'].items())} "
        f"(seed {report['seed']}), espeak-ng voices; "
        f"first request checked in a '{report['default_language']}' call among "
        f"{'/'.join(report['call_languages'])}, switch at p >= {report['language_switch_probability']}"
    )
    print(tabulate(table, headers=headers))
    for band, lid in report["lid_en_es"].items():
        verdict = "met" if lid["target_met"] else "NOT met"
        print(
            f"language heard right, English and Spanish ({band}): {lid['lid_accuracy']:.1%} of "
            f"{lid['utterances']} (target >= {report['lid_target']:.0%}: {verdict})"
        )
    print()
    for row in report["results"]:
        if not row["confusions"]:
            continue
        print(f"most common confusions, {row['language']} {row['band']} (expected -> got: said / heard):")
        for c in row["confusions"]:
            print(f"  {c['expected']} -> {c['got']} ({c['count']})")
            for case in c["cases"]:
                print(f"      {case['said']!r} / {case['heard']!r} [{case['voice']}]")
    print(f"timings: {report['timings']}")


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", type=comma_list, default=["en", "es", "fa"])
    parser.add_argument(
        "--per-language", type=int, default=150, help="examples per language, each in every band (0: all)"
    )
    parser.add_argument("--bands", type=comma_list, default=list(BANDS))
    parser.add_argument("--seed", type=int, default=1, help="the sample's shuffle")
    parser.add_argument("--jobs", type=int, default=2, help="utterances synthesised and recognised at once")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench_languages.json")
    args = parser.parse_args()
    unknown = [band for band in args.bands if band not in BANDS]
    if unknown:
        parser.error(f"unknown band(s) {', '.join(unknown)} (known: {', '.join(BANDS)})")
    quiet_console(verbose=False)  # before Rasa (TensorFlow) is imported
    report, utterances = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({**report, "utterances": [asdict(u) for u in utterances]}, indent=2, ensure_ascii=False)
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    print_tables(report)


if __name__ == "__main__":
    main()
