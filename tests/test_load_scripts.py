"""Bounded runs of the soak and fuzz scripts against a real `voicebot serve` (issue 12): the full
runs are `scripts/soak.py` and `scripts/fuzz_protocols.py` with their defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from voicebot.config import PROJECT_ROOT

SCRIPTS = PROJECT_ROOT / "scripts"
RUN_TIMEOUT_S = 900


def run_script(name: str, out: Path, *flags: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / name), "--out", str(out), *flags],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_a_short_soak_answers_every_call(tmp_path: Path) -> None:
    report = run_script(
        "soak.py", tmp_path / "soak.json", "--callers", "2", "--duration-s", "30", "--warmup-s", "5",
        "--sample-s", "5",
    )  # fmt: skip
    assert report["calls_completed"] >= 2 and report["calls_failed"] == 0, report["failures"]
    assert report["calls_without_bot_audio"] == 0
    assert report["turns"] > 0 and report["turns_unanswered"] == 0
    assert len(report["rss_mb_every_sample"]) >= 3 and report["loop_lag_p99_ms_at_most"] is not None
    assert report["server_exit_code"] == 0


def test_fuzz_on_every_port_leaves_no_traceback_and_the_good_call_untouched(tmp_path: Path) -> None:
    report = run_script("fuzz_protocols.py", tmp_path / "fuzz.json", "--messages", "300", "--seed", "7")
    assert set(report["messages_per_protocol"].values()) == {300}
    assert report["tracebacks"] == 0, report["traceback_excerpts"]
    assert report["good_calls"] >= 1 and report["good_call_errors"] == []
    assert report["good_calls_without_bot_audio"] == 0 and report["good_call_turns"] > 0
    assert report["good_call_turns_answered"] == report["good_call_turns"]
    assert report["refused_by_line"]["media"] > 0  # the garbage was seen, and counted
    assert report["server_up"] and report["server_exit_code"] == 0
