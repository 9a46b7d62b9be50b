"""Backend actions a flow node can call by name (the flow is data; actions are the only code)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicebot.dialogue.lockout import AttemptStore, MemoryAttemptStore

log = logging.getLogger("voicebot.dialogue")


@dataclass
class ActionContext:
    """What an action sees: the call's slots, who the caller proved to be and the call's language."""

    slots: dict[str, Any]
    caller_id: str
    account: str | None = None  # set once the caller is authenticated
    language: str = "en"  # what the values an action returns are spoken in (speech_format's language)
    # How the call's language says the flow's canonical values ("checking" -> "corriente"), for the
    # words an action writes itself; the values it returns stay canonical (the prompts say them).
    value_words: dict[str, str] = field(default_factory=dict)

    def word_for(self, value: str) -> str:
        return self.value_words.get(value, value)


@dataclass
class ActionResult:
    """Values for the node's prompt template, or a failure with the prompt id to say instead."""

    values: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    error_prompt: str | None = None


Action = Callable[[ActionContext], ActionResult]


@dataclass(frozen=True)
class PanelTable:
    """One table of the customer panel (accounts, transactions, ...); every cell a display string."""

    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class CustomerPanel:
    """What the backend knows of an authenticated caller, for the agent who takes the call: already
    masked by the plugin, every value a display string."""

    title: str  # who the caller is, e.g. the holder's name
    facts: list[tuple[str, str]] = field(default_factory=list)  # (label, value)
    tables: list[PanelTable] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"title", "facts": [[label, value]], "tables": [{"title", "columns", "rows"}]}."""
        return {
            "title": self.title,
            "facts": [[label, value] for label, value in self.facts],
            "tables": [
                {
                    "title": table.title,
                    "columns": list(table.columns),
                    "rows": [list(row) for row in table.rows],
                }
                for table in self.tables
            ],
        }


CustomerView = Callable[[ActionContext], CustomerPanel | None]


class ActionRegistry:
    """Maps action names used in flow files to callables; holds where the identification attempts of
    every call are counted (voicebot/dialogue/lockout.py), which a plugin may replace with its own,
    and the plugin's view of an authenticated caller for the agent's screen pop (none by default)."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}
        self.identification_attempts: AttemptStore = MemoryAttemptStore()
        self.customer_view: CustomerView | None = None

    def register(self, name: str, action: Action) -> None:
        self._actions[name] = action

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        return sorted(self._actions)

    def run(self, name: str, context: ActionContext) -> ActionResult:
        return self._actions[name](context)

    def customer_panel(self, context: ActionContext) -> CustomerPanel | None:
        """The plugin's panel of the authenticated caller; None without a view, before the caller is
        authenticated, or when the view fails (a broken backend must not break the agent's screen pop)."""
        if self.customer_view is None or context.account is None:
            return None
        try:
            return self.customer_view(context)
        except Exception:
            log.exception("the customer view failed; the agent gets no customer panel")
            return None
