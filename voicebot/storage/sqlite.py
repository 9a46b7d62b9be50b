"""SQLite (WAL) storage with numbered schema migrations recorded in a version table."""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicebot.events import CallEvent, TtsFirstAudio
from voicebot.handoff.record import HandoffRecord
from voicebot.storage.base import (
    AgentAccount,
    AgentStateRow,
    CallbackRequest,
    CallRow,
    DispositionRow,
    PendingWrapUp,
    QueueEntryRow,
    WebSessionRow,
)

# Each entry moves the schema one version up; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE calls (
        call_id TEXT PRIMARY KEY, caller_id TEXT NOT NULL, language TEXT NOT NULL,
        started_at REAL NOT NULL, ended_at REAL, outcome TEXT, end_reason TEXT
    );
    CREATE INDEX calls_started ON calls (started_at);
    CREATE TABLE trace_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, type TEXT NOT NULL,
        at REAL NOT NULL, audio_ms INTEGER NOT NULL, data TEXT NOT NULL
    );
    CREATE INDEX trace_events_call ON trace_events (call_id);
    CREATE INDEX trace_events_type_at ON trace_events (type, at);
    CREATE TABLE handoffs (
        call_id TEXT PRIMARY KEY, queue TEXT NOT NULL, reason TEXT NOT NULL,
        created_at REAL NOT NULL, record TEXT NOT NULL
    );
    CREATE TABLE queue_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, queue TEXT NOT NULL,
        entered_at REAL NOT NULL, left_at REAL, result TEXT NOT NULL DEFAULT 'waiting', agent TEXT
    );
    CREATE INDEX queue_entries_entered ON queue_entries (entered_at);
    CREATE TABLE agents (
        username TEXT PRIMARY KEY, password_hash BLOB NOT NULL, salt BLOB NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin'))
    );
    CREATE TABLE dispositions (
        call_id TEXT PRIMARY KEY, agent TEXT NOT NULL,
        disposition TEXT NOT NULL CHECK (disposition IN ('resolved', 'follow_up', 'transferred')),
        notes TEXT NOT NULL, talk_started_at REAL NOT NULL, talk_ended_at REAL NOT NULL,
        wrapup_ended_at REAL NOT NULL
    );
    CREATE TABLE callbacks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, caller_id TEXT NOT NULL,
        queue TEXT NOT NULL, requested_at REAL NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
        record TEXT NOT NULL
    );
    """,
    # 2: what became of a callback dialled out (answered | busy | no_answer | failed), and when.
    """
    ALTER TABLE callbacks ADD COLUMN result TEXT;
    ALTER TABLE callbacks ADD COLUMN finished_at REAL;
    """,
    # 3: agents' skills: the callers' languages they speak and the queues they serve (JSON arrays;
    # no queues: every queue), and the language of their desk's labels.
    """
    ALTER TABLE agents ADD COLUMN languages TEXT NOT NULL DEFAULT '["en"]';
    ALTER TABLE agents ADD COLUMN queues TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE agents ADD COLUMN ui_language TEXT NOT NULL DEFAULT 'en';
    """,
    # Web sessions that outlive a restart (the SHA-256 of each token, never the token), and each
    # agent's answered call until its disposition is in (a dropped desk or a restart finds it again).
    """
    CREATE TABLE web_sessions (
        token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL, expires_at REAL NOT NULL
    );
    CREATE TABLE pending_wrap_ups (
        agent TEXT PRIMARY KEY, call_id TEXT NOT NULL, talk_started_at REAL NOT NULL, talk_ended_at REAL
    );
    """,
    # The server's alive mark (one row, rewritten every flush): after a crash the next start closes
    # the calls and queue entries left open at that time, so the downtime is neither talk nor wait.
    # The index finds those calls without reading every call.
    """
    CREATE TABLE server_alive (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);
    CREATE INDEX calls_open ON calls (ended_at) WHERE ended_at IS NULL;
    """,
    # 6: the account a call was about (its hash, once the caller authenticated) and the caller id,
    # indexed, for an agent's view of the caller's earlier contacts; one disposition per agent who
    # handled a call (a warm transfer has two), each with its talk's time on hold; the agents' states
    # over time, for their occupancy; the agent's time zone (none: their browser's).
    """
    ALTER TABLE calls ADD COLUMN account_key TEXT;
    ALTER TABLE agents ADD COLUMN time_zone TEXT;
    CREATE INDEX calls_caller ON calls (caller_id, started_at);
    CREATE INDEX calls_account ON calls (account_key, started_at) WHERE account_key IS NOT NULL;
    CREATE TABLE dispositions_by_agent (
        call_id TEXT NOT NULL, agent TEXT NOT NULL,
        disposition TEXT NOT NULL CHECK (disposition IN ('resolved', 'follow_up', 'transferred')),
        notes TEXT NOT NULL, talk_started_at REAL NOT NULL, talk_ended_at REAL NOT NULL,
        wrapup_ended_at REAL NOT NULL, hold_s REAL NOT NULL DEFAULT 0, PRIMARY KEY (call_id, agent)
    );
    INSERT INTO dispositions_by_agent SELECT *, 0 FROM dispositions;
    DROP TABLE dispositions;
    ALTER TABLE dispositions_by_agent RENAME TO dispositions;
    CREATE INDEX dispositions_talk ON dispositions (talk_started_at);
    ALTER TABLE pending_wrap_ups ADD COLUMN hold_s REAL NOT NULL DEFAULT 0;
    CREATE TABLE agent_states (
        id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, state TEXT NOT NULL,
        started_at REAL NOT NULL, ended_at REAL
    );
    CREATE INDEX agent_states_started ON agent_states (started_at);
    CREATE INDEX agent_states_open ON agent_states (agent) WHERE ended_at IS NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
# Every table with rows about one call (by its call_id): what deleting a call deletes.
CALL_TABLES = (
    "trace_events",
    "handoffs",
    "queue_entries",
    "dispositions",
    "callbacks",
    "pending_wrap_ups",
    "calls",
)


def _placeholders(values: Sequence[object]) -> str:
    """``?, ?, ?``: one parameter per value, for an ``IN (...)`` list."""
    return ", ".join("?" * len(values))


def _callback(row: sqlite3.Row) -> CallbackRequest:
    return CallbackRequest(**{**dict(row), "record": json.loads(row["record"])})


class SqliteStorage:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection used from the server's event loop thread only; autocommit per statement.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA secure_delete=ON")  # a deleted call's bytes are overwritten, not left
        # Live calls' trace events not written yet, with each one's wall-clock offset: appended from
        # any thread (the stages emit from worker threads), written by flush_trace_events on the loop.
        self._trace_buffer: deque[tuple[CallEvent, float]] = deque()
        self._migrate()

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
        for version in range(self.schema_version + 1, SCHEMA_VERSION + 1):
            # executescript commits first, so wrap each migration in its own explicit transaction.
            self._db.executescript(
                f"BEGIN; {MIGRATIONS[version - 1]}; INSERT INTO schema_version VALUES ({version}); COMMIT;"
            )

    def close(self) -> None:
        self._db.close()

    # ----- calls and traces ----------------------------------------------------------------------

    def call_started(self, call_id: str, caller_id: str, language: str, at: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO calls (call_id, caller_id, language, started_at) VALUES (?, ?, ?, ?)",
            (call_id, caller_id, language, at),
        )

    def call_ended(self, call_id: str, outcome: str, reason: str, at: float) -> None:
        self._db.execute(
            "UPDATE calls SET ended_at = ?, outcome = ?, end_reason = ? WHERE call_id = ?",
            (at, outcome, reason, call_id),
        )

    def set_call_language(self, call_id: str, language: str) -> None:
        """The caller switched language during the call: the call counts for the one it ended in."""
        self._db.execute("UPDATE calls SET language = ? WHERE call_id = ?", (language, call_id))

    def set_call_account(self, call_id: str, account_key: str) -> None:
        """The account the caller authenticated as (its hash): their contacts by account."""
        self._db.execute("UPDATE calls SET account_key = ? WHERE call_id = ?", (account_key, call_id))

    def get_call(self, call_id: str) -> CallRow | None:
        row = self._db.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        return CallRow(**row) if row else None

    def calls_since(self, since: float) -> list[CallRow]:
        rows = self._db.execute("SELECT * FROM calls WHERE started_at >= ? ORDER BY started_at", (since,))
        return [CallRow(**row) for row in rows]

    def previous_calls(
        self, caller_id: str | None, account_key: str | None, before: float, limit: int
    ) -> list[CallRow]:
        """The calls started before ``before`` from ``caller_id`` or about ``account_key``, newest
        first, at most ``limit``. A None key matches nothing (``= NULL`` is never true); each side
        reads its own index (calls_caller, calls_account) newest first and stops at ``limit``."""
        rows = self._db.execute(
            "SELECT * FROM (SELECT * FROM calls WHERE caller_id = ? AND started_at < ?"
            " ORDER BY started_at DESC LIMIT ?)"
            " UNION SELECT * FROM (SELECT * FROM calls WHERE account_key = ? AND started_at < ?"
            " ORDER BY started_at DESC LIMIT ?)"
            " ORDER BY started_at DESC, call_id LIMIT ?",
            (caller_id, before, limit, account_key, before, limit, limit),
        )
        return [CallRow(**row) for row in rows]

    def add_trace_events(self, events: list[CallEvent], wall_offset: float) -> None:
        """``wall_offset`` turns the events' monotonic ``t`` into wall-clock time."""
        self._write_trace([(event, wall_offset) for event in events])

    def buffer_trace_event(self, event: CallEvent, wall_offset: float) -> None:
        """Keeps an event of a call in progress for the next :meth:`flush_trace_events` (any thread)."""
        self._trace_buffer.append((event, wall_offset))

    def flush_trace_events(self) -> int:
        """Writes the buffered events in one transaction; returns how many. A failed write puts
        them back, in order, for the next flush (only this thread takes from the buffer)."""
        batch = [self._trace_buffer.popleft() for _ in range(len(self._trace_buffer))]
        if batch:
            try:
                self._write_trace(batch)
            except sqlite3.Error:
                self._trace_buffer.extendleft(reversed(batch))
                raise
        return len(batch)

    def _write_trace(self, events: list[tuple[CallEvent, float]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO trace_events (call_id, type, at, audio_ms, data) VALUES (?, ?, ?, ?, ?)",
                [
                    (e.call_id, e.type, e.t + offset, e.audio_ms, json.dumps(e.to_dict(), default=str))
                    for e, offset in events
                ],
            )

    def trace_events(self, call_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT data FROM trace_events WHERE call_id = ? ORDER BY id", (call_id,))
        return [json.loads(row["data"]) for row in rows]

    def trace_events_of(self, call_ids: Sequence[str], types: Sequence[str]) -> list[dict[str, Any]]:
        """The events of these types of these calls, in the order they were written."""
        # By call: the planner would otherwise pick the type index, every call's events of a type.
        rows = self._db.execute(
            "SELECT data FROM trace_events INDEXED BY trace_events_call"
            f" WHERE call_id IN ({_placeholders(call_ids)})"
            f" AND type IN ({_placeholders(types)}) ORDER BY id",
            (*call_ids, *types),
        )
        return [json.loads(row["data"]) for row in rows]

    def turn_latencies_since(self, since: float) -> list[float]:
        rows = self._db.execute(
            "SELECT data FROM trace_events WHERE type = ? AND at >= ?", (TtsFirstAudio.type, since)
        )
        latencies = (json.loads(row["data"]).get("turn_latency_ms") for row in rows)
        return [float(value) for value in latencies if value is not None]

    def escalations_since(self, since: float) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT call_id, reason FROM handoffs WHERE created_at >= ?", (since,))
        return [(row["call_id"], row["reason"]) for row in rows]

    # ----- crash recovery ------------------------------------------------------------------------

    def mark_alive(self, at: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO server_alive (id, at) VALUES (1, ?)", (at,))

    def last_alive(self) -> float | None:
        row = self._db.execute("SELECT at FROM server_alive WHERE id = 1").fetchone()
        return None if row is None else float(row["at"])

    def close_cut_calls(self, alive_at: float | None, reason: str) -> int:
        """Closes the calls a crash left without an end as ``interrupted``: they ended when the
        server was last known alive, or at the last thing stored of them if later (a call that
        started after the last mark: its start, last event or entry into the queue, which
        :meth:`close_waiting_entries` closes no earlier); their handoffs, callbacks and dispositions
        stay."""
        cursor = self._db.execute(
            "UPDATE calls SET outcome = 'interrupted', end_reason = ?, ended_at = MAX("
            " started_at, COALESCE(?, started_at),"
            " COALESCE((SELECT MAX(at) FROM trace_events t WHERE t.call_id = calls.call_id), started_at),"
            " COALESCE((SELECT MAX(entered_at) FROM queue_entries q WHERE q.call_id = calls.call_id),"
            " started_at)) WHERE ended_at IS NULL",
            (reason, alive_at),
        )
        return cursor.rowcount

    # ----- deleting calls (retention, a caller's request) -------------------------------------------

    def forget_caller(self, caller_id: str) -> int:
        """Deletes every ended call of ``caller_id`` and all that is kept about it (trace, handoff,
        queue entries, disposition and notes, callbacks); returns how many calls. A call still on,
        or still in an agent's wrap-up, is left: its end or disposition would store it again."""
        rows = self._db.execute(
            "SELECT call_id FROM (SELECT call_id FROM calls WHERE caller_id = ? AND ended_at IS NOT NULL"
            " UNION SELECT call_id FROM callbacks WHERE caller_id = ?)"
            " WHERE call_id NOT IN (SELECT call_id FROM pending_wrap_ups)",
            (caller_id, caller_id),
        )
        return self._delete_calls([row["call_id"] for row in rows])

    def delete_calls_ended_before(self, at: float) -> int:
        """Retention: deletes the calls that ended before ``at`` with all that is kept about them,
        except a call whose callback is still to be made or whose wrap-up is still to be done."""
        rows = self._db.execute(
            "SELECT call_id FROM calls WHERE ended_at < ?"
            " AND call_id NOT IN (SELECT call_id FROM callbacks WHERE status = 'pending')"
            " AND call_id NOT IN (SELECT call_id FROM pending_wrap_ups)",
            (at,),
        )
        return self._delete_calls([row["call_id"] for row in rows])

    def _delete_calls(self, call_ids: list[str]) -> int:
        if not call_ids:
            return 0
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (call_id TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM doomed")
            self._db.executemany("INSERT OR IGNORE INTO doomed VALUES (?)", [(c,) for c in call_ids])
            for table in CALL_TABLES:
                self._db.execute(f"DELETE FROM {table} WHERE call_id IN (SELECT call_id FROM doomed)")
            self._db.execute("DELETE FROM doomed")
        # secure_delete zeroed the pages in the database; the WAL still holds their old copies until
        # they are checkpointed into it and the log is emptied.
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(set(call_ids))

    # ----- handoffs ------------------------------------------------------------------------------

    def save_handoff(self, record: HandoffRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO handoffs (call_id, queue, reason, created_at, record)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.call_id, record.queue, record.reason, record.created_at, json.dumps(record.to_dict())),
        )

    def get_handoff(self, call_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT record FROM handoffs WHERE call_id = ?", (call_id,)).fetchone()
        return json.loads(row["record"]) if row else None

    def handoffs_of(self, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The handoff records of those of these calls that have one, by call id."""
        rows = self._db.execute(
            f"SELECT call_id, record FROM handoffs WHERE call_id IN ({_placeholders(call_ids)})", call_ids
        )
        return {row["call_id"]: json.loads(row["record"]) for row in rows}

    # ----- queue ---------------------------------------------------------------------------------

    def queue_entered(self, call_id: str, queue: str, at: float) -> int:
        cursor = self._db.execute(
            "INSERT INTO queue_entries (call_id, queue, entered_at) VALUES (?, ?, ?)", (call_id, queue, at)
        )
        return int(cursor.lastrowid or 0)

    def queue_left(self, entry_id: int, result: str, at: float, agent: str | None = None) -> None:
        self._db.execute(
            "UPDATE queue_entries SET left_at = ?, result = ?, agent = ? WHERE id = ?",
            (at, result, agent, entry_id),
        )

    def queue_entries_since(self, since: float) -> list[QueueEntryRow]:
        rows = self._db.execute(
            "SELECT * FROM queue_entries WHERE entered_at >= ? ORDER BY entered_at", (since,)
        )
        return [QueueEntryRow(**row) for row in rows]

    def queue_entries_of(self, call_ids: Sequence[str]) -> list[QueueEntryRow]:
        # No index by call: a call enters the queue after it starts, so the entered_at index reads
        # only the entries since the earliest of these calls.
        in_calls = f"call_id IN ({_placeholders(call_ids)})"
        rows = self._db.execute(
            f"SELECT * FROM queue_entries WHERE {in_calls}"
            f" AND entered_at >= (SELECT MIN(started_at) FROM calls WHERE {in_calls}) ORDER BY entered_at",
            (*call_ids, *call_ids),
        )
        return [QueueEntryRow(**row) for row in rows]

    def close_waiting_entries(self, at: float) -> int:
        """After a restart nobody is still waiting on a dead connection: close what was left open at
        ``at`` (the server's last alive mark), or when it entered if that was later."""
        cursor = self._db.execute(
            "UPDATE queue_entries SET left_at = MAX(entered_at, ?), result = 'dropped'"
            " WHERE result = 'waiting'",
            (at,),
        )
        return cursor.rowcount

    # ----- agents --------------------------------------------------------------------------------

    def save_agent(self, account: AgentAccount) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO agents (username, password_hash, salt, role, languages, queues,"
            " ui_language, time_zone) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account.username, account.password_hash, account.salt, account.role,
                json.dumps(list(account.languages)), json.dumps(list(account.queues)), account.ui_language,
                account.time_zone,
            ),
        )  # fmt: skip

    def get_agent(self, username: str) -> AgentAccount | None:
        row = self._db.execute("SELECT * FROM agents WHERE username = ?", (username,)).fetchone()
        if row is None:
            return None
        values = dict(row)
        values["languages"] = tuple(json.loads(values["languages"]))
        values["queues"] = tuple(json.loads(values["queues"]))
        return AgentAccount(**values)

    # ----- wrap-up -------------------------------------------------------------------------------

    def save_pending_wrap_up(self, row: PendingWrapUp) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO pending_wrap_ups VALUES (?, ?, ?, ?, ?)",
            (row.agent, row.call_id, row.talk_started_at, row.talk_ended_at, row.hold_s),
        )

    def pending_wrap_ups(self) -> list[PendingWrapUp]:
        return [PendingWrapUp(**row) for row in self._db.execute("SELECT * FROM pending_wrap_ups")]

    def save_disposition(self, row: DispositionRow) -> None:
        """Stores the disposition and closes the agent's pending wrap-up of that call, together."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO dispositions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.call_id, row.agent, row.disposition, row.notes,
                    row.talk_started_at, row.talk_ended_at, row.wrapup_ended_at, row.hold_s,
                ),
            )  # fmt: skip
            self._db.execute(
                "DELETE FROM pending_wrap_ups WHERE agent = ? AND call_id = ?", (row.agent, row.call_id)
            )

    def dispositions_since(self, since: float) -> list[DispositionRow]:
        rows = self._db.execute("SELECT * FROM dispositions WHERE talk_started_at >= ?", (since,))
        return [DispositionRow(**row) for row in rows]

    def dispositions_of(self, call_id: str) -> list[DispositionRow]:
        rows = self._db.execute(
            "SELECT * FROM dispositions WHERE call_id = ? ORDER BY talk_started_at", (call_id,)
        )
        return [DispositionRow(**row) for row in rows]

    def dispositions_of_calls(self, call_ids: Sequence[str]) -> list[DispositionRow]:
        rows = self._db.execute(
            f"SELECT * FROM dispositions WHERE call_id IN ({_placeholders(call_ids)})"
            " ORDER BY talk_started_at",
            call_ids,
        )
        return [DispositionRow(**row) for row in rows]

    # ----- agents' states ------------------------------------------------------------------------

    def agent_state_changed(self, agent: str, state: str | None, at: float) -> None:
        """Ends the agent's current state at ``at`` and, unless ``state`` is None (logged out),
        starts that one."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE agent_states SET ended_at = ? WHERE agent = ? AND ended_at IS NULL", (at, agent)
            )
            if state is not None:
                self._db.execute(
                    "INSERT INTO agent_states (agent, state, started_at) VALUES (?, ?, ?)", (agent, state, at)
                )

    def agent_states_since(self, since: float) -> list[AgentStateRow]:
        """The states that were on at any time from ``since`` (those still on have no end)."""
        rows = self._db.execute(
            "SELECT agent, state, started_at, ended_at FROM agent_states"
            " WHERE ended_at IS NULL OR ended_at > ? ORDER BY started_at",
            (since,),
        )
        return [AgentStateRow(**row) for row in rows]

    def close_agent_states(self, at: float) -> int:
        """After a restart no agent is still in a state the stopped run left on: it ended at ``at``
        (the last alive mark), or when it started if that was later."""
        cursor = self._db.execute(
            "UPDATE agent_states SET ended_at = MAX(started_at, ?) WHERE ended_at IS NULL", (at,)
        )
        return cursor.rowcount

    # ----- web sessions --------------------------------------------------------------------------

    def save_web_session(self, row: WebSessionRow) -> None:
        self._db.execute(
            "INSERT INTO web_sessions VALUES (?, ?, ?, ?, ?)",
            (row.token_hash, row.username, row.created_at, row.last_seen_at, row.expires_at),
        )

    def get_web_session(self, token_hash: str) -> WebSessionRow | None:
        """The session with the account's role now; none once the account is gone."""
        row = self._db.execute(
            "SELECT s.*, a.role FROM web_sessions s JOIN agents a USING (username) WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        return WebSessionRow(**row) if row else None

    def touch_web_session(self, token_hash: str, at: float) -> None:
        self._db.execute("UPDATE web_sessions SET last_seen_at = ? WHERE token_hash = ?", (at, token_hash))

    def end_web_session(self, token_hash: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))

    def purge_web_sessions(self, now: float, idle_since: float) -> int:
        """Deletes the sessions past their absolute expiry or not seen since ``idle_since``."""
        cursor = self._db.execute(
            "DELETE FROM web_sessions WHERE expires_at <= ? OR last_seen_at <= ?", (now, idle_since)
        )
        return cursor.rowcount

    # ----- callbacks -----------------------------------------------------------------------------

    def add_callback(self, record: HandoffRecord, at: float) -> int:
        cursor = self._db.execute(
            "INSERT INTO callbacks (call_id, caller_id, queue, requested_at, record) VALUES (?, ?, ?, ?, ?)",
            (record.call_id, record.caller_id, record.queue, at, json.dumps(record.to_dict())),
        )
        return int(cursor.lastrowid or 0)

    def callback_finished(self, callback_id: int, result: str, at: float) -> None:
        self._db.execute(
            "UPDATE callbacks SET status = 'done', result = ?, finished_at = ? WHERE id = ?",
            (result, at, callback_id),
        )

    def pending_callbacks(self) -> list[CallbackRequest]:
        rows = self._db.execute("SELECT * FROM callbacks WHERE status = 'pending' ORDER BY requested_at")
        return [_callback(row) for row in rows]

    def callbacks_of(self, call_ids: Sequence[str]) -> list[CallbackRequest]:
        # No index by call: the table holds only callback requests, few beside the calls.
        rows = self._db.execute(
            f"SELECT * FROM callbacks WHERE call_id IN ({_placeholders(call_ids)}) ORDER BY requested_at",
            call_ids,
        )
        return [_callback(row) for row in rows]
