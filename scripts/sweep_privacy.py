"""Privacy sweep: calls that key and speak card numbers, account numbers and PINs through `voicebot
serve`, then every store searched for them in clear.

``--calls`` calls (4 by default, half keying, half speaking) go to one server on the media WebSocket,
in real time, as a gateway sends them. A keying caller keys a card number where the account number
is asked for, then the account number and the PIN, says a card number and presses 0 for an agent; a
speaking caller says the account number, the PIN and the card number. Then the sweep: the SQLite
database and its WAL (the raw bytes, while the server runs and again after it stopped), every other
file under the data directory, the calls' key presses run together, the handoff API's answers and
the server's log. A hit is a secret in clear: its digits (grouped or not) or its digit words.
Printed as JSON and a table, kept in reports/privacy.json; the target is 0 hits in every store. The
demo bank's own database is left out: its account numbers are its keys.

tests/test_privacy.py sweeps its calls' stores with the same :func:`sweep`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # as a script: the project importable

from scripts.bench_serve_caller import FRAME_S, SILENCE, ServerProcess, non_silent, running
from voicebot.audio.codecs import split_frames
from voicebot.config import PROJECT_ROOT, Config, load_config
from voicebot.console import quiet_console
from voicebot.demo import database_path
from voicebot.engines import load_synthesizer
from voicebot.server.app import handoff_token_path
from voicebot.sessions import SUMMARY, TRACE
from voicebot.tts.piper_engine import synthesize_all

REPORTS = PROJECT_ROOT / "reports"
SHORT_SECRET_DIGITS = 6
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Secret:
    """Digits that must never be stored or shown in clear."""

    name: str
    digits: str

    @property
    def pattern(self) -> re.Pattern[bytes]:
        """The digits in clear, grouped by spaces, commas or dashes or not, or said as words."""
        as_digits = rb"[\s,.\-]{0,2}".join(digit.encode() for digit in self.digits)
        words = rb"[\s,.\-]+".join(
            rb"(?:zero|oh)" if digit == "0" else DIGIT_WORDS[int(digit)].encode() for digit in self.digits
        )
        if len(self.digits) > SHORT_SECRET_DIGITS:  # matched wherever they are, keys run together too
            return re.compile(as_digits + rb"|\b" + words + rb"\b", re.IGNORECASE)
        # A short secret (a PIN) turns up by chance in numbers: as a number of its own, not within a
        # JSON number ('"prompt_ms": 4321') or a decimal ("1.4321").
        number = rb"(?<![\d.:])(?<!: )" + as_digits + rb"(?!\d)(?!\.\d)"
        return re.compile(number + rb"|\b" + words + rb"\b", re.IGNORECASE)


def digit_words(digits: str, groups_of: int = 4) -> str:
    """ "4539148803436467" -> "four five three nine, one four eight eight, ...": how callers read
    out a card number (the recogniser writes these as digits; repeated ones it tends to garble)."""
    groups = [digits[start : start + groups_of] for start in range(0, len(digits), groups_of)]
    return ", ".join(" ".join(DIGIT_WORDS[int(digit)] for digit in group) for group in groups)


# Test numbers: a Visa test card keyed, a Luhn-valid Visa-format card spoken (its digits vary, so the
# recogniser hears them), and Jane Doe's account and PIN in the demo bank (voicebot/demo/bank.py).
KEYED_CARD = Secret("card (keyed)", "4111111111111111")
SPOKEN_CARD = Secret("card (spoken)", "4539148803436467")
ACCOUNT = Secret("account number", "12345678")
PIN = Secret("PIN", "4321")
SECRETS = (KEYED_CARD, SPOKEN_CARD, ACCOUNT, PIN)


@dataclass
class StoreHits:
    """One store: how much of it was searched and the secrets found in it in clear."""

    files: int = 0
    bytes: int = 0
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys((s.name for s in SECRETS), 0))

    def add(self, data: bytes) -> None:
        self.files += 1
        self.bytes += len(data)
        for secret in SECRETS:
            self.hits[secret.name] += len(secret.pattern.findall(data))

    @property
    def total(self) -> int:
        return sum(self.hits.values())


def store_of(path: Path) -> str:
    if path.name.endswith("-wal"):
        return "sqlite wal"
    if path.name.endswith("-shm"):
        return "sqlite wal index"
    if path.suffix in (".sqlite", ".sqlite3", ".db"):
        return "sqlite"
    if path.name in (TRACE, SUMMARY):
        return "recorded sessions"
    if path.suffix in (".json", ".jsonl"):
        return "json files"
    return "other files"


def sweep(
    root: Path, texts: Mapping[str, list[bytes]] | None = None, exclude: Iterable[Path] = ()
) -> dict[str, StoreHits]:
    """Every file under ``root`` (but ``exclude``) by kind of store, and ``texts`` (logs, pages: each
    a list of documents) by name, searched for :data:`SECRETS` in clear."""
    excluded = {path.resolve() for path in exclude}
    stores: dict[str, StoreHits] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.resolve() not in excluded:
            with contextlib.suppress(FileNotFoundError):  # a WAL checkpointed away meanwhile
                data = path.read_bytes()
                stores.setdefault(store_of(path), StoreHits()).add(data)
    for name, documents in (texts or {}).items():
        for data in documents:
            stores.setdefault(name, StoreHits()).add(data)
    return stores


# ----- the callers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What the caller does once the bot has finished speaking: say ``audio`` or press ``keys``."""

    audio: bytes = b""
    keys: str = ""


KEY_GAP_S = 0.15  # between key presses, as a person keys
ANSWER_GAP_S = 1.2  # the bot has finished once it was quiet this long after speaking
STEP_TIMEOUT_S = 30.0  # no answer this long after a step: go on anyway
END_TIMEOUT_S = 30.0


def caller_scripts(config: Config) -> dict[str, list[Step]]:
    """The keying and the speaking caller, in the caller's Piper voice (the recogniser hears the
    digits of the spoken card right in it)."""
    voice = load_synthesizer(config, config.language, length_scale=1.1)

    def say(text: str) -> Step:
        return Step(audio=synthesize_all(voice, text))

    spoken_card = f"my card number is {digit_words(SPOKEN_CARD.digits)}"
    return {
        "keyed": [
            Step(keys="4"),  # a lost card: it asks who is calling
            Step(keys=KEYED_CARD.digits + "#"),  # the card where the account number goes
            Step(keys=ACCOUNT.digits),
            Step(keys=PIN.digits),
            say(spoken_card),
            Step(keys="0"),
        ],
        "spoken": [
            say("I want to dispute a charge on my card"),
            say(digit_words(ACCOUNT.digits, groups_of=8)),
            say(digit_words(PIN.digits)),
            say(spoken_card),
            Step(keys="0"),
        ],
    }


@dataclass
class PlacedCall:
    script: str
    call_id: str = ""
    control: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def transferred(self) -> bool:
        return any(message.get("type") == "transfer" for message in self.control)


class _Line:
    """The caller's side of the socket: a frame every 20 ms, speech when there is some, and when
    the bot last made a sound."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, call: PlacedCall) -> None:
        self.ws = ws
        self.call = call
        self.speech: list[bytes] = []
        self.last_sound_t = 0.0
        self.heard_since_step = False

    async def send_frames(self) -> None:
        next_tick = time.monotonic()
        while not self.ws.closed:
            await self.ws.send_bytes(self.speech.pop(0) if self.speech else SILENCE)
            next_tick += FRAME_S
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def listen(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.BINARY and non_silent(message.data):
                self.last_sound_t, self.heard_since_step = time.monotonic(), True
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.call.control.append(json.loads(message.data))

    async def bot_finished(self) -> None:
        started = time.monotonic()
        while time.monotonic() - started < STEP_TIMEOUT_S and not self.ws.closed:
            quiet = time.monotonic() - self.last_sound_t >= ANSWER_GAP_S
            if self.heard_since_step and quiet and not self.speech:
                return
            await asyncio.sleep(0.05)

    async def take(self, step: Step) -> None:
        await self.bot_finished()
        self.heard_since_step = False
        self.speech.extend(split_frames(step.audio))
        for key in step.keys:
            await self.ws.send_json({"type": "dtmf", "digit": key})
            await asyncio.sleep(KEY_GAP_S)


async def place_call(session: aiohttp.ClientSession, url: str, name: str, steps: list[Step]) -> PlacedCall:
    call = PlacedCall(name)
    try:
        async with session.ws_connect(url) as ws:
            await ws.send_json({"type": "start", "caller_id": f"privacy-{name}", "language": "en"})
            call.call_id = str((await ws.receive_json(timeout=60)).get("call_id", ""))
            line = _Line(ws, call)
            tasks = [asyncio.create_task(line.send_frames()), asyncio.create_task(line.listen())]
            try:
                for step in steps:
                    await line.take(step)
                deadline = time.monotonic() + END_TIMEOUT_S
                while not call.transferred and not ws.closed and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                if not ws.closed:
                    await ws.send_json({"type": "hangup"})
            finally:
                for task in tasks:
                    task.cancel()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        call.error = f"{type(exc).__name__}: {exc}"
    return call


# ----- the run ---------------------------------------------------------------------------------------


def handoff_pages(server: ServerProcess, call_ids: list[str]) -> list[bytes]:
    """The handoff API's answer for each call, as a PBX or CRM reads it (every call escalates)."""
    token = handoff_token_path(server.server_config).read_text().strip()
    pages = []
    for call_id in call_ids:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/handoffs/{call_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            pages.append(response.read())
    return pages


def keys_pressed(traces: dict[str, list[dict[str, Any]]]) -> list[bytes]:
    """Each call's key presses as its trace keeps them, run together: one event per key, so a
    number keyed in clear is only in clear so."""
    return ["".join(e["digits"] for e in trace if e["type"] == "dtmf").encode() for trace in traces.values()]


def evidence(traces: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """What the traces show the calls did, so that 0 hits means masked, not missed."""
    events = [event for trace in traces.values() for event in trace]
    caller_text = " ".join(str(e.get("text", "")) for e in events if e["type"] in ("asr_final", "nlu_parsed"))
    return {
        "masked key presses": sum(bool(e.get("masked")) for e in events if e["type"] == "dtmf"),
        "caller words withheld (PIN)": caller_text.count("[withheld]"),
        "caller words masked to the last four": len(re.findall(r"\*{4,}\d{4}", caller_text)),
        "card numbers redacted": caller_text.count("[card ending"),
        "escalations": sum(e["type"] == "escalated" for e in events),
    }


def table(stores: dict[str, StoreHits]) -> list[dict[str, Any]]:
    return [
        {"store": name, "files": hits.files, "bytes": hits.bytes, **hits.hits, "clear hits": hits.total}
        for name, hits in sorted(stores.items())
    ]


async def place_calls(server: ServerProcess, calls: int) -> list[PlacedCall]:
    scripts = caller_scripts(server.server_config)
    names = [("keyed", "spoken")[index % 2] for index in range(calls)]
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(place_call(session, server.url, name, scripts[name]) for name in names))


def with_journal(database: Path) -> list[Path]:
    """A SQLite database's files: itself, its WAL and the WAL's index."""
    return [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]


def run(args: argparse.Namespace) -> dict[str, Any]:
    server = ServerProcess(load_config(args.config), tag="privacy")
    data_dir = server.server_config.path(server.server_config.data_dir)
    bank = with_journal(database_path(server.server_config))
    with running(server, keep_data=True):  # swept again once stopped
        placed = asyncio.run(place_calls(server, args.calls))
        call_ids = [call.call_id for call in placed if call.call_id]
        traces = server.traces(call_ids)
        shown = {
            "handoff API": handoff_pages(server, call_ids),
            "key presses run together": keys_pressed(traces),
        }
        live = sweep(data_dir, {**shown, "server log": [server.log_path.read_bytes()]}, exclude=bank)
    stopped = sweep(data_dir, {"server log": [server.log_path.read_bytes()]}, exclude=bank)
    server.cleanup()
    report = {
        "calls": len(placed),
        "calls_with_errors": [call.error for call in placed if call.error],
        "calls_transferred": sum(call.transferred for call in placed),
        "secrets": {secret.name: secret.digits for secret in SECRETS},
        "evidence": evidence(traces),
        "live": table(live),
        "after_stop": table(stopped),
        "excluded": [f"{bank[0].name} (the demo bank's own records: account numbers are its keys)"],
    }
    report["clear_hits"] = sum(row["clear hits"] for row in [*report["live"], *report["after_stop"]])
    return report


def print_tables(report: dict[str, Any]) -> None:
    for title in ("live", "after_stop"):
        print(f"\n{title.replace('_', ' ')}:")
        print(tabulate(report[title], headers="keys"))
    print()
    print(tabulate(list(report["evidence"].items()), headers=["what the traces show", "count"]))
    calls, transferred = report["calls"], report["calls_transferred"]
    print(f"\ncalls {calls}, transferred {transferred}; clear hits {report['clear_hits']} (target 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4, help="half keying, half speaking")
    parser.add_argument("--out", type=Path, default=REPORTS / "privacy.json")
    parser.add_argument("--config", type=Path, help="settings file (default: voicebot.yml)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # running() in run() still stops the server
    quiet_console(verbose=False)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print_tables(report)


if __name__ == "__main__":
    main()
