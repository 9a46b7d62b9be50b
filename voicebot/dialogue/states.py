"""The dialogue's states: what the caller's next turn answers.

One small class per state. Each takes an understood utterance or a key and moves the dialogue on
through the :class:`Moves` it is given (enter a node, fill a slot, escalate, ...); the dialogue
collects what they say into its outputs.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Protocol

from voicebot.asr.base import RecognitionHints
from voicebot.config import PolicyConfig
from voicebot.dialogue.flow import Node, Prompts, SlotSpec
from voicebot.dialogue.policy import Decision, decide, yes_or_no
from voicebot.nlu.base import NluResult
from voicebot.nlu.numbers import parse_amount, spoken_digits


class Moves(Protocol):
    """What a state may do to the dialogue (implemented by the DialogueManager)."""

    policy: PolicyConfig
    language: str  # the call's language, which numbers in the caller's words are read in

    def route(self, result: NluResult) -> None: ...
    def accept(self, result: NluResult, trigger: str) -> None: ...
    def would_accept(self, result: NluResult) -> bool: ...
    def remember_intent(self, result: NluResult, decision: str) -> None: ...
    def pressed(self, key: str) -> None: ...
    def menu_key(self, node: Node, key: str) -> None: ...
    def global_key(self, key: str) -> None: ...
    def fill_slot(self, state: SlotPrompt, value: Any) -> None: ...
    def keyed_digits(self, state: SlotPrompt, digits: str) -> None: ...
    def confirmed_intent(self, state: ConfirmIntent, yes: bool) -> None: ...
    def confirmed_task(self, state: ConfirmTask, yes: bool) -> None: ...
    def failure(self, kind: str, reason: str, prompt: str = "") -> None: ...
    def ask(self, prompt_id: str) -> None: ...
    def repeat_question(self) -> None: ...
    def reask_menu(self, node: Node, examples: bool) -> None: ...
    def back_to_menu(self, result: NluResult) -> None: ...


class State:
    secret = False  # the answer is a secret (a PIN): kept out of traces and transcripts
    collecting_digits = False
    # The caller's answer is a request (not a slot value or a yes/no): the NLU may choose among the
    # recogniser's hypotheses the one it understands.
    takes_request = False

    def __init__(self, node: Node) -> None:
        self.node = node

    def hints(self, prompts: Prompts) -> RecognitionHints:
        return RecognitionHints(phrases=tuple(prompts.intent_labels.values())[:8])

    def on_result(self, moves: Moves, text: str, result: NluResult) -> None:
        moves.route(result)

    def pick_transcript(self, text: str, alternatives: tuple[str, ...], language: str = "en") -> str:
        """The recogniser's best transcript, or one of its alternatives that answers this state
        where the best one does not."""
        return text

    def accepts_key(self, key: str) -> bool:
        """False for a '#' that ends nothing (a terminator after a slot already filled)."""
        return key != "#"

    def on_key(self, moves: Moves, key: str) -> None:
        if self.accepts_key(key):
            moves.pressed(key)
            self.on_pressed(moves, key)

    def on_pressed(self, moves: Moves, key: str) -> None:
        moves.global_key(key)

    def reask(self, moves: Moves, examples: bool) -> None:
        moves.reask_menu(self.node, examples)


class Menu(State):
    """A node that asks ("How can I help you today?"): routes, keys, plain-language navigation."""

    takes_request = True

    def on_pressed(self, moves: Moves, key: str) -> None:
        if key in self.node.dtmf:
            moves.menu_key(self.node, key)
        else:
            moves.global_key(key)


class SlotPrompt(State):
    """A question for one slot (an amount, an account type, a spoken account number)."""

    def __init__(self, node: Node, slot: SlotSpec, *, for_auth: bool) -> None:
        super().__init__(node)
        self.slot = slot
        self.for_auth = for_auth  # the caller is identifying before the node's task
        self.secret = slot.secret

    def on_result(self, moves: Moves, text: str, result: NluResult) -> None:
        value = slot_value(self.slot, text, result, language=moves.language)
        if value is not None:
            moves.remember_intent(result, "slot")
            moves.fill_slot(self, value)
        elif moves.would_accept(result):
            # Not an answer, but a clear request: the caller changed their mind or asked for a person.
            moves.remember_intent(result, Decision.ACCEPT.value)
            moves.accept(result, trigger=result.intent.name)
        else:
            moves.remember_intent(result, decide(result, moves.policy).value)
            moves.failure("no_match", "slot_not_understood", prompt="slot_invalid")

    def reask(self, moves: Moves, examples: bool) -> None:
        moves.ask(self.slot.prompt)


class KeyCollection(SlotPrompt):
    """A digits slot: spoken digits, or keys collected until '#' or the slot's length."""

    collecting_digits = True

    def __init__(self, node: Node, slot: SlotSpec, *, for_auth: bool) -> None:
        super().__init__(node, slot, for_auth=for_auth)
        self.keyed = ""

    def hints(self, prompts: Prompts) -> RecognitionHints:
        return dataclasses.replace(_grammar_hints(prompts, "digits"), digits=self.slot.length or 0)

    def pick_transcript(self, text: str, alternatives: tuple[str, ...], language: str = "en") -> str:
        # On the phone a digit or two often comes out as letters ("1 2 3 4 5 6 MNA"); a hypothesis
        # further down the n-best list with exactly the slot's number of digits is the answer.
        length = self.slot.length
        if not length or len(spoken_digits(text, language=language)) == length:
            return text
        return next((a for a in alternatives if len(spoken_digits(a, language=language)) == length), text)

    def accepts_key(self, key: str) -> bool:
        return key != "#" or bool(self.keyed)

    def on_key(self, moves: Moves, key: str) -> None:
        if not (key.isdigit() or key == "#"):
            super().on_key(moves, key)
            return
        if key != "#":
            self.keyed += key
        if key == "#" or (self.slot.length and len(self.keyed) >= self.slot.length):
            digits, self.keyed = self.keyed, ""
            moves.keyed_digits(self, digits)


class Confirmation(State):
    """A yes/no question, answered by voice or by the flow's confirm keys."""

    def __init__(self, node: Node, confirm_keys: dict[str, bool]) -> None:
        super().__init__(node)
        self._confirm_keys = confirm_keys

    def hints(self, prompts: Prompts) -> RecognitionHints:
        return _grammar_hints(prompts, "yes_no")

    def on_result(self, moves: Moves, text: str, result: NluResult) -> None:
        answer = yes_or_no(result, moves.policy)
        moves.remember_intent(result, "confirm")
        if answer is None:
            moves.back_to_menu(result)  # not a yes/no: a fresh request
        else:
            self.answered(moves, answer)

    def on_pressed(self, moves: Moves, key: str) -> None:
        if key in self._confirm_keys:
            self.answered(moves, self._confirm_keys[key])
        else:
            moves.global_key(key)

    def answered(self, moves: Moves, yes: bool) -> None:
        raise NotImplementedError

    def reask(self, moves: Moves, examples: bool) -> None:
        moves.repeat_question()


class ConfirmIntent(Confirmation):
    """ "Just to check, you want to report a lost card?" for a mid-confidence understanding."""

    def __init__(self, node: Node, confirm_keys: dict[str, bool], intent: NluResult) -> None:
        super().__init__(node, confirm_keys)
        self.intent = intent

    def answered(self, moves: Moves, yes: bool) -> None:
        moves.confirmed_intent(self, yes)


class ConfirmTask(Confirmation):
    """ "Move 50 dollars from savings to checking?" before a task's action runs."""

    def answered(self, moves: Moves, yes: bool) -> None:
        moves.confirmed_task(self, yes)


class Done(State):
    """The call is leaving (goodbye or the transfer prompt playing): nothing more is taken."""

    def on_result(self, moves: Moves, text: str, result: NluResult) -> None:
        return None

    def accepts_key(self, key: str) -> bool:
        return False


def _grammar_hints(prompts: Prompts, name: str) -> RecognitionHints:
    words = prompts.grammars.get(name)
    return RecognitionHints(phrases=words or (), grammar=words)


def slot_value(slot: SlotSpec, text: str, result: NluResult, *, language: str = "en") -> Any:
    """The slot's value in what the caller said (numbers read in the call's language), or None."""
    if slot.kind == "digits":
        return spoken_digits(text, language=language) or None
    if slot.kind == "amount":
        entity = result.entity("amount")
        return entity.value if entity else parse_amount(text, language=language)
    entity = result.entity(slot.entity)
    return entity.value if entity else None


def prefilled_slots(slots: tuple[SlotSpec, ...], result: NluResult, filled: set[str]) -> dict[str, Any]:
    """Slots said with the request ("move 50 dollars from savings to checking")."""
    values: dict[str, Any] = {}
    text = result.text.lower()
    for entity in result.entities:
        candidates = [
            s
            for s in slots
            if s.kind != "digits"
            and s.entity == entity.entity
            and s.name not in filled
            and s.name not in values
        ]
        if not candidates:
            continue
        slot = candidates[0]
        if len(candidates) > 1 and entity.start is not None:
            # Several slots take this entity (from/to accounts): the word before it decides.
            before = re.findall(r"[a-z]+", text[: entity.start])
            cue = before[-1] if before else ""
            slot = next((s for s in candidates if s.name.startswith(cue + "_")), candidates[0])
        values[slot.name] = entity.value
    return values
