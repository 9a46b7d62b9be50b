"""Builds the handoff record from what the dialogue remembers of the call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voicebot.handoff.record import HandoffRecord, IntentTurn, TranscriptLine, masked_slot_value
from voicebot.handoff.redact import account_key


@dataclass
class CallMemory:
    """Everything an agent should not have to ask again."""

    intents: list[IntentTurn] = field(default_factory=list)
    transcript: list[TranscriptLine] = field(default_factory=list)
    menu_path: list[str] = field(default_factory=list)
    alternatives: list[list[str]] = field(default_factory=list)
    dtmf: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SlotPrivacy:
    secret: bool = False  # never leaves the dialogue (a PIN)
    digits: bool = False  # masked to the last four


def build_handoff_record(
    memory: CallMemory,
    *,
    call_id: str,
    caller_id: str,
    language: str,
    reason: str,
    queue: str,
    slots: dict[str, Any],
    privacy: dict[str, SlotPrivacy],
    account: str | None,
    detail: str = "",
) -> HandoffRecord:
    masked: dict[str, Any] = {}
    for name, value in slots.items():
        rule = privacy.get(name, SlotPrivacy())
        masked[name] = masked_slot_value(value, secret=rule.secret, digits=rule.digits)
    auth_level = "authenticated" if account else "identified" if slots.get("account_number") else "none"
    if account:
        masked["account_number"] = masked_slot_value(account, secret=False, digits=True)
    return HandoffRecord(
        call_id=call_id,
        reason=reason,
        queue=queue,
        caller_id=caller_id,
        language=language,
        auth_level=auth_level,
        intents=list(memory.intents),
        slots=masked,
        menu_path=list(memory.menu_path),
        transcript=list(memory.transcript),
        asr_alternatives=list(memory.alternatives),
        dtmf=list(memory.dtmf),
        detail=detail,
        account_key=account_key(account) if account else None,
        account=account,
    )
