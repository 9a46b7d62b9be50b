"""The designers' subcommands: `voicebot train`, `validate`, `nlu try` and `nlu report`.

cli.py registers them with ``add_commands(subparsers)``; each handler takes the parsed arguments and the
loaded Config and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from voicebot.config import Config
from voicebot.errors import DataFileError, VoicebotError
from voicebot.nlu.base import NluResult

DEFAULT_REPORT_DIR = "reports/nlu"
TICK_S = 0.5


class PhaseDisplay:
    """Shows the current phase and the time since the start on stderr.

    On a terminal one line is redrawn every half second, so a long phase (training) visibly runs;
    elsewhere (logs, CI) each phase is one line.
    """

    def __init__(self, label: str = "", stream: TextIO | None = None) -> None:
        self._label = f"{label}: " if label else ""
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()
        self._phase = ""
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def __call__(self, phase: str) -> None:
        with self._lock:
            self._phase = phase
            self._draw(final=not self._live)

    def __enter__(self) -> PhaseDisplay:
        if self._live:
            self._ticker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._live:
            self._ticker.join()
            with self._lock:
                self._draw(final=True)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                self._draw(final=False)

    def _draw(self, final: bool) -> None:
        if not self._phase:
            return
        text = f"[{time.monotonic() - self._started:6.1f}s] {self._label}{self._phase}"
        if self._live:
            self._stream.write(f"\r\033[K{text}" + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()


@contextlib.contextmanager
def quiet_rasa() -> Iterator[None]:
    """Rasa prints banners (with scratch paths) to stdout, and it and its dependencies warn by the page
    while importing and training; `voicebot validate` reports data problems, our own output the rest."""
    # Recording (and dropping) warnings holds even when an import, like Sanic's, re-enables some.
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        warnings.catch_warnings(record=True),
    ):
        warnings.simplefilter("ignore")
        yield


# ----- handlers -----------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    from voicebot.nlu.rasa_engine import languages, train

    data_dir = config.path(config.nlu.data_dir)
    found = languages(data_dir)
    if not found:
        raise DataFileError(data_dir, "no NLU training data: expected <language>/*.yml here")
    for language in found:
        with PhaseDisplay(language) as display, quiet_rasa():
            result = train(
                language, data_dir, config.path(config.nlu.models_dir), force=args.force, progress=display
            )
        state = "up to date" if result.skipped else f"trained in {result.seconds:.0f}s"
        print(f"{language}: {state}: {result.model_path}")
    return 0


def cmd_validate(args: argparse.Namespace, config: Config) -> int:
    from voicebot.designer.validate import ERROR, validate_project

    findings = validate_project(config)
    for finding in findings:
        print(finding)
    errors = sum(f.severity == ERROR for f in findings)
    print(f"{errors} error(s), {len(findings) - errors} warning(s)")
    return 1 if errors else 0


def result_json(result: NluResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "intent": result.intent.name,
        "confidence": result.intent.confidence,
        "ranking": [dataclasses.asdict(score) for score in result.ranking],
        "entities": [dataclasses.asdict(entity) for entity in result.entities],
    }


def _describe(result: NluResult) -> str:
    lines = [f"{result.intent.name} {result.intent.confidence:.2f}", "ranking:"]
    lines += [f"  {score.confidence:.2f}  {score.name}" for score in result.ranking]
    lines.append("entities:" if result.entities else "entities: none")
    for e in result.entities:
        confidence = "" if e.confidence is None else f", {e.confidence:.2f}"
        lines.append(f"  {e.entity} = {e.value!r}  ('{e.text}' at {e.start}-{e.end}{confidence})")
    return "\n".join(lines)


def _read_phrases(file: str) -> list[str]:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(file, f"cannot read phrases: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def cmd_nlu_try(args: argparse.Namespace, config: Config) -> int:
    from voicebot.nlu.rasa_engine import RasaNlu, content_hash, latest_model

    if (args.text is None) == (args.file is None):
        raise VoicebotError("give either a phrase or --file (one phrase a line), not both")
    language = args.language or config.language
    data_dir = config.path(config.nlu.data_dir)
    model = latest_model(language, config.path(config.nlu.models_dir))
    if content_hash(language, data_dir) not in model.name:  # model names end in the data's hash
        print(f"warning: {model.name} was trained on other data: run `voicebot train`", file=sys.stderr)
    phrases = [args.text] if args.file is None else _read_phrases(args.file)
    with quiet_rasa():
        nlu = RasaNlu.load(model)

    async def parse_each() -> None:
        for phrase in phrases:
            result = await nlu.parse(phrase)
            print(_describe(result) if args.file is None else json.dumps(result_json(result)), flush=True)

    asyncio.run(parse_each())
    return 0


def cmd_nlu_report(args: argparse.Namespace, config: Config) -> int:
    """One language: its report in --out (default reports/nlu/<language>/). None given: a report for
    every language with NLU data, each in --out/<language>/, and --out/index.html linking them."""
    from voicebot.designer.report import build_report, write_overview
    from voicebot.nlu.rasa_engine import languages

    if args.folds < 2:
        raise VoicebotError("--folds must be at least 2")
    if args.asr_sample is not None and args.asr_sample < 0:
        raise VoicebotError("--asr-sample must be 0 or more")
    base = Path(args.out) if args.out else config.path(DEFAULT_REPORT_DIR)
    data_dir = config.path(config.nlu.data_dir)
    chosen = [args.language] if args.language else languages(data_dir)
    if not chosen:
        raise DataFileError(data_dir, "no NLU training data: expected <language>/*.yml here")
    reports = []
    for language in chosen:
        out_dir = base if args.language and args.out else base / language
        with PhaseDisplay(language) as display, quiet_rasa():
            report = build_report(config, language, args.folds, args.asr_sample, out_dir, display)
        for line in report.headline():
            print(f"{language}: {line}")
        reports.append(report)
    print(f"report: {reports[0].index if args.language else write_overview(base, reports)}")
    return 0


# ----- parser -------------------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Registers train, validate and nlu {try, report} on the `voicebot` command's subparsers."""
    train = subparsers.add_parser(
        "train", help="train the NLU model per language, with progress (skips when nothing changed)"
    )
    train.add_argument("--force", action="store_true", help="train even when the model is up to date")
    train.set_defaults(handler=cmd_train)

    validate = subparsers.add_parser(
        "validate", help="check the NLU data and the flow against each other (exit 1 on errors)"
    )
    validate.set_defaults(handler=cmd_validate)

    nlu = subparsers.add_parser("nlu", help="try phrases on the NLU model, or write its quality report")
    nlu_commands = nlu.add_subparsers(dest="action", required=True)
    try_ = nlu_commands.add_parser("try", help="intent ranking and entities for a phrase")
    try_.add_argument("text", nargs="?", help="the phrase")
    try_.add_argument("--file", help="one phrase a line ('-' for stdin); prints one JSON object a line")
    try_.add_argument("--language", help="default: the configured language")
    try_.set_defaults(handler=cmd_nlu_try)

    report = nlu_commands.add_parser("report", help="cross-validation, held-out and speech-path HTML report")
    report.add_argument(
        "--out",
        help=f"report folder (default {DEFAULT_REPORT_DIR}/ in the project; without --language, one "
        "folder per language in it and an index.html)",
    )
    report.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    report.add_argument(
        "--asr-sample", type=int, help="speak at most N held-out phrases through TTS and ASR (default all)"
    )
    report.add_argument("--language", help="default: every language with NLU data, each on its own page")
    report.set_defaults(handler=cmd_nlu_report)
