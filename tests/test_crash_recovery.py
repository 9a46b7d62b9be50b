"""Crash recovery: a call's trace is stored while it happens, and after a kill -9 the next start closes
the cut calls as ``interrupted`` at the last time the server was known alive (the downtime is neither
a call nor a queue wait), keeping their handoffs, callbacks and dispositions; the figures count them."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from types import ModuleType

import aiohttp

from tests.test_server import call, hang_up, run, running_server, until
from voicebot.config import Config
from voicebot.engines import Engines
from voicebot.events import BotSaid, CallEnded, CallStarted
from voicebot.handoff.record import HandoffRecord
from voicebot.server.app import storage_path
from voicebot.server.call_records import CUT_CALL_REASON, CallRecords, RecordKeeper
from voicebot.server.kpis import compute_kpis
from voicebot.storage import DispositionRow, SqliteStorage

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def bench_faults() -> ModuleType:
    """scripts/bench_faults.py, whose callers and server process the kill test shares."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # it imports bench_serve_caller beside it
    return importlib.import_module("bench_faults")


def record(call_id: str) -> HandoffRecord:
    return HandoffRecord(
        call_id=call_id, reason="caller_request", queue="cards", caller_id="+15550100", language="en",
        auth_level="none",
    )  # fmt: skip


def types(storage: SqliteStorage, call_id: str) -> list[str]:
    return [event["type"] for event in storage.trace_events(call_id)]


# ----- the trace as it happens ------------------------------------------------------------------------


def test_records_stream_a_calls_events_and_write_each_once(engines: Engines, tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    records = CallRecords(storage, engines)
    started = CallStarted(call_id="c1", caller_id="+1555", language="en", asr_engine="a", nlu_engine="n")
    records.event(started)
    assert storage.flush_trace_events() == 0  # not a call yet (no valid audio or key): nothing stored
    records.started("c1", "+1555", "en", at=100.0)
    said = BotSaid(call_id="c1", text="Hello")
    records.event(said)
    assert storage.flush_trace_events() == 2
    assert types(storage, "c1") == ["call_started", "bot_said"]  # in storage while the call is on
    assert storage.get_call("c1").outcome is None  # type: ignore[union-attr]
    ended = CallEnded(call_id="c1", outcome="contained", reason="bot_hangup")
    records.record_end("contained", "bot_hangup", [started, said, ended])  # the whole trace at the end
    assert types(storage, "c1") == ["call_started", "bot_said", "call_ended"]  # none written twice
    storage.close()


def test_a_connection_that_never_becomes_a_call_leaves_no_trace(engines: Engines, tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    records = CallRecords(storage, engines)
    records.event(CallStarted(call_id="g1", caller_id="?", language="en", asr_engine="a", nlu_engine="n"))
    RecordKeeper(storage).flush()
    assert storage.trace_events("g1") == [] and storage.get_call("g1") is None
    storage.close()


def test_a_live_calls_events_are_stored_before_it_ends(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            caller = await call(session, server)
            call_id = caller.got("started")["call_id"]  # type: ignore[index]
            await until(lambda: {"call_started", "bot_said"} <= set(types(storage, call_id)))
            assert storage.get_call(call_id).outcome is None  # the call is still on
            await hang_up(caller, storage)
            stored = storage.trace_events(call_id)
            kinds = [event["type"] for event in stored]
            assert kinds.count("call_started") == 1 and kinds.count("call_ended") == 1
            assert len({(e["type"], e["t"]) for e in stored}) == len(stored)  # the end wrote no event twice

    run(scenario)


# ----- recovery at start-up -------------------------------------------------------------------------


def test_a_restart_closes_cut_calls_at_the_last_alive_mark_and_keeps_their_records(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.sqlite"
    storage = SqliteStorage(path)
    storage.call_started("done", "+1555", "en", at=90.0)
    storage.call_ended("done", "contained", "bot_hangup", at=95.0)
    storage.call_started("bot", "+1555", "en", at=100.0)
    storage.add_trace_events([BotSaid(call_id="bot", text="Hello", t=105.0)], 0.0)
    storage.call_started("queued", "+1555", "en", at=101.0)
    storage.save_handoff(record("queued"))
    queued_entry = storage.queue_entered("queued", "cards", at=104.0)
    storage.call_started("talked", "+1555", "en", at=102.0)
    storage.save_disposition(DispositionRow("talked", "alice", "resolved", "", 103.0, 104.0, 105.0))
    storage.add_callback(record("asked_back"), at=106.0)
    storage.mark_alive(110.0)
    storage.call_started("late", "+1555", "en", at=112.0)  # after the last mark, before the kill
    late_entry = storage.queue_entered("late", "cards", at=113.0)
    storage.close()  # killed: nothing more was written

    storage = SqliteStorage(path)

    async def start_again() -> None:
        keeper = RecordKeeper(storage)
        keeper.start()
        await keeper.stop()

    asyncio.run(start_again())
    calls = {row.call_id: row for row in storage.calls_since(0)}
    assert (calls["done"].outcome, calls["done"].ended_at) == ("contained", 95.0)  # untouched
    for call_id in ("bot", "queued", "talked"):
        assert (calls[call_id].outcome, calls[call_id].end_reason) == ("interrupted", CUT_CALL_REASON)
        assert calls[call_id].ended_at == 110.0  # when the server was last known alive
    assert (calls["late"].outcome, calls["late"].ended_at) == ("interrupted", 113.0)  # not before it queued
    entries = {row.id: row for row in storage.queue_entries_since(0)}
    assert (entries[queued_entry].result, entries[queued_entry].left_at) == ("dropped", 110.0)
    assert entries[queued_entry].waited_s == 6.0  # the downtime is no wait
    assert entries[late_entry].left_at == 113.0  # never before it entered
    assert storage.get_handoff("queued") is not None
    assert [d.call_id for d in storage.dispositions_since(0)] == ["talked"]
    assert [c.call_id for c in storage.pending_callbacks()] == ["asked_back"]
    assert storage.last_alive() > 113.0  # type: ignore[operator]  # this run's own mark
    kpis = compute_kpis(storage, 0)
    assert kpis["interrupted"] == 4 and kpis["outcomes"] == {"contained": 1, "interrupted": 4}
    assert kpis["transfers"] == 1  # the cut queued call's escalation counts now that it has ended
    storage.close()


def test_without_an_alive_mark_a_cut_call_ends_at_its_last_event(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")  # as a database from before the mark
    storage.call_started("bot", "+1555", "en", at=100.0)
    storage.add_trace_events([BotSaid(call_id="bot", text="Hello", t=105.0)], 0.0)
    storage.call_started("silent", "+1555", "en", at=101.0)
    assert storage.close_cut_calls(None, CUT_CALL_REASON) == 2
    assert storage.get_call("bot").ended_at == 105.0  # type: ignore[union-attr]
    assert storage.get_call("silent").ended_at == 101.0  # type: ignore[union-attr]
    storage.close()


# ----- kill -9 of a real server ------------------------------------------------------------------------


def test_a_server_killed_mid_call_closes_the_cut_calls_on_restart(engines: Engines, config: Config) -> None:
    faults = bench_faults()
    server = faults.ServerProcess(config, tag="crash_test", serve_args=["--no-sip", "--no-audiosocket"])
    path = storage_path(server.server_config)

    async def calls_in_progress() -> tuple[str, str]:
        """A caller with the bot, a caller waiting in the queue; returns their call ids once both
        are in storage with their traces and the alive mark is later than the queue entry."""
        async with aiohttp.ClientSession() as session:
            with_bot = await faults.dial(session, server.url, "+15550201")
            queued = await faults.dial(session, server.url, "+15550202")
            await queued.key("0")
            await queued.wait_for("queue")
            storage = SqliteStorage(path)
            try:

                def ready() -> bool:
                    entries = storage.queue_entries_since(0)
                    alive = storage.last_alive()
                    return bool(
                        storage.trace_events(with_bot.call_id)
                        and storage.trace_events(queued.call_id)
                        and entries
                        and alive is not None
                        and alive > entries[0].entered_at
                    )

                await faults.until(ready, "the live calls' traces and the alive mark")
                assert storage.get_call(with_bot.call_id).outcome is None  # type: ignore[union-attr]
            finally:
                storage.close()
            server.kill()
            return with_bot.call_id, queued.call_id

    try:
        server.start()
        with_bot_id, queued_id = asyncio.run(calls_in_progress())
        storage = SqliteStorage(path)
        alive_at_kill = storage.last_alive()
        traced = {call_id: types(storage, call_id) for call_id in (with_bot_id, queued_id)}
        storage.close()
        assert alive_at_kill is not None and all("call_started" in t for t in traced.values())

        server.start()  # the same data directory
        storage = SqliteStorage(path)
        try:
            restarted_alive = storage.last_alive()
            assert restarted_alive is not None and restarted_alive > alive_at_kill
            for call_id in (with_bot_id, queued_id):
                row = storage.get_call(call_id)
                assert row is not None and (row.outcome, row.end_reason) == ("interrupted", CUT_CALL_REASON)
                assert row.ended_at is not None and row.started_at <= row.ended_at < restarted_alive
                assert types(storage, call_id) == traced[call_id]  # what was streamed is all there
            [entry] = storage.queue_entries_since(0)
            assert entry.call_id == queued_id and entry.result == "dropped"
            assert entry.left_at == alive_at_kill  # the wait ends when the server was last alive
            assert storage.get_handoff(queued_id) is not None
            assert compute_kpis(storage, 0)["interrupted"] == 2
        finally:
            storage.close()
    finally:
        server.stop()
        server.cleanup()
