"""A caller's previous contacts for the agent's screen pop: the calls from the same caller id or
about the same account, newest first, and whether this call repeats recent ones about the same thing.
Everything read here was redacted when it was stored; nothing is unmasked."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from voicebot.events import AgentLegSpeech, NluParsed
from voicebot.storage import CallRow, DispositionRow, Storage

DAY_S = 86400.0
NOTES_MAX_CHARS = 500  # per disposition: the history is a glance, the full notes stay in storage
# Caller ids that say nothing about who called: they never match by caller id. (A browser
# softphone's "web-..." id is one per browser, so it does.)
WITHHELD_CALLER_IDS = frozenset({"", "anonymous", "unknown", "restricted", "private"})
# Intents about how the conversation goes rather than what the caller wanted: never a repeat
# call's topic.
GENERIC_INTENTS = frozenset(
    {
        "greet", "goodbye", "affirm", "deny", "talk_to_agent", "out_of_scope", "help", "repeat", "go_back",
        "nlu_fallback",  # Rasa's "not understood"
    }
)  # fmt: skip


def caller_history(
    storage: Storage,
    *,
    call_id: str,
    caller_id: str,
    account_key: str | None,
    now: float,
    limit: int = 10,
    repeat_window_s: float = 7 * DAY_S,
) -> dict[str, Any]:
    """``{"contacts": [...], "repeat": {...} | None}`` (JSON-ready) for call ``call_id``: at most
    ``limit`` calls started before ``now``, and the repeat flag counted over those of them in the
    last ``repeat_window_s``."""
    by_caller_id = None if caller_id.strip().lower() in WITHHELD_CALLER_IDS else caller_id
    # One more than asked for: the current call itself may be among them.
    calls = [
        call
        for call in storage.previous_calls(by_caller_id, account_key, before=now, limit=limit + 1)
        if call.call_id != call_id
    ][:limit]
    contacts = _contacts(storage, calls, by_caller_id, account_key)
    recent = [contact for contact in contacts if contact["started_at"] >= now - repeat_window_s]
    return {"contacts": contacts, "repeat": _repeat(recent, repeat_window_s)}


def _contacts(
    storage: Storage, calls: Sequence[CallRow], caller_id: str | None, account_key: str | None
) -> list[dict[str, Any]]:
    """The calls with what became of them: one query per table for all of them."""
    if not calls:
        return []
    call_ids = [call.call_id for call in calls]
    handoffs = storage.handoffs_of(call_ids)
    # In the order they entered: a call's last queue entry is what became of it.
    queue_results = {entry.call_id: entry.result for entry in storage.queue_entries_of(call_ids)}
    handled: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in storage.dispositions_of_calls(call_ids):
        handled[row.call_id].append(_handled(row))
    callback_pending = {cb.call_id for cb in storage.callbacks_of(call_ids) if cb.status == "pending"}
    transcripts: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
    parsed_intents: defaultdict[str, list[str]] = defaultdict(list)
    for event in storage.trace_events_of(call_ids, (AgentLegSpeech.type, NluParsed.type)):
        if event["type"] == AgentLegSpeech.type:
            transcripts[event["call_id"]].append({"speaker": event["speaker"], "text": event["text"]})
        else:
            parsed_intents[event["call_id"]].append(event["intent"])
    contacts = []
    for call in calls:
        handoff = handoffs.get(call.call_id)
        # A call the bot kept has no handoff: what it understood is in the trace.
        intents = [turn["intent"] for turn in handoff["intents"]] if handoff else parsed_intents[call.call_id]
        contacts.append(
            {
                "call_id": call.call_id,
                "started_at": call.started_at,
                "language": call.language,
                "matched_by": _matched_by(call, caller_id, account_key),
                "intents": _unique(intents),
                "outcome": call.outcome,
                "queue_result": queue_results.get(call.call_id),
                "handled": handled[call.call_id],
                "callback_pending": call.call_id in callback_pending,
                "transcript": transcripts[call.call_id],
                "summary": handoff.get("summary") if handoff else None,
            }
        )
    return contacts


def _matched_by(call: CallRow, caller_id: str | None, account_key: str | None) -> str:
    by_caller_id = caller_id is not None and call.caller_id == caller_id
    by_account = account_key is not None and call.account_key == account_key
    if by_caller_id and by_account:
        return "both"
    return "caller_id" if by_caller_id else "account"


def _handled(row: DispositionRow) -> dict[str, Any]:
    notes = row.notes if len(row.notes) <= NOTES_MAX_CHARS else row.notes[: NOTES_MAX_CHARS - 1] + "…"
    return {
        "agent": row.agent,
        "disposition": row.disposition,
        "notes": notes,
        "talk_s": round(row.talk_ended_at - row.talk_started_at, 1),
        "hold_s": round(row.hold_s, 1),
    }


def _unique(names: Iterable[str]) -> list[str]:
    """In order, each once."""
    return list(dict.fromkeys(names))


def _repeat(recent: list[dict[str, Any]], window_s: float) -> dict[str, Any] | None:
    """``count`` includes this call; ``topic`` is the specific intent most of the recent contacts
    had (each contact's intents are unique, so it counts contacts; a tie goes to the newest)."""
    if not recent:
        return None
    topics = Counter(
        intent for contact in recent for intent in contact["intents"] if intent not in GENERIC_INTENTS
    )
    topic, topic_count = topics.most_common(1)[0] if topics else (None, 0)
    return {
        "count": len(recent) + 1,
        "window_days": round(window_s / DAY_S),
        "topic": topic,
        "topic_count": topic_count,
    }
