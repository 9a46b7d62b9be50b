"""Benchmarks Piper TTS: time to first chunk (when playback can start) and real-time factor.

Usage: .venv/bin/python scripts/bench_tts.py [--runs N] [--voice NAME] [--length-scale X]
Prints JSON, then a table. RTF = synthesis time / audio duration (below 1 is faster than real time).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tabulate import tabulate

from voicebot.audio import SAMPLE_RATE
from voicebot.config import load_config
from voicebot.tts.piper_engine import PiperSynthesizer, find_voice

PROMPTS = {
    "short": "Goodbye.",
    "one sentence": "Thank you for calling the bank, how can I help you today?",
    "amount": "Your balance is 1,234 dollars and 56 cents.",
    "two sentences": "I can help with that. Which account would you like to transfer the money from?",
    "menu": (
        "I can tell you your balance, transfer money between your accounts, or report a lost card. "
        "You can also ask for an agent at any time. Please tell me in a few words what you need. "
        "For example, say: what is my balance."
    ),
}


def measure(synthesizer: PiperSynthesizer, text: str) -> tuple[float, float]:
    """One synthesis: (seconds to the first chunk, real-time factor)."""
    start = time.perf_counter()
    first_chunk_s = 0.0
    audio_bytes = 0
    for chunk in synthesizer.synthesize(text):
        if not audio_bytes:
            first_chunk_s = time.perf_counter() - start
        audio_bytes += len(chunk)
    total_s = time.perf_counter() - start
    return first_chunk_s, total_s / (audio_bytes / 2 / SAMPLE_RATE)


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 4), "p95": round(float(p95), 4)}


def main() -> None:
    config = load_config()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="syntheses per prompt (after one warm-up)")
    parser.add_argument("--voice", default=config.tts.voices[config.language])
    parser.add_argument("--length-scale", type=float, default=config.tts.length_scale)
    args = parser.parse_args()

    start = time.perf_counter()
    synthesizer = PiperSynthesizer(
        find_voice(args.voice, [config.path(config.tts.voices_dir)]), length_scale=args.length_scale
    )
    load_s = time.perf_counter() - start
    measure(synthesizer, PROMPTS["one sentence"])  # warm-up: onnxruntime allocates on the first run

    results = {}
    for label, text in PROMPTS.items():
        runs = [measure(synthesizer, text) for _ in range(args.runs)]
        results[label] = {
            "words": len(text.split()),
            "first_chunk_s": percentiles([first for first, _ in runs]),
            "rtf": percentiles([rtf for _, rtf in runs]),
        }

    print(json.dumps({"voice": synthesizer.name, "load_s": round(load_s, 3), "runs": args.runs, **results}))
    rows = [
        [
            label,
            result["words"],
            result["first_chunk_s"]["p50"],
            result["first_chunk_s"]["p95"],
            result["rtf"]["p50"],
            result["rtf"]["p95"],
        ]
        for label, result in results.items()
    ]
    headers = ["prompt", "words", "first chunk p50 (s)", "first chunk p95 (s)", "RTF p50", "RTF p95"]
    print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    main()
