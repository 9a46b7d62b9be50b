"""Soak: real-time callers through `voicebot serve`'s media WebSocket for minutes on end.

Each of ``--callers`` callers places one call after another (the latency benchmark's scripts,
spoken by an espeak-ng voice) until ``--duration-s`` is over. Printed as JSON and a table, and
kept in reports/soak.json:

- calls completed, calls in which the caller never heard the bot (target 0), calls that failed;
- the server's RSS (its process tree) every ``--sample-s`` seconds: flat after warm-up, <= 2 GB;
- the event loop's lag p99 after warm-up (target <= 20 ms), from the server's own probe
  (``voicebot_event_loop_lag_seconds`` in /metrics; the bucket's upper bound is reported).

``make test`` runs a bounded version (tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from bench_latency import REPORTS, caller_scripts
from bench_serve_caller import (
    CallerLine,
    GatewayCall,
    ServerProcess,
    gateway_call,
    publish,
    running,
    tree_rss_kb,
)
from prometheus_client.parser import text_string_to_metric_families
from tabulate import tabulate

from voicebot.config import load_config
from voicebot.console import quiet_console

RSS_TARGET_MB = 2048
LOOP_LAG_TARGET_MS = 20.0


def loop_lag_buckets(port: int) -> dict[float, float]:
    """The server's event-loop lag histogram: cumulative count by upper bound (seconds)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "voicebot_event_loop_lag_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }


def quantile_bound_ms(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of the probes between two readings."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    if not counts or counts[-1][1] <= 0:
        return None
    wanted = q * counts[-1][1]
    return next(bound * 1000 for bound, cumulative in counts if cumulative >= wanted)


async def caller_slot(
    session: aiohttp.ClientSession,
    url: str,
    slot: int,
    scripts: list[list[CallerLine]],
    deadline: float,
    calls: list[GatewayCall],
) -> None:
    placed = 0
    while time.monotonic() < deadline:
        script = scripts[(slot + placed) % len(scripts)]
        calls.append(await gateway_call(session, url, slot * 10_000 + placed, script))
        placed += 1


async def soak(
    server: ServerProcess, scripts: list[list[CallerLine]], args: argparse.Namespace
) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + args.duration_s
    warm_until = started + min(args.warmup_s, args.duration_s / 2)
    rss: list[tuple[float, float]] = []  # (seconds since the start, MB)
    lag_at_warm: dict[float, float] = {}

    async def sample() -> None:
        nonlocal lag_at_warm
        while True:
            now = time.monotonic()
            rss.append((round(now - started), round(await asyncio.to_thread(tree_rss_kb, server.pid) / 1024)))
            if not lag_at_warm and now >= warm_until:
                lag_at_warm = await asyncio.to_thread(loop_lag_buckets, server.port)
            await asyncio.sleep(args.sample_s)

    calls: list[GatewayCall] = []
    sampler = asyncio.create_task(sample())
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(
            *(caller_slot(session, server.url, n, scripts, deadline, calls) for n in range(args.callers))
        )
    sampler.cancel()
    lag_at_end = await asyncio.to_thread(loop_lag_buckets, server.port)
    after_warmup = [mb for at, mb in rss if at >= warm_until - started] or [mb for _, mb in rss]
    failed = [c for c in calls if c.error]
    return {
        "callers": args.callers,
        "duration_s": args.duration_s,
        "warmup_s": round(warm_until - started),
        "calls_completed": sum(not c.error for c in calls),
        "calls_without_bot_audio": sum(not c.error and c.sound_frames == 0 for c in calls),
        "calls_failed": len(failed),
        "failures": sorted({c.error for c in failed})[:10],
        "turns": sum(len(c.turns) for c in calls),
        "turns_unanswered": sum(t.heard_t is None for c in calls for t in c.turns),
        "rss_mb_every_sample": rss,
        "rss_after_warmup_first_mb": after_warmup[0] if after_warmup else None,
        "rss_after_warmup_last_mb": after_warmup[-1] if after_warmup else None,
        "rss_peak_mb": max((mb for _, mb in rss), default=None),
        "rss_target_mb": RSS_TARGET_MB,
        "loop_lag_p50_ms_at_most": quantile_bound_ms(lag_at_warm, lag_at_end, 0.5),
        "loop_lag_p99_ms_at_most": quantile_bound_ms(lag_at_warm, lag_at_end, 0.99),
        "loop_lag_target_ms": LOOP_LAG_TARGET_MS,
    }


def print_table(report: dict[str, Any]) -> None:
    rows = [
        ("callers x minutes", f"{report['callers']} x {report['duration_s'] / 60:.1f}"),
        ("calls completed", report["calls_completed"]),
        ("calls without bot audio (target 0)", report["calls_without_bot_audio"]),
        ("calls failed", report["calls_failed"]),
        ("turns unanswered / turns", f"{report['turns_unanswered']} / {report['turns']}"),
        ("RSS after warm-up, first -> last MB", f"{report['rss_after_warmup_first_mb']} -> "
         f"{report['rss_after_warmup_last_mb']}"),
        (f"RSS peak MB (target <= {RSS_TARGET_MB})", report["rss_peak_mb"]),
        (f"loop lag p99 ms, at most (target {LOOP_LAG_TARGET_MS:g})", report["loop_lag_p99_ms_at_most"]),
    ]  # fmt: skip
    print(tabulate(rows, headers=["soak", "measured"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="not counted for lag and RSS growth")
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--caller-voice", choices=["espeak", "piper"], default="espeak")
    parser.add_argument("--out", type=Path, default=REPORTS / "soak.json")
    parser.add_argument("--config", type=Path, help="settings file to measure (default: voicebot.yml)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # running() still stops the server
    quiet_console(verbose=False)
    random.seed(1)
    config = load_config(args.config)
    scripts = caller_scripts(config, args.caller_voice)
    server = ServerProcess(config, tag="soak")
    with running(server):
        report = asyncio.run(soak(server, scripts, args))
    report["server_exit_code"] = server.exit_code
    publish(report, args.out)
    print_table(report)


if __name__ == "__main__":
    main()
