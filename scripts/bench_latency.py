"""Turn latency under load: 1, 5 and 10 concurrent scripted callers, paced in real time.

Turn latency = the caller's real end of speech -> the bot's first audio frame: the endpointer's
trailing-silence wait plus ASR final, NLU, dialogue and TTS to the first sentence. No assertions:
prints JSON, then a table. Usage: .venv/bin/python scripts/bench_latency.py [--levels 1 5 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from voicebot.call import CallSession
from voicebot.config import PROJECT_ROOT, load_config
from voicebot.console import quiet_console
from voicebot.engines import Engines, load_engines, load_synthesizer
from voicebot.events import CallEvent
from voicebot.transports.simulated import CallerTurn, run_simulated_call
from voicebot.tts.piper_engine import synthesize_all

# Each caller asks two questions that the bot answers with synthesised (not cached) sentences, then leaves.
CALLER_SCRIPTS = [
    ["what time does the branch open on saturday", "where is the riverside branch", "no thanks bye"],
    ["tell me about your personal loans", "how do I open an account", "that's all goodbye"],
    ["when does the oak park branch close", "what's the address of the main branch", "no that's it"],
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run_level(engines: Engines, scripts: list[list[CallerTurn]], callers: int) -> dict[str, Any]:
    events: list[CallEvent] = []
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()

    async def one_call(index: int) -> None:
        await asyncio.sleep(random.uniform(0, 3))  # callers do not all dial at the same instant
        session = CallSession(engines, caller_id=f"bench-{index}", listeners=[events.append])
        await run_simulated_call(session, scripts[index % len(scripts)], paced=True)

    await asyncio.gather(*(one_call(i) for i in range(callers)))
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    by_type: dict[str, list[CallEvent]] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)
    latency = [e.turn_latency_ms for e in by_type.get("tts_first_audio", []) if e.turn_latency_ms]  # type: ignore[attr-defined]
    asr = by_type.get("asr_final", [])
    asr_ms = [e.compute_ms for e in asr]  # type: ignore[attr-defined]
    asr_audio = sum(e.audio_duration_ms for e in asr) or 1  # type: ignore[attr-defined]
    nlu_ms = [e.compute_ms for e in by_type.get("nlu_parsed", [])]  # type: ignore[attr-defined]
    tts_ms = [e.synth_ms for e in by_type.get("tts_first_audio", [])]  # type: ignore[attr-defined]
    outcomes = [e.outcome for e in by_type.get("call_ended", [])]  # type: ignore[attr-defined]
    return {
        "callers": callers,
        "turns": len(latency),
        "turn_latency_p50_ms": round(percentile(latency, 50)),
        "turn_latency_p95_ms": round(percentile(latency, 95)),
        "endpoint_wait_ms": engines.config.endpoint.end_silence_ms,
        "asr_final_p50_ms": round(percentile(asr_ms, 50)),
        "asr_final_p95_ms": round(percentile(asr_ms, 95)),
        "nlu_p50_ms": round(percentile(nlu_ms, 50), 1),
        "tts_first_audio_p50_ms": round(percentile(tts_ms, 50)),
        "tts_first_audio_p95_ms": round(percentile(tts_ms, 95)),
        "asr_rtf": round(sum(asr_ms) / asr_audio, 3),
        "cpu_percent_of_2_cores": round(100 * cpu / wall / 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "contained_calls": f"{outcomes.count('contained')}/{len(outcomes)}",
        "mean_call_s": round(statistics.mean(e.duration_ms for e in by_type.get("call_ended", [])) / 1000, 1),  # type: ignore[attr-defined]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench_latency.json")
    args = parser.parse_args()
    quiet_console(verbose=False)
    random.seed(1)
    config = load_config()
    load_started = time.monotonic()
    engines = load_engines(config)
    load_s = time.monotonic() - load_started
    caller_voice = load_synthesizer(config, config.language, length_scale=1.1)
    scripts = [
        [CallerTurn(audio=synthesize_all(caller_voice, line)) for line in script] for script in CALLER_SCRIPTS
    ]
    results = [asyncio.run(run_level(engines, scripts, n)) for n in args.levels]
    asr = engines.for_language(config.language).recognizer.name
    report = {"engines_load_s": round(load_s, 1), "asr": asr, "levels": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    columns = {
        "callers": "callers", "turns": "turns", "turn_latency_p50_ms": "p50 ms",
        "turn_latency_p95_ms": "p95 ms", "endpoint_wait_ms": "endpoint ms", "asr_final_p50_ms": "ASR p50",
        "asr_final_p95_ms": "ASR p95", "nlu_p50_ms": "NLU p50", "tts_first_audio_p50_ms": "TTS 1st p50",
        "tts_first_audio_p95_ms": "TTS 1st p95", "asr_rtf": "ASR RTF", "cpu_percent_of_2_cores": "CPU %",
        "peak_rss_mb": "RSS MB", "contained_calls": "contained",
    }  # fmt: skip
    print()
    print(tabulate([[r[key] for key in columns] for r in results], headers=list(columns.values())))


if __name__ == "__main__":
    main()
