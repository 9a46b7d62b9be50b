"""Backend actions a flow node can call by name (the flow is data; actions are the only code)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicebot.dialogue.lockout import AttemptStore, MemoryAttemptStore


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


class ActionRegistry:
    """Maps action names used in flow files to callables; holds where the identification attempts of
    every call are counted (voicebot/dialogue/lockout.py), which a plugin may replace with its own."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}
        self.identification_attempts: AttemptStore = MemoryAttemptStore()

    def register(self, name: str, action: Action) -> None:
        self._actions[name] = action

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        return sorted(self._actions)

    def run(self, name: str, context: ActionContext) -> ActionResult:
        return self._actions[name](context)
