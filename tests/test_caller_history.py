"""The caller's previous contacts on the agent's screen pop (voicebot/server/history.py), read from
a real SQLite store filled through the storage's own methods."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voicebot.events import AgentLegSpeech, NluParsed
from voicebot.handoff.record import HandoffRecord, IntentTurn
from voicebot.server.history import DAY_S, NOTES_MAX_CHARS, caller_history
from voicebot.storage import DispositionRow, SqliteStorage

NOW = 1_700_000_000.0
CALLER = "+15550100"
ACCOUNT = "9f" * 32  # an account's SHA-256, as lockout.account_key gives it
CURRENT = "current"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "calls.sqlite")
    yield storage
    storage.close()


def bot_call(
    storage: SqliteStorage,
    call_id: str,
    days_ago: float,
    *,
    caller_id: str = CALLER,
    account_key: str | None = None,
    intents: tuple[str, ...] = (),
    outcome: str = "contained",
) -> float:
    """A call the bot kept (what it understood only in the trace); returns when it started."""
    started = NOW - days_ago * DAY_S
    storage.call_started(call_id, caller_id, "en", at=started)
    if account_key is not None:
        storage.set_call_account(call_id, account_key)
    storage.add_trace_events(
        [NluParsed(call_id=call_id, text="...", intent=name, confidence=0.9) for name in intents],
        wall_offset=0.0,
    )
    storage.call_ended(call_id, outcome, "hangup", at=started + 60)
    return started


def escalated_call(
    storage: SqliteStorage,
    call_id: str,
    days_ago: float,
    intents: tuple[str, ...],
    *,
    queue_result: str = "answered",
    caller_id: str = CALLER,
) -> HandoffRecord:
    """A call the bot handed to the ``cards`` queue, which it left with ``queue_result``."""
    started = bot_call(storage, call_id, days_ago, caller_id=caller_id, outcome="escalated")
    record = HandoffRecord(
        call_id=call_id, reason="caller_request", queue="cards", caller_id=caller_id, language="en",
        auth_level="none", created_at=started + 20,
        intents=[IntentTurn(turn, "...", name, 0.9, "accept") for turn, name in enumerate(intents, 1)],
    )  # fmt: skip
    storage.save_handoff(record)
    entry = storage.queue_entered(call_id, "cards", at=started + 20)
    storage.queue_left(
        entry, queue_result, at=started + 30, agent="alice" if queue_result == "answered" else None
    )
    return record


def handled(
    storage: SqliteStorage, call_id: str, agent: str, disposition: str, notes: str, talk_at: float
) -> None:
    """``agent`` talked 60 s from ``talk_at`` (5 of them on hold) and wrapped up in 30."""
    storage.save_disposition(
        DispositionRow(call_id, agent, disposition, notes, talk_at, talk_at + 60, talk_at + 90, hold_s=5.0)
    )


def history(
    storage: SqliteStorage, caller_id: str = CALLER, account_key: str | None = None, limit: int = 10
) -> dict[str, Any]:
    return caller_history(
        storage, call_id=CURRENT, caller_id=caller_id, account_key=account_key, now=NOW, limit=limit
    )


def call_ids(result: dict[str, Any]) -> list[str]:
    return [contact["call_id"] for contact in result["contacts"]]


def test_each_contact_shows_when_what_the_caller_wanted_and_what_became_of_it(storage: SqliteStorage) -> None:
    bot_call(storage, "kept", 3, intents=("check_balance", "check_balance", "goodbye"))
    record = escalated_call(storage, "escalated", 1, ("check_balance", "dispute_charge", "dispute_charge"))
    handled(storage, "escalated", "alice", "resolved", "refund issued", talk_at=record.created_at + 10)
    storage.add_trace_events(
        [
            AgentLegSpeech(call_id="escalated", speaker="Caller", text="there is a charge I don't know"),
            AgentLegSpeech(call_id="escalated", speaker="alice", text="I have refunded it"),
        ],
        wall_offset=0.0,
    )

    escalated, kept = history(storage)["contacts"]

    assert escalated == {
        "call_id": "escalated",
        "started_at": NOW - DAY_S,
        "language": "en",
        "matched_by": "caller_id",
        "intents": ["check_balance", "dispute_charge"],
        "outcome": "escalated",
        "queue_result": "answered",
        "handled": [
            {
                "agent": "alice",
                "disposition": "resolved",
                "notes": "refund issued",
                "talk_s": 60.0,
                "hold_s": 5.0,
            }
        ],
        "callback_pending": False,
        "transcript": [
            {"speaker": "Caller", "text": "there is a charge I don't know"},
            {"speaker": "alice", "text": "I have refunded it"},
        ],
        "summary": record.summary(),
    }
    assert kept["intents"] == ["check_balance", "goodbye"]  # from the trace: the bot kept the call
    assert (kept["outcome"], kept["queue_result"], kept["handled"], kept["summary"]) == (
        "contained",
        None,
        [],
        None,
    )


def test_a_different_caller_id_matches_by_the_same_account_only_once_authenticated(
    storage: SqliteStorage,
) -> None:
    bot_call(storage, "from-mobile", 2, caller_id="+15550199", account_key=ACCOUNT)
    bot_call(storage, "same-line-and-account", 1, account_key=ACCOUNT)
    bot_call(storage, "same-line", 3)
    bot_call(storage, "someone-else", 1, caller_id="+15550123", account_key="00" * 32)

    authenticated = history(storage, account_key=ACCOUNT)["contacts"]
    assert [(c["call_id"], c["matched_by"]) for c in authenticated] == [
        ("same-line-and-account", "both"),
        ("from-mobile", "account"),
        ("same-line", "caller_id"),
    ]
    assert call_ids(history(storage)) == ["same-line-and-account", "same-line"]


@pytest.mark.parametrize("withheld", ["", "anonymous", "Unknown", "RESTRICTED", "private"])
def test_a_withheld_caller_id_never_matches_by_caller_id(storage: SqliteStorage, withheld: str) -> None:
    bot_call(storage, "withheld-stranger", 2, caller_id=withheld)
    bot_call(storage, "withheld-same-account", 1, caller_id=withheld, account_key=ACCOUNT)

    assert call_ids(history(storage, caller_id=withheld)) == []
    assert call_ids(history(storage, caller_id=withheld, account_key=ACCOUNT)) == ["withheld-same-account"]


def test_a_browser_softphones_id_matches(storage: SqliteStorage) -> None:
    bot_call(storage, "earlier", 1, caller_id="web-3f9a")

    assert call_ids(history(storage, caller_id="web-3f9a")) == ["earlier"]


def test_the_current_call_and_later_ones_are_left_out_and_the_limit_holds(storage: SqliteStorage) -> None:
    for day in range(1, 5):
        bot_call(storage, f"{day}-days-ago", day)
    bot_call(storage, CURRENT, 0.001)  # started just before the offer: left out by its id
    bot_call(storage, "later", -1)  # started after ``now``

    assert call_ids(history(storage)) == ["1-days-ago", "2-days-ago", "3-days-ago", "4-days-ago"]
    assert call_ids(history(storage, limit=2)) == ["1-days-ago", "2-days-ago"]


def test_a_warm_transfer_shows_both_agents_with_notes_cut_short(storage: SqliteStorage) -> None:
    record = escalated_call(storage, "transferred", 1, ("report_lost_card",))
    handled(storage, "transferred", "alice", "transferred", "x" * 2000, talk_at=record.created_at + 10)
    handled(storage, "transferred", "bob", "resolved", "card blocked", talk_at=record.created_at + 70)

    (contact,) = history(storage)["contacts"]

    assert [(h["agent"], h["disposition"]) for h in contact["handled"]] == [
        ("alice", "transferred"),
        ("bob", "resolved"),
    ]
    alices_notes = contact["handled"][0]["notes"]
    assert len(alices_notes) == NOTES_MAX_CHARS and alices_notes.endswith("…")


def test_a_callback_still_to_be_made_is_flagged(storage: SqliteStorage) -> None:
    pending = escalated_call(storage, "pending", 1, ("loan_info",), queue_result="callback")
    storage.add_callback(pending, at=pending.created_at + 30)
    made = escalated_call(storage, "made", 2, ("loan_info",), queue_result="callback")
    storage.callback_finished(storage.add_callback(made, at=made.created_at + 30), "answered", at=NOW - DAY_S)

    contacts = history(storage)["contacts"]

    assert [(c["call_id"], c["queue_result"], c["callback_pending"]) for c in contacts] == [
        ("pending", "callback", True),
        ("made", "callback", False),
    ]


def test_the_repeat_flag_counts_this_call_and_the_topic_over_the_window(storage: SqliteStorage) -> None:
    escalated_call(storage, "yesterday", 1, ("greet", "dispute_charge", "talk_to_agent"))
    bot_call(storage, "this-week", 5, intents=("check_balance", "dispute_charge"))
    bot_call(storage, "last-week", 8, intents=("dispute_charge",))

    result = history(storage)

    assert call_ids(result) == ["yesterday", "this-week", "last-week"]  # listed, but last-week not counted
    assert result["repeat"] == {"count": 3, "window_days": 7, "topic": "dispute_charge", "topic_count": 2}


def test_no_repeat_flag_without_a_recent_contact_and_no_topic_without_a_specific_intent(
    storage: SqliteStorage,
) -> None:
    bot_call(storage, "last-week", 8, intents=("dispute_charge",))
    assert history(storage)["repeat"] is None

    bot_call(storage, "yesterday", 1, intents=("greet", "talk_to_agent", "nlu_fallback"))
    assert history(storage)["repeat"] == {"count": 2, "window_days": 7, "topic": None, "topic_count": 0}


def test_the_history_takes_the_same_few_queries_however_many_contacts(storage: SqliteStorage) -> None:
    statements: list[str] = []
    storage._db.set_trace_callback(statements.append)  # the connection's SQL, as SQLite runs it

    def queries() -> int:
        statements.clear()
        history(storage)
        return len(statements)

    escalated_call(storage, "first", 1, ("pay_bill",))
    one_contact = queries()
    for day in range(2, 8):
        escalated_call(storage, f"{day}-days-ago", day, ("pay_bill",))

    assert queries() == one_contact <= 6
