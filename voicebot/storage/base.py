"""The storage interface and its row types (times are wall-clock ``time.time()`` seconds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from voicebot.events import CallEvent
from voicebot.handoff.record import HandoffRecord


@dataclass(frozen=True)
class CallRow:
    call_id: str
    caller_id: str
    language: str
    started_at: float
    ended_at: float | None
    # contained | escalated | abandoned | interrupted (cut by a server crash or kill, closed at the
    # next start); None while the call is live
    outcome: str | None
    end_reason: str | None
    account_key: str | None = None  # the account's hash once the caller authenticated (lockout.account_key)


@dataclass(frozen=True)
class QueueEntryRow:
    id: int
    call_id: str
    queue: str
    entered_at: float
    left_at: float | None
    result: str  # waiting | answered | abandoned | callback | dropped (server stopped)
    agent: str | None

    @property
    def waited_s(self) -> float | None:
        return None if self.left_at is None else self.left_at - self.entered_at


@dataclass(frozen=True)
class AgentAccount:
    username: str
    password_hash: bytes
    salt: bytes
    role: str  # agent | supervisor | admin
    languages: tuple[str, ...] = ("en",)  # the callers' languages this agent speaks
    queues: tuple[str, ...] = ()  # the queues this agent serves; empty: every queue
    ui_language: str = "en"  # the language of the desk's labels
    time_zone: str | None = None  # an IANA zone the desk shows times in; None: the browser's


@dataclass(frozen=True)
class DispositionRow:
    call_id: str
    agent: str
    disposition: str  # resolved | follow_up | transferred
    notes: str
    talk_started_at: float
    talk_ended_at: float
    wrapup_ended_at: float
    hold_s: float = 0.0  # the time the caller spent on hold during this agent's talk

    @property
    def handle_s(self) -> float:
        """Talk (hold included) plus wrap-up."""
        return self.wrapup_ended_at - self.talk_started_at


@dataclass(frozen=True)
class WebSessionRow:
    """A signed-in browser: only the SHA-256 of its cookie's token is stored, never the token."""

    token_hash: str
    username: str
    role: str  # the account's role now (a changed role applies at once, a deleted account ends it)
    created_at: float
    last_seen_at: float
    expires_at: float  # absolute: the session ends then however active it is


@dataclass(frozen=True)
class PendingWrapUp:
    """An agent's answered call without its disposition yet, from the accept until the wrap-up is
    submitted: a desk that drops or a server that restarts finds it again."""

    agent: str
    call_id: str
    talk_started_at: float
    talk_ended_at: float | None  # None: still talking (or the server stopped during the talk)
    hold_s: float = 0.0


@dataclass(frozen=True)
class AgentStateRow:
    """One stretch of an agent in one state (see voicebot.handoff.queue.AGENT_STATES); ``ended_at``
    None: the state is on now."""

    agent: str
    state: str
    started_at: float
    ended_at: float | None


@dataclass(frozen=True)
class CallbackRequest:
    id: int
    call_id: str
    caller_id: str
    queue: str
    requested_at: float
    status: str  # pending | done
    record: dict[str, Any]
    result: str | None = None  # once done: answered | busy | no_answer | failed
    finished_at: float | None = None


class Storage(Protocol):
    # calls and their traces
    def call_started(self, call_id: str, caller_id: str, language: str, at: float) -> None: ...
    def call_ended(self, call_id: str, outcome: str, reason: str, at: float) -> None: ...
    def set_call_language(self, call_id: str, language: str) -> None: ...
    def set_call_account(self, call_id: str, account_key: str) -> None: ...
    def get_call(self, call_id: str) -> CallRow | None: ...
    def calls_since(self, since: float) -> list[CallRow]: ...
    def previous_calls(
        self, caller_id: str | None, account_key: str | None, before: float, limit: int
    ) -> list[CallRow]: ...
    def add_trace_events(self, events: list[CallEvent], wall_offset: float) -> None: ...
    def buffer_trace_event(self, event: CallEvent, wall_offset: float) -> None: ...
    def flush_trace_events(self) -> int: ...
    def trace_events(self, call_id: str) -> list[dict[str, Any]]: ...
    def trace_events_of(self, call_ids: Sequence[str], types: Sequence[str]) -> list[dict[str, Any]]: ...
    def turn_latencies_since(self, since: float) -> list[float]: ...
    def escalations_since(self, since: float) -> list[tuple[str, str]]: ...
    # crash recovery: the server's alive mark, and the calls a crash left without an end
    def mark_alive(self, at: float) -> None: ...
    def last_alive(self) -> float | None: ...
    def close_cut_calls(self, alive_at: float | None, reason: str) -> int: ...
    # deleting calls: a caller's request, and retention
    def forget_caller(self, caller_id: str) -> int: ...
    def delete_calls_ended_before(self, at: float) -> int: ...
    # handoffs
    def save_handoff(self, record: HandoffRecord) -> None: ...
    def get_handoff(self, call_id: str) -> dict[str, Any] | None: ...
    def handoffs_of(self, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    # queue
    def queue_entered(self, call_id: str, queue: str, at: float) -> int: ...
    def queue_left(self, entry_id: int, result: str, at: float, agent: str | None = None) -> None: ...
    def queue_entries_since(self, since: float) -> list[QueueEntryRow]: ...
    def queue_entries_of(self, call_ids: Sequence[str]) -> list[QueueEntryRow]: ...
    def close_waiting_entries(self, at: float) -> int: ...
    # agents
    def save_agent(self, account: AgentAccount) -> None: ...
    def get_agent(self, username: str) -> AgentAccount | None: ...
    # wrap-up
    def save_pending_wrap_up(self, row: PendingWrapUp) -> None: ...
    def pending_wrap_ups(self) -> list[PendingWrapUp]: ...
    def save_disposition(self, row: DispositionRow) -> None: ...
    def dispositions_since(self, since: float) -> list[DispositionRow]: ...
    def dispositions_of(self, call_id: str) -> list[DispositionRow]: ...
    def dispositions_of_calls(self, call_ids: Sequence[str]) -> list[DispositionRow]: ...
    # agents' states over time
    def agent_state_changed(self, agent: str, state: str | None, at: float) -> None: ...
    def agent_states_since(self, since: float) -> list[AgentStateRow]: ...
    def close_agent_states(self, at: float) -> int: ...
    # web sessions
    def save_web_session(self, row: WebSessionRow) -> None: ...
    def get_web_session(self, token_hash: str) -> WebSessionRow | None: ...
    def touch_web_session(self, token_hash: str, at: float) -> None: ...
    def end_web_session(self, token_hash: str) -> None: ...
    def purge_web_sessions(self, now: float, idle_since: float) -> int: ...
    # callbacks
    def add_callback(self, record: HandoffRecord, at: float) -> int: ...
    def callback_finished(self, callback_id: int, result: str, at: float) -> None: ...
    def pending_callbacks(self) -> list[CallbackRequest]: ...
    def callbacks_of(self, call_ids: Sequence[str]) -> list[CallbackRequest]: ...
    def close(self) -> None: ...
