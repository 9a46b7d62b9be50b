"""Storage: schema migrations, restart safety, and the rows the dashboard and queue rely on."""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import unittest.mock
from pathlib import Path

from voicebot.config import Config
from voicebot.events import TtsFirstAudio
from voicebot.handoff.record import CallStore, HandoffRecord, TranscriptLine
from voicebot.server.auth import make_account, verify_password
from voicebot.server.call_records import RecordKeeper
from voicebot.server.commands import cmd_calls_forget
from voicebot.storage import SCHEMA_VERSION, DispositionRow, PendingWrapUp, SqliteStorage
from voicebot.storage.sqlite import MIGRATIONS


def record(call_id: str = "c1") -> HandoffRecord:
    return HandoffRecord(
        call_id=call_id, reason="caller_request", queue="cards", caller_id="+15550100", language="en",
        auth_level="identified", slots={"account_number": "****5678"},
        transcript=[TranscriptLine("Caller", "I lost my card")],
    )  # fmt: skip


def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    SqliteStorage(path).close()
    storage = SqliteStorage(path)  # opening again must not re-run (or fail on) migrations
    assert storage.schema_version == SCHEMA_VERSION
    storage.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in db.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1)) and SCHEMA_VERSION >= 2


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    storage = SqliteStorage(path)
    storage.call_started("c1", "+15550100", "en", at=100.0)
    storage.add_trace_events([TtsFirstAudio(call_id="c1", synth_ms=50.0, turn_latency_ms=720.0)], 0.0)
    storage.call_ended("c1", "escalated", "answered", at=160.0)
    storage.save_handoff(record())
    entry = storage.queue_entered("c1", "cards", at=110.0)
    storage.queue_left(entry, "answered", at=115.0, agent="alice")
    storage.save_agent(make_account("alice", "correct horse", "agent"))
    storage.save_disposition(
        DispositionRow("c1", "alice", "resolved", "sent a new card", 115.0, 150.0, 160.0)
    )
    storage.add_callback(record("c2"), at=120.0)
    waiting = storage.queue_entered("c3", "general", at=130.0)
    storage.close()

    storage = SqliteStorage(path)
    call = storage.get_call("c1")
    assert call is not None and call.outcome == "escalated" and call.ended_at == 160.0
    assert storage.trace_events("c1")[0]["type"] == "tts_first_audio"
    assert storage.turn_latencies_since(0.0) == [720.0]
    assert storage.get_handoff("c1")["slots"] == {"account_number": "****5678"}
    assert storage.escalations_since(0.0) == [("c1", "caller_request")]
    account = storage.get_agent("alice")
    assert account is not None and verify_password(account, "correct horse")
    assert not verify_password(account, "wrong horse")
    assert storage.dispositions_since(0.0)[0].handle_s == 45.0
    [callback] = storage.pending_callbacks()
    assert callback.call_id == "c2" and callback.record["transcript"][0]["text"] == "I lost my card"
    # A caller still waiting when the server stopped is closed as dropped, not left waiting forever.
    assert storage.close_waiting_entries(at=200.0) == 1
    entries = {row.id: row for row in storage.queue_entries_since(0.0)}
    assert entries[entry].waited_s == 5.0 and entries[entry].agent == "alice"
    assert entries[waiting].result == "dropped"
    storage.close()


def test_a_version_2_database_gets_the_agents_skills_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:  # the schema as version 2 left it, with an agent in it
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
        for version, migration in enumerate(MIGRATIONS[:2], start=1):
            db.executescript(migration)
            db.execute("INSERT INTO schema_version VALUES (?)", (version,))
        old = make_account("alice", "correct horse", "agent")
        db.execute(
            "INSERT INTO agents VALUES (?, ?, ?, ?)", (old.username, old.password_hash, old.salt, "agent")
        )
    storage = SqliteStorage(path)
    assert storage.schema_version == SCHEMA_VERSION >= 3
    account = storage.get_agent("alice")
    assert account is not None and verify_password(account, "correct horse")
    assert (account.languages, account.queues, account.ui_language) == (("en",), (), "en")
    storage.save_agent(
        make_account(
            "bruno", "correct horse", "agent", languages=["en", "es"], queues=["cards"], ui_language="es"
        )
    )
    storage.close()
    storage = SqliteStorage(path)
    bruno = storage.get_agent("bruno")
    assert bruno is not None and (bruno.languages, bruno.queues, bruno.ui_language) == (
        ("en", "es"),
        ("cards",),
        "es",
    )
    storage.close()


def test_a_call_counts_for_the_language_it_switched_to(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "db.sqlite")
    storage.call_started("c1", "+15550100", "en", at=100.0)
    storage.set_call_language("c1", "fa")
    storage.call_ended("c1", "contained", "goodbye", at=160.0)
    call = storage.get_call("c1")
    assert call is not None and call.language == "fa" and call.outcome == "contained"
    storage.close()


# ----- deleting calls: a caller's request, retention (docs/security.md) ---------------------------------


def stored_call(
    storage: SqliteStorage, call_id: str, caller_id: str, ended_at: float | None, words: str
) -> None:
    storage.call_started(call_id, caller_id, "en", at=100.0)
    storage.add_trace_events([TtsFirstAudio(call_id=call_id, synth_ms=5.0, turn_latency_ms=700.0)], 0.0)
    handoff = dataclasses.replace(
        record(call_id), caller_id=caller_id, transcript=[TranscriptLine("Caller", words)]
    )
    storage.save_handoff(handoff)
    entry = storage.queue_entered(call_id, "cards", at=110.0)
    storage.queue_left(entry, "answered", at=115.0, agent="alice")
    if ended_at is not None:
        storage.call_ended(call_id, "escalated", "answered", at=ended_at)
        storage.save_disposition(DispositionRow(call_id, "alice", "resolved", words, 115.0, 150.0, ended_at))


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_forgetting_a_caller_deletes_every_row_of_their_calls_and_their_bytes(
    tmp_path: Path, config: Config
) -> None:
    path = tmp_path / "db.sqlite"
    storage = SqliteStorage(path)
    stored_call(storage, "a1", "+15550111", 160.0, "my sister's wedding ring")
    stored_call(storage, "a2", "+15550111", 170.0, "the blue bicycle again")
    storage.add_callback(dataclasses.replace(record("a3"), caller_id="+15550111"), at=180.0)
    stored_call(storage, "b1", "+15550222", 160.0, "a call someone else made")
    stored_call(storage, "a4", "+15550111", None, "still talking now")  # on: its end would store it again
    assert b"wedding ring" in store_bytes(path)

    assert storage.forget_caller("+15550111") == 3
    assert [c.call_id for c in storage.calls_since(0.0)] == ["b1", "a4"]
    assert storage.trace_events("a1") == [] and storage.get_handoff("a2") is None
    assert storage.pending_callbacks() == []
    assert [d.call_id for d in storage.dispositions_since(0.0)] == ["b1"]
    assert {e.call_id for e in storage.queue_entries_since(0.0)} == {"b1", "a4"}
    kept = store_bytes(path)
    assert b"wedding ring" not in kept and b"blue bicycle" not in kept and b"someone else" in kept
    storage.close()

    # The command does the same to the server's store and to the CLI's JSON handoff records.
    configured = config.replace(data_dir=str(tmp_path / "var"))
    cli_store = CallStore(configured.path(configured.data_dir) / "calls")
    cli_store.save_handoff(dataclasses.replace(record("cli1"), caller_id="+15550111"))
    cli_store.save_handoff(dataclasses.replace(record("cli2"), caller_id="+15550222"))
    assert cmd_calls_forget(argparse.Namespace(caller_id="+15550111"), configured) == 0
    assert [p.stem for p in (cli_store.root / "handoffs").glob("*.json")] == ["cli2"]


def test_retention_deletes_old_calls_but_not_a_pending_callback_or_wrap_up(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "db.sqlite")
    stored_call(storage, "old", "+15550111", 1_000.0, "old words")
    stored_call(storage, "old_callback", "+15550111", 1_000.0, "call me back")
    storage.add_callback(record("old_callback"), at=1_000.0)
    stored_call(storage, "old_wrap_up", "+15550111", 1_000.0, "still being wrapped up")
    storage.save_pending_wrap_up(PendingWrapUp("bob", "old_wrap_up", 900.0, 1_000.0))
    stored_call(storage, "recent", "+15550111", 90_000.0, "recent words")

    keeper = RecordKeeper(storage, retention_s=86_400.0)
    with unittest.mock.patch("voicebot.server.call_records.time.time", return_value=1_000.0 + 86_400.0 + 1):
        keeper.flush()
    assert sorted(c.call_id for c in storage.calls_since(0.0)) == ["old_callback", "old_wrap_up", "recent"]
    assert storage.get_handoff("old") is None and storage.get_handoff("recent") is not None
    storage.close()
