"""Turn latency under load: 1, 5, 10 and 20 concurrent scripted callers, paced in real time.

Turn latency = the caller's real end of speech (the last voiced frame of what the caller says) ->
the bot's first audio. Per turn it splits into: the endpoint wait (real end of speech -> the
endpointer's decision, SpeechEnded), ASR (decision -> AsrFinal), NLU (-> NluParsed), the dialogue
(-> TtsStarted) and TTS to the first audio (-> TtsFirstAudio), plus, in serve mode, delivery (-> the
first non-silent frame the caller receives).

Two modes:
  in-process  CallSession + run_simulated_call in this process (the default)
  serve       `voicebot serve` in its own process; the callers are gateways on the media
              WebSocket, and latency is measured from outside; the stages come from the traces
              the server stores

No assertions: writes reports/bench_latency.json (or bench_latency_serve.json), prints it, then
tables. Usage: .venv/bin/python scripts/bench_latency.py [--mode in-process|serve]
[--levels 1 5 10 20] [--caller-voice espeak|piper]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_serve_caller import (
    CallerLine,
    GatewayCall,
    ResourceSampler,
    SentTurn,
    ServerProcess,
    run_callers,
    running,
)
from bench_serve_caller import tree_cpu_s as server_cpu_s
from tabulate import tabulate

from voicebot.audio import FRAME_MS
from voicebot.call import SILENCE, CallSession
from voicebot.config import PROJECT_ROOT, Config, load_config
from voicebot.console import quiet_console
from voicebot.engines import Engines, load_engines, load_synthesizer
from voicebot.transports.simulated import CallerTurn, run_simulated_call
from voicebot.tts.piper_engine import synthesize_all

# Each caller asks two questions that the bot answers with synthesised (not cached) sentences, then
# leaves (the goodbye is a cached prompt, so it counts for latency but not for TTS).
CALLER_SCRIPTS = [
    ["what time does the branch open on saturday", "where is the riverside branch", "no thanks bye"],
    ["tell me about your personal loans", "how do I open an account", "that's all goodbye"],
    ["when does the oak park branch close", "what's the address of the main branch", "no that's it"],
]
ESPEAK_CALLER = ("en-us+m3", 160, 50)  # voice, words per minute, pitch: not the bot's Piper voice
REPORTS = PROJECT_ROOT / "reports"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def caller_scripts(config: Config, voice: str) -> list[list[CallerLine]]:
    """CALLER_SCRIPTS spoken by the caller's voice (espeak-ng by default, so the caller does not
    sound like the bot, whose Piper voice the recogniser may favour)."""
    if voice == "espeak":
        from voicebot.tts.espeak_engine import EspeakSynthesizer

        espeak = EspeakSynthesizer(*ESPEAK_CALLER)

        def speak(line: str) -> bytes:
            return b"".join(espeak.synthesize(line))
    else:
        piper = load_synthesizer(config, config.language, length_scale=1.1)

        def speak(line: str) -> bytes:
            return synthesize_all(piper, line)

    return [[CallerLine.of(speak(line)) for line in script] for script in CALLER_SCRIPTS]


# ----- one turn, from the events ------------------------------------------------------------------


@dataclass
class TurnStages:
    """Where one caller turn's time went (ms; None where the trace lacks the step)."""

    latency: float | None = None  # real end of speech -> first bot audio (as the bench measured it)
    latency_trace: float | None = None  # TtsFirstAudio.turn_latency_ms (the session's own figure)
    endpoint_wait: float | None = None  # real end of speech -> SpeechEnded
    endpoint_pause: float | None = None  # SpeechEnded.pause_ms: the trailing silence it decided on
    # endpoint_wait - endpoint_pause: the VAD's hangover past the real end of speech (and in serve
    # mode the transport's inbound delay: the socket and the server's jitter buffer)
    endpoint_tail: float | None = None
    asr_wait: float | None = None  # SpeechEnded -> AsrFinal
    asr_compute: float | None = None  # AsrFinal.compute_ms (speculative: before the endpoint)
    asr_queue: float | None = None  # non-speculative turns: asr_wait - compute (waiting for a worker)
    speculative: bool | None = None
    nlu_compute: float | None = None  # NluParsed.compute_ms
    nlu_wait: float | None = None  # AsrFinal -> NluParsed
    dialogue: float | None = None  # NluParsed -> TtsStarted (dialogue thread, queue included)
    tts_first_audio: float | None = None  # TtsFirstAudio.synth_ms (synthesis thread, queue included)
    tts_cached: bool | None = None  # the reply began with a prompt cached in memory (synth_ms is 0)
    tts_wait: float | None = None  # TtsStarted -> TtsFirstAudio
    delivery: float | None = None  # serve mode: TtsFirstAudio -> the caller hears the first frame
    fragments: int = 0  # SpeechEnded events before the real end of speech: the turn was split


def _ms(later: float, earlier: float) -> float:
    return (later - earlier) * 1000


def _next_of(kind: str, seq: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in seq if e["type"] == kind), None)


def turn_stages(events: list[dict[str, Any]], turns: list[SentTurn], outside: bool) -> list[TurnStages]:
    """Matches each caller turn to its events by wall time (``t`` is time.monotonic(), one clock
    for every process on this machine). ``outside``: latency is what the caller heard (serve)."""
    result = []
    for k, turn in enumerate(turns):
        until = turns[k + 1].start_t if k + 1 < len(turns) else float("inf")
        window = [e for e in events if turn.start_t <= e["t"] < until]
        stages = TurnStages(
            fragments=sum(e["type"] == "speech_ended" and e["t"] < turn.end_t for e in window)
        )
        if outside and turn.heard_t is not None:
            stages.latency = _ms(turn.heard_t, turn.end_t)
        after = iter([e for e in window if e["t"] >= turn.end_t])
        # The chain of one turn, in trace order: each step is looked for after the one before.
        ended = _next_of("speech_ended", after)
        heard = _next_of("asr_final", after) if ended else None
        parsed = _next_of("nlu_parsed", after) if heard else None
        said = _next_of("tts_started", after) if parsed else None
        first = (
            next((e for e in after if e["type"] == "tts_first_audio" and e.get("turn_latency_ms")), None)
            if said
            else None
        )
        if ended:
            stages.endpoint_wait = _ms(ended["t"], turn.end_t)
            stages.endpoint_pause = ended.get("pause_ms")  # absent from older traces
            if stages.endpoint_pause is not None:
                stages.endpoint_tail = stages.endpoint_wait - stages.endpoint_pause
        if ended and heard:
            stages.asr_wait = _ms(heard["t"], ended["t"])
            stages.asr_compute = heard["compute_ms"]
            stages.speculative = bool(heard.get("speculative"))
            if not stages.speculative:
                stages.asr_queue = max(0.0, stages.asr_wait - heard["compute_ms"])
        if heard and parsed:
            stages.nlu_wait = _ms(parsed["t"], heard["t"])
            stages.nlu_compute = parsed["compute_ms"]
        if parsed and said:
            stages.dialogue = _ms(said["t"], parsed["t"])
        if said and first:
            stages.tts_wait = _ms(first["t"], said["t"])
            stages.tts_cached = bool(said.get("cached"))
            # Cached prompts start at once: only synthesised replies say how fast TTS is.
            stages.tts_first_audio = None if stages.tts_cached else first["synth_ms"]
            stages.latency_trace = first["turn_latency_ms"]
            if not outside:
                stages.latency = _ms(first["t"], turn.end_t)
            elif turn.heard_t is not None:
                stages.delivery = _ms(turn.heard_t, first["t"])
        result.append(stages)
    return result


def _values(stages: list[TurnStages], name: str) -> list[float]:
    return [v for s in stages if (v := getattr(s, name)) is not None]


def _p(stages: list[TurnStages], name: str, q: float, digits: int = 0) -> float | None:
    values = _values(stages, name)
    return round(percentile(values, q), digits or None) if values else None


def breakdown(stages: list[TurnStages]) -> dict[str, Any]:
    """The per-level figures both modes share."""
    speculative = [s.speculative for s in stages if s.speculative is not None]
    return {
        "turns": len(_values(stages, "latency")),
        "unanswered_turns": sum(s.latency is None for s in stages),
        "split_turns": sum(s.fragments > 0 for s in stages),
        "turn_latency_p50_ms": _p(stages, "latency", 50),
        "turn_latency_p95_ms": _p(stages, "latency", 95),
        "turn_latency_trace_p50_ms": _p(stages, "latency_trace", 50),
        "turn_latency_trace_p95_ms": _p(stages, "latency_trace", 95),
        "endpoint_wait_ms": _p(stages, "endpoint_wait", 50),  # measured now (was the configured silence)
        "endpoint_wait_p95_ms": _p(stages, "endpoint_wait", 95),
        "endpoint_pause_p50_ms": _p(stages, "endpoint_pause", 50),
        "endpoint_tail_p50_ms": _p(stages, "endpoint_tail", 50),
        "asr_wait_p50_ms": _p(stages, "asr_wait", 50),
        "asr_wait_p95_ms": _p(stages, "asr_wait", 95),
        "asr_final_p50_ms": _p(stages, "asr_compute", 50),
        "asr_final_p95_ms": _p(stages, "asr_compute", 95),
        "asr_speculative_pct": round(100 * sum(speculative) / len(speculative)) if speculative else None,
        "asr_queue_wait_p50_ms": _p(stages, "asr_queue", 50),
        "asr_queue_wait_p95_ms": _p(stages, "asr_queue", 95),
        "nlu_p50_ms": _p(stages, "nlu_compute", 50, 1),
        "nlu_wait_p50_ms": _p(stages, "nlu_wait", 50, 1),
        "dialogue_p50_ms": _p(stages, "dialogue", 50, 1),
        "dialogue_p95_ms": _p(stages, "dialogue", 95, 1),
        "tts_first_audio_p50_ms": _p(stages, "tts_first_audio", 50),
        "tts_first_audio_p95_ms": _p(stages, "tts_first_audio", 95),
        "tts_wait_p50_ms": _p(stages, "tts_wait", 50),
        "tts_cached_turns": sum(bool(s.tts_cached) for s in stages),
        "delivery_p50_ms": _p(stages, "delivery", 50),
        "delivery_p95_ms": _p(stages, "delivery", 95),
    }


def asr_rtf(events: list[dict[str, Any]]) -> float:
    finals = [e for e in events if e["type"] == "asr_final"]
    return round(sum(e["compute_ms"] for e in finals) / (sum(e["audio_duration_ms"] for e in finals) or 1), 3)


# ----- in-process mode ----------------------------------------------------------------------------


class TimedCallSession(CallSession):
    """Notes the wall time each caller frame goes in, so the caller's real end of speech (a
    position in the audio it plays) has a wall time like the events do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_t: list[float] = []

    async def step(
        self, caller_frame: bytes = SILENCE, dtmf: str | None = None, *, arrived: float | None = None
    ) -> bytes:
        self.frame_t.append(time.monotonic())
        return await super().step(caller_frame, dtmf, arrived=arrived)


def sent_turns(session: TimedCallSession, starts_ms: list[int], lines: list[CallerLine]) -> list[SentTurn]:
    turns = []
    for start_ms, line in zip(starts_ms, lines, strict=False):  # a call may end before its last turn
        first = start_ms // FRAME_MS  # the step that fed the line's first frame
        last = min(first + line.speech_end_frame, len(session.frame_t) - 1)
        turns.append(SentTurn(start_t=session.frame_t[first], end_t=session.frame_t[last]))
    return turns


async def run_level(engines: Engines, scripts: list[list[CallerLine]], callers: int) -> dict[str, Any]:
    stages: list[TurnStages] = []
    events: list[dict[str, Any]] = []
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()

    async def one_call(index: int) -> None:
        await asyncio.sleep(random.uniform(0, 3))  # callers do not all dial at the same instant
        lines = scripts[index % len(scripts)]
        session = TimedCallSession(engines, caller_id=f"bench-{index}")
        call = await run_simulated_call(session, [CallerTurn(audio=line.audio) for line in lines], paced=True)
        trace = [e.to_dict() for e in session.events]
        events.extend(trace)
        stages.extend(turn_stages(trace, sent_turns(session, call.turn_starts_ms, lines), outside=False))

    await asyncio.gather(*(one_call(i) for i in range(callers)))
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    ended = [e for e in events if e["type"] == "call_ended"]
    outcomes = [e["outcome"] for e in ended]
    return {
        "callers": callers,
        **breakdown(stages),
        "asr_rtf": asr_rtf(events),
        "cpu_percent_of_2_cores": round(100 * cpu / wall / 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "contained_calls": f"{outcomes.count('contained')}/{len(outcomes)}",
        "mean_call_s": round(statistics.mean(e["duration_ms"] for e in ended) / 1000, 1) if ended else None,
    }


def in_process(config: Config, scripts: list[list[CallerLine]], levels: list[int]) -> dict[str, Any]:
    load_started = time.monotonic()
    engines = load_engines(config)
    load_s = time.monotonic() - load_started
    results = [asyncio.run(run_level(engines, scripts, n)) for n in levels]
    asr = engines.for_language(config.language).recognizer.name
    return {"mode": "in-process", "engines_load_s": round(load_s, 1), "asr": asr, "levels": results}


# ----- serve mode -------------------------------------------------------------------------------------


async def run_serve_level(
    server: ServerProcess, scripts: list[list[CallerLine]], callers: int
) -> dict[str, Any]:
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = server_cpu_s(server.pid)
    started = time.monotonic()
    with ResourceSampler(server.pid) as sampler:
        calls: list[GatewayCall] = await run_callers(server.url, scripts, callers)
    wall = time.monotonic() - started
    server_cpu = server_cpu_s(server.pid) - cpu_before
    usage = resource.getrusage(resource.RUSAGE_SELF)
    bench_cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    traces = await asyncio.to_thread(server.traces, [c.call_id for c in calls if c.call_id])
    stages: list[TurnStages] = []
    for call in calls:
        stages.extend(turn_stages(traces.get(call.call_id, []), call.turns, outside=True))
    events = [e for trace in traces.values() for e in trace]
    outcomes = [e["outcome"] for e in events if e["type"] == "call_ended"]
    durations = [c.ended_t - c.started_t for c in calls if c.started_t]
    return {
        "callers": callers,
        "asr": next((e["asr_engine"] for e in events if e["type"] == "call_started"), None),
        **breakdown(stages),
        "asr_rtf": asr_rtf(events),
        "cpu_percent_of_2_cores": round(100 * server_cpu / wall / 2),  # the server's process tree
        "peak_rss_mb": round(sampler.peak_kb / 1024),  # the server's tree, sampled every 0.5 s
        "server_vm_hwm_mb": round(server.peak_rss_kb() / 1024),  # high-water mark since it started
        "bench_cpu_percent_of_2_cores": round(100 * bench_cpu / wall / 2),  # the callers' side
        "contained_calls": f"{outcomes.count('contained')}/{len(calls)}",
        "barge_ins": sum(m.get("type") == "clear" for c in calls for m in c.control),
        "frames_behind_p95_pct": round(percentile([c.frames_behind_pct for c in calls], 95), 1),
        "failed_calls": [c.error for c in calls if c.error],
        "mean_call_s": round(statistics.mean(durations), 1) if durations else None,
    }


def serve(config: Config, scripts: list[list[CallerLine]], levels: list[int]) -> dict[str, Any]:
    server = ServerProcess(config)
    with running(server):
        idle_rss_kb = server.peak_rss_kb()
        results = []
        for callers in levels:
            results.append(asyncio.run(run_serve_level(server, scripts, callers)))
            time.sleep(2)  # let the last calls' bookkeeping finish before the next level
    return {
        "mode": "serve",
        "server_ready_s": round(server.ready_s, 1),
        "server_rss_after_start_mb": round(idle_rss_kb / 1024),
        "server_exit_code": server.exit_code,
        "levels": results,
    }


# ----- output -------------------------------------------------------------------------------------

LATENCY_COLUMNS = {
    "callers": "callers", "turns": "turns", "turn_latency_p50_ms": "p50", "turn_latency_p95_ms": "p95",
    "turn_latency_trace_p50_ms": "trace p50", "endpoint_wait_ms": "endpoint p50",
    "endpoint_wait_p95_ms": "endpoint p95", "asr_wait_p50_ms": "ASR wait p50",
    "asr_wait_p95_ms": "ASR wait p95",
    "asr_final_p50_ms": "ASR p50", "asr_final_p95_ms": "ASR p95", "asr_speculative_pct": "spec %",
    "asr_queue_wait_p50_ms": "ASR queue p50", "nlu_p50_ms": "NLU p50", "dialogue_p50_ms": "dialogue p50",
    "tts_first_audio_p50_ms": "TTS 1st p50", "tts_first_audio_p95_ms": "TTS 1st p95",
}  # fmt: skip
LOAD_COLUMNS = {
    "callers": "callers", "unanswered_turns": "unanswered", "split_turns": "split",
    "endpoint_pause_p50_ms": "pause p50", "endpoint_tail_p50_ms": "VAD tail p50",
    "tts_cached_turns": "cached replies",
    "asr_rtf": "ASR RTF", "cpu_percent_of_2_cores": "CPU %", "peak_rss_mb": "RSS MB",
    "contained_calls": "contained", "mean_call_s": "call s",
}  # fmt: skip
SERVE_COLUMNS = {
    "delivery_p50_ms": "delivery p50", "delivery_p95_ms": "delivery p95",
    "server_vm_hwm_mb": "VmHWM MB", "bench_cpu_percent_of_2_cores": "bench CPU %",
    "barge_ins": "barge-ins", "frames_behind_p95_pct": "frames behind p95 %",
}  # fmt: skip


def print_tables(report: dict[str, Any]) -> None:
    levels = report["levels"]
    load = {**LOAD_COLUMNS, **SERVE_COLUMNS} if report["mode"] == "serve" else LOAD_COLUMNS
    for title, columns in (("turn latency and its stages (ms)", LATENCY_COLUMNS), ("load", load)):
        print(f"\n{report['mode']}: {title}")
        rows = [["-" if (v := r.get(key)) is None else v for key in columns] for r in levels]
        print(tabulate(rows, headers=list(columns.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["in-process", "serve"], default="in-process")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--caller-voice", choices=["espeak", "piper"], default="espeak")
    parser.add_argument("--out", type=Path, help="default: reports/bench_latency[_serve].json")
    parser.add_argument("--config", type=Path, help="settings file to measure (default: voicebot.yml)")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so serve mode's finally still stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    quiet_console(verbose=False)
    random.seed(1)
    config = load_config(args.config)
    scripts = caller_scripts(config, args.caller_voice)
    run = serve if args.mode == "serve" else in_process
    report = {**run(config, scripts, args.levels), "caller_voice": args.caller_voice}
    report["end_of_turn"] = getattr(config.endpoint, "end_of_turn", "silence")
    out = args.out or REPORTS / ("bench_latency_serve.json" if args.mode == "serve" else "bench_latency.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print_tables(report)


if __name__ == "__main__":
    main()
