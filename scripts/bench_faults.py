"""Faults: `voicebot serve` killed with SIGKILL during calls in every phase, restarted on the same data.

One server (scripts/bench_serve_caller.py's ServerProcess: a temporary data directory, no SIP or
AudioSocket) and callers on the media WebSocket, agents on their desks. First calls that finish, so
there is something to lose: callers who hang up on the bot, callers who ask for a callback from the
queue, callers an agent answers and wraps up. Then, at once, N calls in each phase:

- ``bot``: talking to the bot (the greeting, then its wait for input)
- ``transfer_prompt``: escalated (key 0), the handoff stored, the transfer prompt still playing
- ``queued``: waiting in the queue (no agent free)
- ``with_agent``: talking to an agent
- ``wrap_up``: the caller hung up, the agent has not submitted the disposition yet

and the server is killed (SIGKILL to its process group: no bookkeeping at all), then started again.
Counted from the stored rows before and after: finished records, handoffs, pending callbacks and
dispositions lost (target 0); the cut calls closed as ``interrupted`` with an end and their trace
events; queue waits closed at the last alive mark, or at their entry if that was later (the
downtime is no wait); agents whose desk, signed in again, resumes the wrap-up (and whose disposition
then is stored). Every phase is reached from here; one left out with ``--phases`` says so.

No assertions: prints JSON and a table (``--out`` also writes the JSON).
Usage (from the project root): .venv/bin/python scripts/bench_faults.py [--calls-per-phase 2]
    [--phases bot transfer_prompt queued with_agent wrap_up] [--bot-seconds 2] [--out FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from bench_serve_caller import ServerProcess  # the directory of this script is on sys.path
from tabulate import tabulate

from voicebot.audio import FRAME_BYTES
from voicebot.config import load_config
from voicebot.server.app import storage_path
from voicebot.server.auth import make_account
from voicebot.storage import SqliteStorage

T = TypeVar("T")
PHASES = ("bot", "transfer_prompt", "queued", "with_agent", "wrap_up")
WAIT_S = 90.0  # the longest any step may take on a busy machine; a step past it fails the run
POLL_S = 0.02
AGENT_KEY = "0"
CALLBACK_KEY = "1"


async def until(probe: Callable[[], T | bool | None], what: str, timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while (value := probe()) is None or value is False:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)
    return value  # type: ignore[return-value]


class Peer:
    """A WebSocket client that keeps every control message: a caller, or an agent's desk."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):  # a killed server resets it
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    message = json.loads(msg.data)
                    self.messages.append(message)
                    await self.on_message(message)

    async def on_message(self, message: dict[str, Any]) -> None:
        """What a peer does when a control message comes (nothing by default)."""

    def got(self, kind: str) -> dict[str, Any] | None:
        """The latest message of this type."""
        return next((m for m in reversed(self.messages) if m.get("type") == kind), None)

    async def wait_for(self, kind: str) -> dict[str, Any]:
        return await until(lambda: self.got(kind), f"a {kind!r} message")

    async def gone(self) -> None:
        await asyncio.wait_for(self._reader, WAIT_S)


class Caller(Peer):
    @property
    def call_id(self) -> str:
        started = self.got("started")
        return str(started["call_id"]) if started else ""

    async def key(self, digit: str) -> None:
        await self.ws.send_json({"type": "dtmf", "digit": digit})

    async def hang_up(self) -> None:
        await self.ws.send_json({"type": "hangup"})
        await self.gone()


async def dial(session: aiohttp.ClientSession, url: str, caller_id: str) -> Caller:
    """A caller on the media WebSocket, started, with a first frame of silence (as a phone line
    sends): from then on the connection is a call, stored."""
    ws = await session.ws_connect(url)
    await ws.send_json({"type": "start", "caller_id": caller_id, "language": "en"})
    caller = Caller(ws)
    await caller.wait_for("started")
    await ws.send_bytes(bytes(FRAME_BYTES))
    return caller


class Desk(Peer):
    """An agent's desk that accepts every call offered while ``accepting``."""

    def __init__(self, username: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.username = username
        self.accepting = False
        super().__init__(ws)

    @property
    def state(self) -> dict[str, Any] | None:
        return self.got("state")

    async def on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "offer" and self.accepting:
            await self.ws.send_json({"type": "accept", "call_id": message["call_id"]})

    async def send(self, kind: str, **fields: str) -> None:
        await self.ws.send_json({"type": kind, **fields})

    async def until_state(self, state: str) -> dict[str, Any]:
        return await until(lambda: (s := self.state) is not None and s["state"] == state and s, state)


async def open_desk(base_url: str, username: str, password: str) -> tuple[aiohttp.ClientSession, Desk]:
    """Signs in (the login form's CSRF token and cookie) and opens the desk's WebSocket."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    form = await (await session.get(f"{base_url}/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    if csrf is None:
        raise RuntimeError("the login page has no CSRF token")
    data = {"username": username, "password": password, "csrf": csrf.group(1)}
    response = await session.post(f"{base_url}/login", data=data, allow_redirects=False)
    if response.status != 302:
        raise RuntimeError(f"login of {username} failed: {response.status}")
    desk = Desk(username, await session.ws_connect(f"{base_url}/agent/ws"))
    await until(lambda: desk.state, f"{username}'s desk state")
    return session, desk


# ----- the run -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The stored rows that must survive a crash, read from the database."""

    finished: dict[str, tuple[str | None, float | None]]  # ended calls: outcome, end
    handoffs: set[str]
    callbacks: set[int]  # pending
    dispositions: set[str]
    open_calls: set[str]

    @classmethod
    def read(cls, storage: SqliteStorage) -> Snapshot:
        calls = storage.calls_since(0)
        return cls(
            finished={c.call_id: (c.outcome, c.ended_at) for c in calls if c.ended_at is not None},
            handoffs={call_id for call_id, _ in storage.escalations_since(0)},
            callbacks={request.id for request in storage.pending_callbacks()},
            dispositions={d.call_id for d in storage.dispositions_since(0)},
            open_calls={c.call_id for c in calls if c.ended_at is None},
        )


@dataclass
class Run:
    server: ServerProcess
    per_phase: int
    bot_s: float  # how long the bot phase's calls have been on at the kill (the transfer prompt's: ~0)
    phases: tuple[str, ...]
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    callers: dict[str, list[Caller]] = field(default_factory=dict)  # in progress at the kill, by phase
    desks: dict[str, list[Desk]] = field(default_factory=dict)  # by phase: with_agent, wrap_up
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def storage(self) -> SqliteStorage:
        return SqliteStorage(storage_path(self.server.server_config))

    def agents(self, phase: str) -> list[str]:
        return [f"{phase}{i}" for i in range(self.per_phase)]

    def add_accounts(self) -> None:
        storage = self.storage()
        try:
            for phase in ("with_agent", "wrap_up"):
                for username in self.agents(phase):
                    storage.save_agent(make_account(username, self.password, "agent"))
        finally:
            storage.close()

    async def desks_for(self, phase: str) -> list[Desk]:
        desks = []
        for username in self.agents(phase):
            session, desk = await open_desk(self.base_url, username, self.password)
            self.sessions.append(session)
            desks.append(desk)
        return desks

    async def callers_in(self, session: aiohttp.ClientSession, phase: str) -> list[Caller]:
        callers = await asyncio.gather(
            *(dial(session, self.server.url, f"fault-{phase}-{i}") for i in range(self.per_phase))
        )
        return list(callers)

    # ----- calls that finish before the kill -------------------------------------------------------

    async def finish_some(self, session: aiohttp.ClientSession) -> None:
        """Finished records to lose: hang-ups on the bot, callbacks from the queue, answered calls
        with their dispositions (the wrap-up phase's agents take them, then go not ready)."""
        # A call's end is stored before the server closes its socket: gone() means recorded.
        await asyncio.gather(*(caller.hang_up() for caller in await self.callers_in(session, "finished_bot")))
        await asyncio.gather(*map(self._callback, await self.callers_in(session, "callback")))
        desks = self.desks["wrap_up"] = await self.desks_for("wrap_up")
        self.desks["with_agent"] = await self.desks_for("with_agent")
        await self._with_agents(desks, await self.callers_in(session, "finished_agent"))
        for desk in desks:
            await desk.send("hangup")
            await desk.until_state("wrap_up")
            await desk.send("wrap_up", disposition="resolved", notes="bench_faults")
            await desk.until_state("ready")
            await desk.send("not_ready")
            await desk.until_state("not_ready")

    async def _callback(self, caller: Caller) -> None:
        await caller.key(AGENT_KEY)
        await caller.wait_for("queue")
        await caller.key(CALLBACK_KEY)
        await caller.wait_for("callback_scheduled")
        await caller.gone()  # the server hangs up after the confirmation

    async def _with_agents(self, desks: list[Desk], callers: list[Caller]) -> None:
        """Each caller asks for an agent; the desks, made ready, accept them one each."""
        for desk in desks:
            desk.accepting = True
            await desk.send("ready")
        for caller in callers:
            await caller.key(AGENT_KEY)
        await asyncio.gather(*(caller.wait_for("agent_connected") for caller in callers))
        for desk in desks:
            desk.accepting = False
            await desk.until_state("talking")

    # ----- calls in progress at the kill -------------------------------------------------------------

    async def put_in_phases(self, session: aiohttp.ClientSession, storage: SqliteStorage) -> None:
        """The phases in the order that keeps each where it is: the agents' first (so the queued
        calls find no agent free), the bot's and the transfer prompt's last (they move on soonest)."""
        if "wrap_up" in self.phases:
            callers = await self.callers_in(session, "wrap_up")
            await self._with_agents(self.desks["wrap_up"], callers)
            await asyncio.gather(*(caller.hang_up() for caller in callers))
            for desk in self.desks["wrap_up"]:
                await desk.until_state("wrap_up")
            self.callers["wrap_up"] = callers
        if "with_agent" in self.phases:
            self.callers["with_agent"] = await self.callers_in(session, "with_agent")
            await self._with_agents(self.desks["with_agent"], self.callers["with_agent"])
        if "queued" in self.phases:
            callers = self.callers["queued"] = await self.callers_in(session, "queued")
            for caller in callers:
                await caller.key(AGENT_KEY)
            await asyncio.gather(*(caller.wait_for("queue") for caller in callers))
        if "bot" in self.phases:
            self.callers["bot"] = await self.callers_in(session, "bot")
            await asyncio.sleep(self.bot_s)  # into the greeting, as a call that has begun
        if "transfer_prompt" in self.phases:
            callers = self.callers["transfer_prompt"] = await self.callers_in(session, "transfer_prompt")
            for caller in callers:
                await caller.key(AGENT_KEY)
            # Stored the moment the bot escalates; the caller is queued once the prompt has played.
            await until(
                lambda: all(storage.get_handoff(c.call_id) for c in callers), "the transfer prompts' handoffs"
            )

    def in_phase_at_kill(self, phase: str, caller: Caller) -> bool:
        """Whether the call was still in its phase when the server was killed."""
        if phase == "bot":
            return caller.got("transfer") is None and caller.got("hangup") is None
        if phase == "transfer_prompt":
            return caller.got("transfer") is None
        if phase == "queued":
            return caller.got("agent_connected") is None and caller.got("callback_scheduled") is None
        return True  # the agents' phases hold until someone acts


async def run_faults(
    server: ServerProcess, per_phase: int, phases: tuple[str, ...], bot_s: float
) -> dict[str, Any]:
    run = Run(server, per_phase, bot_s, phases)
    run.add_accounts()
    server.start()
    first_ready_s = server.ready_s
    storage = run.storage()
    async with aiohttp.ClientSession() as session:
        try:
            await run.finish_some(session)
            await run.put_in_phases(session, storage)
            before = Snapshot.read(storage)
            reached = {p: [run.in_phase_at_kill(p, c) for c in cs] for p, cs in run.callers.items()}
            server.kill()
            killed_at = time.time()
        finally:
            storage.close()
            for desk_session in run.sessions:
                await desk_session.close()
    storage = run.storage()
    alive_before = storage.last_alive()
    storage.close()
    server.start()
    storage = run.storage()
    try:
        resumed = await _resume_wrap_ups(run)
        after = Snapshot.read(storage)
        return _report(run, storage, before, after, reached, resumed, alive_before, killed_at, first_ready_s)
    finally:
        storage.close()


async def _resume_wrap_ups(run: Run) -> dict[str, int]:
    """Each agent of the agents' phases signs in again: a desk that resumes the wrap-up of its call
    submits it. Returns, by phase, how many resumed."""
    resumed: dict[str, int] = {}
    for phase in ("with_agent", "wrap_up"):
        if phase not in run.callers:
            continue
        calls = {caller.call_id for caller in run.callers[phase]}
        resumed[phase] = 0
        for username in run.agents(phase):
            session, desk = await open_desk(run.base_url, username, run.password)
            try:
                state = desk.state or {}
                if state.get("state") == "wrap_up" and state.get("call_id") in calls:
                    resumed[phase] += 1
                    await desk.send("wrap_up", disposition="follow_up", notes="after the crash")
                    await desk.until_state("ready")  # sent once the disposition is stored
            finally:
                await session.close()
    return resumed


def _report(
    run: Run,
    storage: SqliteStorage,
    before: Snapshot,
    after: Snapshot,
    reached: dict[str, list[bool]],
    resumed: dict[str, int],
    alive_before: float | None,
    killed_at: float,
    first_ready_s: float,
) -> dict[str, Any]:
    now_rows = {c.call_id: c for c in storage.calls_since(0)}
    entries = {e.call_id: e for e in storage.queue_entries_since(0)}
    lost_finished = [
        call_id
        for call_id, (outcome, ended_at) in before.finished.items()
        if (row := now_rows.get(call_id)) is None or (row.outcome, row.ended_at) != (outcome, ended_at)
    ]
    phases: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        if phase not in run.phases:
            phases[phase] = {"skipped": "not asked for (--phases)"}
            continue
        ids = [caller.call_id for caller in run.callers.get(phase, [])]
        rows = [now_rows[i] for i in ids if i in now_rows]
        cut = [row for row in rows if row.call_id in before.open_calls]
        figures: dict[str, Any] = {
            "calls": len(ids),
            "in_phase_at_kill": sum(reached.get(phase, [])),
            "cut": len(cut),
            "marked_interrupted": sum(r.outcome == "interrupted" and r.ended_at is not None for r in cut),
            "ended_by_the_kill": sum(r.ended_at is not None and r.ended_at <= killed_at for r in cut),
            "with_trace_events": sum(bool(storage.trace_events(r.call_id)) for r in cut),
            # Of the phase's calls that had escalated by the kill (none for the bot's: no figure).
            "handoffs_kept": sum(i in after.handoffs for i in ids if i in before.handoffs)
            if before.handoffs & set(ids)
            else None,
        }
        if phase == "queued":
            dropped = [entries[i] for i in ids if i in entries and entries[i].result == "dropped"]
            # Closed at the last alive mark, or when it entered if that was later: no downtime in it.
            figures["waits_without_downtime"] = sum(
                alive_before is not None
                and e.left_at is not None
                and e.left_at <= max(alive_before, e.entered_at)
                for e in dropped
            )
        if phase in resumed:
            figures["wrap_ups_resumed"] = resumed[phase]
        phases[phase] = figures
    return {
        "calls_per_phase": run.per_phase,
        "server_ready_s": round(first_ready_s, 1),
        "restart_ready_s": round(run.server.ready_s, 1),
        "lost": {
            "finished_records": len(lost_finished),
            "handoffs": len(before.handoffs - after.handoffs),
            "callbacks": len(before.callbacks - after.callbacks),
            "dispositions": len(before.dispositions - after.dispositions),
        },
        "kept_before_kill": {
            "finished_records": len(before.finished),
            "handoffs": len(before.handoffs),
            "callbacks": len(before.callbacks),
            "dispositions": len(before.dispositions),
        },
        "cut_calls": len(before.open_calls),
        "cut_calls_marked": sum(
            (row := now_rows.get(i)) is not None and row.outcome == "interrupted" for i in before.open_calls
        ),
        "phases": phases,
    }


COLUMNS = {
    "calls": "calls",
    "in_phase_at_kill": "in phase at kill",
    "cut": "cut (open at kill)",
    "marked_interrupted": "marked interrupted",
    "ended_by_the_kill": "end <= kill",
    "with_trace_events": "with trace",
    "handoffs_kept": "handoffs kept",
    "waits_without_downtime": "waits without downtime",
    "wrap_ups_resumed": "wrap-ups resumed",
}


def print_table(report: dict[str, Any]) -> None:
    rows = []
    for phase, figures in report["phases"].items():
        if "skipped" in figures:
            rows.append([phase, f"skipped: {figures['skipped']}"] + [""] * (len(COLUMNS) - 1))
        else:
            rows.append([phase] + ["" if figures.get(key) is None else figures[key] for key in COLUMNS])
    print(tabulate(rows, headers=["phase", *COLUMNS.values()]))
    print()
    lost, kept = report["lost"], report["kept_before_kill"]
    print(tabulate([[k, kept[k], lost[k]] for k in lost], headers=["record", "stored before kill", "lost"]))
    print(f"\ncut calls marked interrupted: {report['cut_calls_marked']} of {report['cut_calls']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls-per-phase", type=int, default=2, help="calls in each phase at the kill")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument(
        "--bot-seconds", type=float, default=2.0, help="how long the bot phase's calls are on at the kill"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and server log")
    args = parser.parse_args()
    if args.calls_per_phase < 1:
        parser.error("--calls-per-phase must be at least 1")
    server = ServerProcess(load_config(), tag="faults", serve_args=["--no-sip", "--no-audiosocket"])
    try:
        report = asyncio.run(run_faults(server, args.calls_per_phase, tuple(args.phases), args.bot_seconds))
    except (TimeoutError, RuntimeError) as exc:
        print(f"bench_faults failed: {exc}\n--- server log ---\n{server.log_tail()}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        server.stop()
        if args.keep:
            print(f"data and log kept in {server.data_dir}", file=sys.stderr)
        else:
            server.cleanup()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print()
    print_table(report)


if __name__ == "__main__":
    main()
