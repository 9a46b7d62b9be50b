"""The handoff record ("screen pop"): everything the bot learned, so the caller never repeats it."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.handoff.redact import WITHHELD, mask_digits


@dataclass(frozen=True)
class IntentTurn:
    turn: int
    text: str
    intent: str
    confidence: float
    decision: str


@dataclass(frozen=True)
class TranscriptLine:
    speaker: str  # "Caller" | "Bot"
    text: str


@dataclass
class HandoffRecord:
    call_id: str
    reason: str
    queue: str
    caller_id: str
    language: str
    auth_level: str  # none | identified | authenticated
    intents: list[IntentTurn] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    menu_path: list[str] = field(default_factory=list)
    transcript: list[TranscriptLine] = field(default_factory=list)
    asr_alternatives: list[list[str]] = field(default_factory=list)
    dtmf: list[str] = field(default_factory=list)
    detail: str = ""
    created_at: float = field(default_factory=time.time)
    # The authenticated account's hash (voicebot.dialogue.lockout.account_key): the caller's earlier
    # contacts by account. The account itself stays in this process (the agent's customer panel
    # is fetched with it) and is never in to_dict: not stored, not sent, not logged.
    account_key: str | None = None
    account: str | None = field(default=None, repr=False)

    def summary(self) -> str:
        """One line an agent reads first."""
        intent = self.intents[-1] if self.intents else None
        wanted = f"{intent.intent} ({intent.confidence:.2f})" if intent else "no intent"
        path = " > ".join(self.menu_path)
        return f"{self.reason}: caller wanted {wanted}; auth {self.auth_level}; path {path}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["account"]
        return {**data, "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HandoffRecord:
        """The record again from :meth:`to_dict` (as stored); the summary is derived, not read."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in data.items() if name in names}
        values["intents"] = [IntentTurn(**turn) for turn in data.get("intents", [])]
        values["transcript"] = [TranscriptLine(**line) for line in data.get("transcript", [])]
        return cls(**values)


def masked_slot_value(value: Any, *, secret: bool, digits: bool) -> Any:
    if secret:
        return WITHHELD
    if digits and isinstance(value, str):
        return mask_digits(value, keep_last=4)
    return value


class CallStore:
    """Finished calls' handoff records and summaries as JSON files (the agent queue reads them)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save_handoff(self, record: HandoffRecord) -> Path:
        target = self.root / "handoffs" / f"{record.call_id}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(record.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(target)
        return target

    def load_handoff(self, call_id: str) -> dict[str, Any]:
        return json.loads((self.root / "handoffs" / f"{call_id}.json").read_text(encoding="utf-8"))

    def forget_caller(self, caller_id: str) -> int:
        """Deletes the handoff records of ``caller_id``'s calls; returns how many."""
        forgotten = 0
        for path in sorted((self.root / "handoffs").glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not one of ours, or being replaced: left as it is
            if isinstance(record, dict) and record.get("caller_id") == caller_id:
                path.unlink(missing_ok=True)
                forgotten += 1
        return forgotten
