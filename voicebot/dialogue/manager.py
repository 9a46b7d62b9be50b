"""The dialogue: walks the flow, fills slots, applies the confidence ladder, retries and escalates.

It knows nothing about audio: it takes understood turns (text + NLU result), DTMF keys, no-input
timeouts and stage errors, and answers with outputs (what to say, hand off, hang up). The same
manager drives audio calls and ``voicebot chat``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicebot.asr.base import RecognitionHints
from voicebot.config import PolicyConfig
from voicebot.dialogue.actions import ActionContext, ActionRegistry, ActionResult
from voicebot.dialogue.flow import Flow, GlobalRoute, Node, Prompts, SlotSpec
from voicebot.dialogue.policy import Decision, decide, yes_or_no
from voicebot.events import CallEvent, DialogueTransition, Escalated, NoInput, NoMatch
from voicebot.handoff.record import (
    HandoffRecord,
    IntentTurn,
    TranscriptLine,
    masked_slot_value,
    safe_transcript_text,
)
from voicebot.nlu.base import NluResult
from voicebot.nlu.numbers import parse_amount, spoken_digits
from voicebot.tts.speech_format import spoken_money

YES_NO_WORDS = ("yes", "yeah", "yep", "sure", "correct", "no", "nope", "agent", "repeat", "help")
DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CONFIRM_KEYS = {"1": True, "2": False}


@dataclass(frozen=True)
class Say:
    text: str
    prompt_id: str
    interruptible: bool = True
    static: bool = True  # no values filled in: can be pre-synthesised and cached


@dataclass(frozen=True)
class Handoff:
    record: HandoffRecord


@dataclass(frozen=True)
class Hangup:
    outcome: str  # contained | escalated | abandoned


Output = Say | Handoff | Hangup


@dataclass
class _Awaiting:
    """What the caller's next turn answers."""

    kind: str  # menu | slot | confirm_intent | confirm_task | done
    node: Node
    slot: SlotSpec | None = None
    for_auth: bool = False
    intent: NluResult | None = None


@dataclass
class _Memory:
    intents: list[IntentTurn] = field(default_factory=list)
    transcript: list[TranscriptLine] = field(default_factory=list)
    menu_path: list[str] = field(default_factory=list)
    alternatives: list[list[str]] = field(default_factory=list)
    dtmf: list[str] = field(default_factory=list)


class DialogueManager:
    def __init__(
        self,
        flow: Flow,
        language: str,
        actions: ActionRegistry,
        policy: PolicyConfig,
        *,
        call_id: str,
        caller_id: str,
        emit: Callable[[CallEvent], None],
    ) -> None:
        self.flow = flow
        self.prompts: Prompts = flow.prompts(language)
        self.language = language
        self.actions = actions
        self.policy = policy
        self.call_id = call_id
        self.caller_id = caller_id
        self._emit = emit
        self.slots: dict[str, Any] = {}
        self.account: str | None = None
        self.auth_attempts = 0
        self.failures = 0
        self.out_of_scope_count = 0
        self.tasks_done = 0
        self.turn = 0
        self.memory = _Memory()
        self.ended: Hangup | None = None
        self.handoff: HandoffRecord | None = None
        self._awaiting = _Awaiting("menu", flow.nodes[flow.start])
        self._after_auth: Node | None = None
        self._last_question: list[Say] = []
        self._menu_stack: list[str] = []
        self._dtmf_buffer = ""
        self._task_intent: str | None = None

    # ----- what the session asks -------------------------------------------------------------

    @property
    def node(self) -> Node:
        return self._awaiting.node

    @property
    def collecting_secret(self) -> bool:
        slot = self._awaiting.slot
        return self._awaiting.kind == "slot" and slot is not None and slot.secret

    @property
    def collecting_digits(self) -> bool:
        slot = self._awaiting.slot
        return self._awaiting.kind == "slot" and slot is not None and slot.kind == "digits"

    def hints(self) -> RecognitionHints:
        """What the next caller turn is likely to contain, for ASR biasing and grammars."""
        awaiting = self._awaiting
        if awaiting.kind in ("confirm_intent", "confirm_task"):
            return RecognitionHints(phrases=YES_NO_WORDS, grammar=YES_NO_WORDS)
        if awaiting.kind == "slot" and awaiting.slot and awaiting.slot.kind == "digits":
            return RecognitionHints(phrases=DIGIT_WORDS, grammar=(*DIGIT_WORDS, "agent", "repeat", "help"))
        labels = tuple(self.prompts.intent_labels.values())
        return RecognitionHints(phrases=labels[:8])

    # ----- inputs ------------------------------------------------------------------------------

    def start(self) -> list[Output]:
        out: list[Output] = [self._say("greeting")]
        self._enter(self.flow.nodes[self.flow.start], out, trigger="start")
        return out

    def on_utterance(self, text: str, result: NluResult, alternatives: tuple[str, ...] = ()) -> list[Output]:
        if self.ended is not None:
            return []  # the call is already leaving (goodbye or transfer prompt playing)
        self.turn += 1
        spoken = "[withheld]" if self.collecting_secret else safe_transcript_text(text)
        self.memory.transcript.append(TranscriptLine("Caller", spoken))
        if alternatives and not self.collecting_secret:
            self.memory.alternatives.append([safe_transcript_text(a) for a in alternatives])
        out: list[Output] = []
        awaiting = self._awaiting
        if awaiting.kind == "slot" and awaiting.slot is not None:
            self._answer_slot(text, result, out)
        elif awaiting.kind in ("confirm_intent", "confirm_task"):
            self._answer_confirm(result, out)
        else:
            self._route(result, out)
        return out

    def accepts_key(self, key: str) -> bool:
        """False for a '#' with no digits before it (a terminator after a slot already filled)."""
        return key != "#" or (self.collecting_digits and bool(self._dtmf_buffer))

    def on_dtmf(self, key: str) -> list[Output]:
        """One key at a time; digits for a slot collect until '#' or the slot's length."""
        out: list[Output] = []
        awaiting = self._awaiting
        if self.collecting_digits and awaiting.slot is not None and (key.isdigit() or key == "#"):
            if key != "#":
                self._dtmf_buffer += key
            length = awaiting.slot.length
            if key == "#" or (length and len(self._dtmf_buffer) >= length):
                digits, self._dtmf_buffer = self._dtmf_buffer, ""
                masked = masked_slot_value(digits, secret=awaiting.slot.secret, digits=True)
                self.memory.dtmf.append(str(masked))
                self.memory.transcript.append(TranscriptLine("Caller", f"(keyed {masked})"))
                self._fill_slot(awaiting.slot, digits, out)
            return out
        if not self.accepts_key(key):
            return out
        self.memory.dtmf.append(key)
        self.memory.transcript.append(TranscriptLine("Caller", f"(pressed {key})"))
        if awaiting.kind in ("confirm_intent", "confirm_task") and key in CONFIRM_KEYS:
            self._confirmed(CONFIRM_KEYS[key], out)
        elif key in awaiting.node.dtmf and awaiting.kind == "menu":
            self.failures = 0
            self._enter(self.flow.nodes[awaiting.node.dtmf[key]], out, trigger=f"dtmf:{key}")
        elif key in self.flow.global_dtmf:
            self._global(self.flow.global_dtmf[key], out, trigger=f"dtmf:{key}")
        else:
            self._failure("no_match", "unexpected_key", out)
        return out

    def on_no_input(self) -> list[Output]:
        out: list[Output] = []
        if self.ended is not None:
            return out
        self._failure("no_input", "", out)
        return out

    def on_error(self, stage: str, error: BaseException) -> list[Output]:
        out: list[Output] = [self._say("internal_error")]
        self._escalate("internal_error", out, detail=f"{stage}: {error!r}")
        return out

    def on_hangup(self) -> Hangup:
        if self.ended is None:
            outcome = "escalated" if self.handoff else "contained" if self.tasks_done else "abandoned"
            self.ended = Hangup(outcome)
        return self.ended

    # ----- routing -----------------------------------------------------------------------------

    def _route(self, result: NluResult, out: list[Output]) -> None:
        decision = decide(result, self.policy)
        self._remember_intent(result, decision.value)
        if decision is Decision.OUT_OF_SCOPE:
            self.out_of_scope_count += 1
            if self.out_of_scope_count >= self.policy.max_out_of_scope:
                self._escalate("out_of_scope", out)
            else:
                self._failure("no_match", "out_of_scope", out, prompt="out_of_scope", count=False)
        elif decision is Decision.REJECT:
            self._failure("no_match", "low_confidence", out)
        elif decision is Decision.CONFIRM and self._runner_up_agrees(result):
            self._accept(result, out, trigger=result.intent.name)
        elif decision is Decision.CONFIRM:
            if self._target_for(result.intent.name) is None:
                self._failure("no_match", "unexpected_intent", out)
                return
            label = self.prompts.intent_labels.get(result.intent.name, result.intent.name.replace("_", " "))
            self._ask("confirm_intent", out, values={"intent_label": label})
            self._awaiting = _Awaiting("confirm_intent", self.node, intent=result)
        else:
            self._accept(result, out, trigger=result.intent.name)

    def _runner_up_agrees(self, result: NluResult) -> bool:
        """Close top two that lead to the same place here ("no" vs "goodbye" at "anything else?")
        need no confirmation when together they are confident."""
        if len(result.ranking) < 2:
            return False
        top, second = result.ranking[0], result.ranking[1]
        target = self._target_for(top.name)
        same = target is not None and _place(target) == _place(self._target_for(second.name))
        return same and top.confidence + second.confidence >= self.policy.accept_threshold

    def _target_for(self, intent: str) -> GlobalRoute | Node | None:
        node = self.node
        if intent in node.routes:
            return self.flow.nodes[node.routes[intent]]
        if intent in self.flow.global_intents:
            return self.flow.global_intents[intent]
        return self.flow.node_for_intent(intent)

    def _accept(self, result: NluResult, out: list[Output], trigger: str) -> None:
        target = self._target_for(result.intent.name)
        if target is None:
            self._failure("no_match", "unexpected_intent", out)
            return
        self.failures = 0
        if isinstance(target, GlobalRoute):
            self._global(target, out, trigger=trigger)
            return
        if target.intent:
            self._start_task(target, result)
        self._enter(target, out, trigger=trigger, decision="accept")

    def _start_task(self, node: Node, result: NluResult) -> None:
        self._task_intent = node.intent
        for name in [s.name for s in node.slots]:
            self.slots.pop(name, None)
        self._prefill_slots(node.slots, result)

    def _prefill_slots(self, slots: tuple[SlotSpec, ...], result: NluResult) -> None:
        """Fills slots from entities said with the request ("move 50 dollars from savings to checking")."""
        text = result.text.lower()
        for entity in result.entities:
            candidates = [
                s
                for s in slots
                if s.kind != "digits" and s.entity == entity.entity and s.name not in self.slots
            ]
            if not candidates:
                continue
            slot = candidates[0]
            if len(candidates) > 1 and entity.start is not None:
                # Several slots take this entity (from/to accounts): the word before it decides.
                before = re.findall(r"[a-z]+", text[: entity.start])
                cue = before[-1] if before else ""
                slot = next((s for s in candidates if s.name.startswith(cue + "_")), candidates[0])
            self.slots[slot.name] = entity.value

    def _global(self, route: GlobalRoute, out: list[Output], trigger: str) -> None:
        self.failures = 0
        if route.action == "escalate":
            self._escalate(route.target or "caller_request", out)
        elif route.action == "help":
            self._emit_transition(self.node.name, trigger, "global")
            out.append(self._say("help"))
            self._reask(out, examples=True)
        elif route.action == "repeat":
            self._emit_transition(self.node.name, trigger, "global")
            out.extend(self._last_question)
        elif route.action == "back":
            target = self._menu_stack[-2] if len(self._menu_stack) >= 2 else self.flow.start
            self._enter(self.flow.nodes[target], out, trigger=trigger, decision="global")
        else:
            self._enter(self.flow.nodes[route.target], out, trigger=trigger, decision="global")

    # ----- nodes -------------------------------------------------------------------------------

    def _enter(self, node: Node, out: list[Output], trigger: str, decision: str = "") -> None:
        """Runs a node: auth, slots, confirmation, action, result, then asks or moves on."""
        self._emit_transition(node.name, trigger, decision)
        self.memory.menu_path.append(node.name)
        if node.escalate:
            self._escalate(node.escalate, out)
            return
        if node.auth and self.account is None:
            self._after_auth = node
            out.append(self._say("auth_required"))
            self._ask_missing_slot(node, self.flow.auth.slots if self.flow.auth else (), out, for_auth=True)
            return
        self._continue_task(node, out)

    def _continue_task(self, node: Node, out: list[Output]) -> None:
        if self._ask_missing_slot(node, node.slots, out, for_auth=False):
            return
        confirmed = self._awaiting.kind == "confirmed" and self._awaiting.node is node
        if node.confirm and not confirmed:
            self._ask(node.confirm, out, values=self._slot_values(), interruptible=node.interruptible)
            self._awaiting = _Awaiting("confirm_task", node)
            return
        values: dict[str, Any] = self._slot_values()
        if node.action:
            result = self._run_action(node.action)
            if not result.ok:
                out.append(self._say(result.error_prompt or "internal_error", result.values))
                self._after_task(node, out)
                return
            values.update(result.values)
        if node.say:
            out.append(self._say(node.say, values, interruptible=node.interruptible))
        if node.intent:
            self.tasks_done += 1
        self._after_task(node, out)

    def _after_task(self, node: Node, out: list[Output]) -> None:
        if node.end:
            self._end("contained" if not self.handoff else "escalated", out)
        elif node.waits_for_caller:
            self._menu_stack.append(node.name)
            self._ask(node.prompt or "", out)
            self._awaiting = _Awaiting("menu", node)
        elif node.next:
            self._enter(self.flow.nodes[node.next], out, trigger="next")

    def _ask_missing_slot(
        self, node: Node, slots: tuple[SlotSpec, ...], out: list[Output], *, for_auth: bool
    ) -> bool:
        for slot in slots:
            if slot.name in self.slots:
                continue
            if not for_auth and (slot.default is not None or not slot.required):
                if slot.default is not None:
                    self.slots[slot.name] = slot.default
                continue
            self._ask(slot.prompt, out)
            self._awaiting = _Awaiting("slot", node, slot=slot, for_auth=for_auth)
            self._dtmf_buffer = ""
            return True
        return False

    def _run_action(self, name: str) -> ActionResult:
        context = ActionContext(slots=dict(self.slots), caller_id=self.caller_id, account=self.account)
        return self.actions.run(name, context)

    # ----- slots, auth, confirmation -------------------------------------------------------------

    def _answer_slot(self, text: str, result: NluResult, out: list[Output]) -> None:
        slot = self._awaiting.slot
        assert slot is not None
        value = self._slot_value(slot, text, result)
        if value is not None:
            self._remember_intent(result, "slot")
            self._fill_slot(slot, value, out)
            return
        # Not an answer: maybe the caller changed their mind or asked for help or a person.
        decision = decide(result, self.policy)
        self._remember_intent(result, decision.value)
        if decision is Decision.ACCEPT and self._target_for(result.intent.name) is not None:
            self._accept(result, out, trigger=result.intent.name)
        else:
            self._failure("no_match", "slot_not_understood", out, prompt="slot_invalid")

    def _slot_value(self, slot: SlotSpec, text: str, result: NluResult) -> Any:
        if slot.kind == "digits":
            digits = spoken_digits(text)
            return digits or None
        if slot.kind == "amount":
            entity = result.entity("amount")
            return entity.value if entity else parse_amount(text)
        entity = result.entity(slot.entity)
        return entity.value if entity else None

    def _fill_slot(self, slot: SlotSpec, value: Any, out: list[Output]) -> None:
        if slot.kind == "digits" and slot.length and len(str(value)) != slot.length:
            self._failure("no_match", "slot_invalid", out, prompt="slot_invalid")
            return
        self.failures = 0
        self.slots[slot.name] = value
        awaiting = self._awaiting
        if awaiting.for_auth:
            self._continue_auth(out)
        else:
            self._continue_task(awaiting.node, out)

    def _continue_auth(self, out: list[Output]) -> None:
        auth = self.flow.auth
        target = self._after_auth
        assert auth is not None and target is not None
        if self._ask_missing_slot(target, auth.slots, out, for_auth=True):
            return
        result = self._run_action(auth.action)
        auth_values = {s.name: self.slots.pop(s.name, None) for s in auth.slots}
        if result.ok:
            self.account = str(auth_values.get(auth.slots[0].name, ""))
            self._after_auth = None
            self._continue_task(target, out)
            return
        self.auth_attempts += 1
        out.append(self._say(result.error_prompt or "auth_failed"))
        if self.auth_attempts >= self.policy.max_auth_attempts:
            self._escalate("auth_failed", out)
        else:
            self._ask_missing_slot(target, auth.slots, out, for_auth=True)

    def _answer_confirm(self, result: NluResult, out: list[Output]) -> None:
        answer = yes_or_no(result, self.policy)
        self._remember_intent(result, "confirm")
        if answer is None:
            # Not a yes/no: treat it as a fresh request.
            self._awaiting = _Awaiting("menu", self._menu_node())
            self._route(result, out)
            return
        self._confirmed(answer, out)

    def _confirmed(self, yes: bool, out: list[Output]) -> None:
        awaiting = self._awaiting
        self.failures = 0
        if awaiting.kind == "confirm_intent" and awaiting.intent is not None:
            self._awaiting = _Awaiting("menu", awaiting.node)
            if yes:
                self._accept(awaiting.intent, out, trigger=f"confirmed:{awaiting.intent.intent.name}")
            else:
                out.append(self._say("confirm_denied"))
                self._reask(out, examples=True)
        elif awaiting.kind == "confirm_task":
            node = awaiting.node
            if yes:
                self._awaiting = _Awaiting("confirmed", node)
                self._continue_task(node, out)
            else:
                out.append(self._say("confirm_denied"))
                self._enter(self.flow.nodes[node.next or self.flow.start], out, trigger="denied")

    def _menu_node(self) -> Node:
        return self.flow.nodes[self._menu_stack[-1] if self._menu_stack else self.flow.start]

    # ----- failures and escalation ---------------------------------------------------------------

    def _failure(
        self, kind: str, reason: str, out: list[Output], prompt: str = "", count: bool = True
    ) -> None:
        node = self.node
        if count:
            self.failures += 1
        if kind == "no_input":
            self._emit(NoInput(node=node.name, count=self.failures))
        else:
            self._emit(NoMatch(node=node.name, count=self.failures, reason=reason))
        if self.failures >= self.policy.max_consecutive_failures:
            self._escalate(kind, out)
            return
        out.append(self._say(prompt or kind))
        self._reask(out, examples=True)

    def _reask(self, out: list[Output], examples: bool) -> None:
        """Asks the current question again; re-prompts give examples, not just the same words."""
        awaiting = self._awaiting
        if awaiting.kind == "slot" and awaiting.slot is not None:
            self._ask(awaiting.slot.prompt, out)
        elif awaiting.kind in ("confirm_intent", "confirm_task"):
            out.extend(self._last_question)
        else:
            node = awaiting.node if awaiting.node.waits_for_caller else self._menu_node()
            prompt = node.examples if examples and node.examples else node.prompt
            self._ask(prompt or "", out)
            self._awaiting = _Awaiting("menu", node)

    def _escalate(self, reason: str, out: list[Output], detail: str = "") -> None:
        self.handoff = self._handoff_record(reason, detail)
        self._emit(Escalated(reason=reason, queue=self.handoff.queue, record=self.handoff.to_dict()))
        out.append(self._say("transfer", interruptible=False))
        out.append(Handoff(self.handoff))
        self._end("escalated", out)

    def _end(self, outcome: str, out: list[Output]) -> None:
        self.ended = Hangup(outcome)
        self._awaiting = _Awaiting("done", self.node)
        out.append(self.ended)

    def _handoff_record(self, reason: str, detail: str) -> HandoffRecord:
        specs = {s.name: s for n in self.flow.nodes.values() for s in n.slots}
        if self.flow.auth:
            specs.update({s.name: s for s in self.flow.auth.slots})
        slots = {
            name: masked_slot_value(
                value, secret=specs[name].secret if name in specs else False,
                digits=specs[name].kind == "digits" if name in specs else False,
            )
            for name, value in self.slots.items()
        }  # fmt: skip
        auth_level = (
            "authenticated" if self.account else "identified" if self.slots.get("account_number") else "none"
        )
        if self.account:
            slots["account_number"] = masked_slot_value(self.account, secret=False, digits=True)
        return HandoffRecord(
            call_id=self.call_id,
            reason=reason,
            queue=self.flow.queue_for(
                self._task_intent or (self.memory.intents[-1].intent if self.memory.intents else None)
            ),
            caller_id=self.caller_id,
            language=self.language,
            auth_level=auth_level,
            intents=list(self.memory.intents),
            slots=slots,
            menu_path=list(self.memory.menu_path),
            transcript=list(self.memory.transcript),
            asr_alternatives=list(self.memory.alternatives),
            dtmf=list(self.memory.dtmf),
            detail=detail,
        )

    # ----- helpers -----------------------------------------------------------------------------

    def _remember_intent(self, result: NluResult, decision: str) -> None:
        text = "[withheld]" if self.collecting_secret else safe_transcript_text(result.text)
        self.memory.intents.append(
            IntentTurn(self.turn, text, result.intent.name, round(result.intent.confidence, 3), decision)
        )

    def _slot_values(self) -> dict[str, Any]:
        return {name: _speakable(value) for name, value in self.slots.items()}

    def _say(self, prompt_id: str, values: dict[str, Any] | None = None, interruptible: bool = True) -> Say:
        prompt = self.prompts.get(prompt_id)
        text = self.prompts.render(prompt_id, values)
        self.memory.transcript.append(TranscriptLine("Bot", safe_transcript_text(text)))
        return Say(text, prompt_id, interruptible and prompt.interruptible, static=prompt.is_static)

    def _ask(
        self,
        prompt_id: str,
        out: list[Output],
        values: dict[str, Any] | None = None,
        interruptible: bool = True,
    ) -> None:
        say = self._say(prompt_id, values, interruptible)
        out.append(say)
        self._last_question = [say]

    def _emit_transition(self, to_node: str, trigger: str, decision: str) -> None:
        self._emit(
            DialogueTransition(from_node=self.node.name, to_node=to_node, trigger=trigger, decision=decision)
        )


def _place(target: GlobalRoute | Node | None) -> tuple[str, str] | None:
    """Where a route leads, so two routes to the same node compare equal."""
    if isinstance(target, Node):
        return ("node", target.name)
    if target is None:
        return None
    return ("node", target.target) if target.action == "node" else (target.action, target.target)


def _speakable(value: Any) -> Any:
    """Slot values as the bot should say them (amounts in words the TTS reads naturally)."""
    if isinstance(value, float):
        return spoken_money(round(value * 100))
    return value
