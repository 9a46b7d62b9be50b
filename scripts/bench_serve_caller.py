"""The serve mode of scripts/bench_latency.py: `voicebot serve` in its own process, and scripted
callers that talk to it over the media WebSocket from outside, the way a telephony gateway does.
scripts/bench_sip.py starts its server with the same ServerProcess.

Everything here measures from the caller's side of the socket: when the caller's speech really
ended (the send time of the last voiced frame) and when the first non-silent bot frame came back.
The server's own view of each turn comes afterwards from the call traces it stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import numpy as np

from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.config import Config, load_config
from voicebot.server.app import storage_path
from voicebot.storage import SqliteStorage

FRAME_S = FRAME_MS / 1000
SILENCE = bytes(FRAME_BYTES)
# A frame whose peak is above this (-54 dBFS) is "non-silent": well above digital silence (the
# server sends zeros while the bot is quiet), below the onset of the bot's first syllable.
NON_SILENT_PEAK = 64
# The caller's speech ends at the last frame above this share of the clip's peak (Piper's caller
# voice leaves a low-level tail that is not speech).
SPEECH_END_SHARE = 0.02
ANSWER_GAP_S = 1.0  # the bot has answered once it went quiet this long after speaking
RESPONSE_TIMEOUT_S = 20.0  # the bot stayed quiet this long after the caller's turn: go on anyway
MAX_CALL_S = 300.0
READY_TIMEOUT_S = 300.0  # loading Whisper, Rasa, Piper and the prompt cache on 2 busy cores
STOP_TIMEOUT_S = 20.0
TRACE_TIMEOUT_S = 30.0
SAMPLE_INTERVAL_S = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CallerLine:
    """One thing the caller says: 16 kHz mono s16le, and the frame where the voice ends."""

    audio: bytes
    speech_end_frame: int  # index of the last voiced 20 ms frame of ``audio``

    @classmethod
    def of(cls, audio: bytes) -> CallerLine:
        frames = np.frombuffer(audio[: len(audio) // FRAME_BYTES * FRAME_BYTES], "<i2")
        peaks = np.abs(frames.reshape(-1, FRAME_BYTES // 2).astype(np.int32)).max(axis=1)
        voiced = np.flatnonzero(peaks > SPEECH_END_SHARE * peaks.max())
        return cls(audio, int(voiced[-1]) if len(voiced) else 0)

    @property
    def speech_ms(self) -> int:
        return (self.speech_end_frame + 1) * FRAME_MS


@dataclass
class SentTurn:
    """One caller turn as the caller lived it (``time.monotonic()`` seconds)."""

    start_t: float  # the turn's first frame went out (the next turn bounds this one's events)
    end_t: float = 0.0  # the last voiced frame went out: the caller's real end of speech
    heard_t: float | None = None  # the first non-silent bot frame after end_t came in (serve mode)


def non_silent(frame: bytes) -> bool:
    return bool(np.abs(np.frombuffer(frame, "<i2").astype(np.int32)).max(initial=0) > NON_SILENT_PEAK)


# ----- the server process --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def voicebot_command() -> str:
    beside = Path(sys.executable).with_name("voicebot")  # the venv running this script
    found = str(beside) if beside.exists() else shutil.which("voicebot")
    if found is None:
        raise SystemExit("the voicebot command is not installed (make setup)")
    return found


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants (Rasa, for one, may start helper processes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of the tree, including reaped children of ``root``."""
    ticks = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(pid)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            if pid == root:
                ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def tree_rss_kb(root: int) -> int:
    return sum(_status_kb(pid, "VmRSS") for pid in process_tree(root))


class ServerProcess:
    """`voicebot serve` on a free port, with the settings this benchmark sees except its data
    directory: a temporary one, so the benchmark's calls do not land in the project's call store
    and its admin token does not replace that of a server someone else runs from this checkout.

    Used by scripts/bench_latency.py (serve mode) and scripts/bench_sip.py. ``settings`` overrides
    more settings, by dotted name (``{"telephony.sip.port": 0}``); ``serve_args`` are more flags
    for `voicebot serve`; ``announce`` is a pattern for a line the server logs at start-up, before
    it answers HTTP: start() waits for that line too and keeps its group 1 in ``announced``."""

    def __init__(
        self,
        config: Config,
        *,
        tag: str = "latency_serve",
        settings: Mapping[str, Any] | None = None,
        serve_args: Sequence[str] = (),
        announce: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/media"
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"voicebot-bench-{tag}-"))
        # Written beside the settings file so that every relative path in it resolves as before.
        self.config_path = config.source.parent / f".bench_{tag}_{os.getpid()}.yml"
        written = json.loads(config.json())
        written["data_dir"] = str(self.data_dir / "var")
        for dotted, value in (settings or {}).items():
            *parents, key = dotted.split(".")
            section = written
            for parent in parents:
                section = section[parent]
            section[key] = value
        self.config_path.write_text(json.dumps(written, indent=2))  # JSON is YAML
        self.server_config = load_config(self.config_path)
        self.serve_args = list(serve_args)
        self.announce = re.compile(announce, re.MULTILINE) if announce else None
        self.announced = ""
        self.log_path = self.data_dir / "server.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.returncode

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        command = [voicebot_command(), "--config", str(self.config_path), "serve"]
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port), *self.serve_args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C here does not reach it (stop() shuts it down in order),
            # and killpg can reach any child it leaves.
            start_new_session=True,
        )
        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"voicebot serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self._announced() and self._http_ready():
                self.ready_s = time.monotonic() - started
                return
            time.sleep(0.25)
        raise RuntimeError(f"voicebot serve not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _announced(self) -> bool:
        """Whether the line ``announce`` waits for is in the log (or there is none to wait for)."""
        if self.announce is None:
            return True
        if not self.announced and (found := self.announce.search(self.log_path.read_text(errors="replace"))):
            self.announced = found.group(1)
        return bool(self.announced)

    def _http_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def peak_rss_kb(self) -> int:
        """The main process's high-water mark (VmHWM) plus its children's current RSS."""
        return _status_kb(self.pid, "VmHWM") + sum(
            _status_kb(pid, "VmRSS") for pid in process_tree(self.pid)[1:]
        )

    def stop(self) -> None:
        """SIGINT (aiohttp's graceful shutdown), then SIGTERM, then SIGKILL; then any process it
        started that outlived it (still in its process group, so never someone else's)."""
        process = self.process
        try:
            if process is not None:
                children = process_tree(process.pid)[1:] if process.poll() is None else []
                for sig in (signal.SIGINT, signal.SIGTERM):
                    if process.poll() is None:
                        process.send_signal(sig)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            process.wait(STOP_TIMEOUT_S)
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)  # not reaped yet: the group is still ours
                    process.wait()
                for pid in children:
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        if int(_stat_fields(pid)[2]) == process.pid:  # pgrp: still in the server's group
                            os.kill(pid, signal.SIGKILL)
        finally:
            if self._log is not None:
                self._log.close()
            self.config_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL to the server's whole process group, as a crash would: no bookkeeping at all.
        start() runs it again on the same data directory (scripts/bench_faults.py)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)  # not reaped yet: the group is still ours
        self.process.wait()
        if self._log is not None:
            self._log.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def traces(self, call_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each call's stored trace, once it is complete (the server writes it as the call goes on;
        its ``call_ended`` event comes with the call's end)."""
        return self._stored_traces(call_ids, lambda storage, call_id: storage.trace_events(call_id))

    def caller_traces(self, caller_ids: list[str], since: float) -> dict[str, list[dict[str, Any]]]:
        """The same by caller id, for the calls that started at ``since`` (wall clock) or later."""

        def events(storage: SqliteStorage, caller_id: str) -> list[dict[str, Any]]:
            calls = [c.call_id for c in storage.calls_since(since) if c.caller_id == caller_id]
            return [e for call_id in calls for e in storage.trace_events(call_id)]

        return self._stored_traces(caller_ids, events)

    def _stored_traces(
        self, keys: list[str], events: Callable[[SqliteStorage, str], list[dict[str, Any]]]
    ) -> dict[str, list[dict[str, Any]]]:
        storage = SqliteStorage(storage_path(self.server_config))
        found: dict[str, list[dict[str, Any]]] = {}
        deadline = time.monotonic() + TRACE_TIMEOUT_S
        try:
            for key in keys:
                while True:
                    trace = events(storage, key)
                    if any(e["type"] == "call_ended" for e in trace) or time.monotonic() > deadline:
                        found[key] = trace
                        break
                    time.sleep(0.2)
        finally:
            storage.close()
        return found


def publish(report: dict[str, Any], out: Path) -> None:
    """Keeps a benchmark's report as JSON in ``out`` and prints it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


@contextlib.contextmanager
def running(server: ServerProcess, *, keep_data: bool = False) -> Iterator[ServerProcess]:
    """The server started for the block and stopped however the block ends: its log shown when the
    block failed, its data directory deleted when it did not (unless ``keep_data``: the caller reads
    it after the stop, then calls ``cleanup``)."""
    failed = True
    try:
        server.start()
        yield server
        failed = False
    finally:
        server.stop()
        if failed:
            print(f"server log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
        elif not keep_data:
            server.cleanup()


class ResourceSampler:
    """Peak RSS of the server's process tree, sampled while a level runs."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_kb = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, await asyncio.to_thread(tree_rss_kb, self.root))
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def __enter__(self) -> ResourceSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


# ----- the gateway caller ----------------------------------------------------------------------------


@dataclass
class GatewayCall:
    """What one caller saw of its call."""

    index: int
    call_id: str = ""
    turns: list[SentTurn] = field(default_factory=list)
    control: list[dict[str, Any]] = field(default_factory=list)  # the server's JSON messages
    frames_in: int = 0
    sound_frames: int = 0  # of those, frames with the bot's voice in them (the server sends one per message)
    started_t: float = 0.0
    ended_t: float = 0.0
    error: str = ""

    @property
    def frames_behind_pct(self) -> float:
        """How far the server's 20 ms frames fell behind the wall clock (0: real time)."""
        expected = (self.ended_t - self.started_t) / FRAME_S
        return max(0.0, 100 * (1 - self.frames_in / expected)) if expected > 50 else 0.0

    @property
    def hangup(self) -> dict[str, Any] | None:
        return next((m for m in self.control if m.get("type") == "hangup"), None)


@dataclass
class _Ear:
    """The receiving side, shared with the sender (both run on the same event loop)."""

    last_sound_t: float = 0.0
    since: float | None = None  # listening for the bot's answer to what was said before this time
    answer_t: float | None = None  # the first non-silent frame after ``since``
    turn: SentTurn | None = None  # the caller turn being answered (None: the greeting)
    hung_up: bool = False

    def listen(self, since: float, turn: SentTurn | None) -> None:
        self.since, self.answer_t, self.turn = since, None, turn

    def heard(self, now: float) -> None:
        self.last_sound_t = now
        if self.since is not None and self.answer_t is None:
            self.answer_t = now
            if self.turn is not None:
                self.turn.heard_t = now


async def _listen(ws: aiohttp.ClientWebSocketResponse, call: GatewayCall, ear: _Ear) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            call.frames_in += len(msg.data) // FRAME_BYTES
            if non_silent(msg.data):
                call.sound_frames += 1
                ear.heard(time.monotonic())
        elif msg.type == aiohttp.WSMsgType.TEXT:
            message = json.loads(msg.data)
            call.control.append(message)
            if message.get("type") == "hangup":
                ear.hung_up = True
    ear.hung_up = True


async def gateway_call(
    session: aiohttp.ClientSession, url: str, index: int, lines: list[CallerLine]
) -> GatewayCall:
    """One caller: dial, wait for the greeting, say each line once the bot has answered the one
    before, hang up once the bot has answered the last line (unless the bot hangs up first)."""
    call = GatewayCall(index)
    await asyncio.sleep(random.uniform(0, 3))  # callers do not all dial at the same instant
    try:
        async with session.ws_connect(url) as ws:
            await ws.send_json({"type": "start", "caller_id": f"bench-{index}", "language": "en"})
            first = await ws.receive_json(timeout=60)
            call.call_id = str(first.get("call_id", ""))
            call.started_t = time.monotonic()
            ear = _Ear()
            ear.listen(call.started_t, None)  # the greeting
            listener = asyncio.create_task(_listen(ws, call, ear))
            try:
                await _speak(ws, call, ear, lines)
            finally:
                call.ended_t = time.monotonic()
                if not ws.closed and not ear.hung_up:
                    await ws.send_json({"type": "hangup"})
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(listener, 10)
                listener.cancel()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        call.error = f"{type(exc).__name__}: {exc}"
    return call


async def _speak(
    ws: aiohttp.ClientWebSocketResponse, call: GatewayCall, ear: _Ear, lines: list[CallerLine]
) -> None:
    """Sends one frame every 20 ms of wall time, speech or silence, as an RTP gateway does."""
    pending = deque(lines)
    frames: deque[bytes] = deque()
    voice_left = 0  # frames of the current line until its last voiced one
    turn: SentTurn | None = None
    waiting_since = next_tick = time.monotonic()
    while not ear.hung_up and not ws.closed and time.monotonic() - call.started_t < MAX_CALL_S:
        now = time.monotonic()
        if not frames:  # listening
            answered = ear.answer_t is not None and now - ear.last_sound_t >= ANSWER_GAP_S
            if answered or now - waiting_since >= RESPONSE_TIMEOUT_S:
                if not pending:
                    return
                line = pending.popleft()
                frames.extend(split_frames(line.audio))
                voice_left, turn = line.speech_end_frame, None
                ear.since = None  # bot audio while the caller talks answers nothing
        speaking = bool(frames)
        await ws.send_bytes(frames.popleft() if speaking else SILENCE)
        sent = time.monotonic()
        if speaking:
            if turn is None:
                turn = SentTurn(start_t=sent)
                call.turns.append(turn)
            if voice_left == 0:
                turn.end_t = waiting_since = sent
                ear.listen(sent, turn)
            voice_left -= 1
        next_tick += FRAME_S
        delay = next_tick - time.monotonic()
        if delay < -0.2:
            next_tick = time.monotonic()  # this process fell behind: resume, don't burst
        await asyncio.sleep(max(0.0, delay))


async def run_callers(url: str, scripts: list[list[CallerLine]], callers: int) -> list[GatewayCall]:
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(
            *(gateway_call(session, url, i, scripts[i % len(scripts)]) for i in range(callers))
        )
