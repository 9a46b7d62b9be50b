"""Walking the flow: nodes, slots, identification, confirmation, actions, escalation.

The base of the dialogue (voicebot/dialogue/manager.py): it holds what the call has gathered (slots,
the caller's account, the memory for the handoff) and the dialogue's state, and collects what the
bot says into the outputs of the caller input being handled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from voicebot.config import PolicyConfig
from voicebot.dialogue.actions import ActionContext, ActionRegistry, ActionResult
from voicebot.dialogue.flow import Flow, Node, Prompts, SlotSpec
from voicebot.dialogue.lockout import IdentificationLockout
from voicebot.dialogue.outputs import Handoff, Hangup, Output, Say
from voicebot.dialogue.states import ConfirmTask, Done, KeyCollection, Menu, SlotPrompt, State
from voicebot.events import (
    CallEvent,
    DialogueTransition,
    Escalated,
    IdentificationFailed,
    IdentificationLocked,
)
from voicebot.handoff.builder import CallMemory, SlotPrivacy, build_handoff_record
from voicebot.handoff.record import HandoffRecord, TranscriptLine
from voicebot.handoff.redact import CallerPrivacy, mask_digits
from voicebot.nlu.numbers import spoken_digits
from voicebot.tts.speech_format import spoken_money


class FlowWalk:
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
        home: str | None = None,
        languages: tuple[str, ...] = (),
        unavailable_language: str | None = None,
    ) -> None:
        self.flow = flow
        # Where the call starts and "back" ends: the flow's start, or the node the dialled number
        # chose (telephony.numbers), so one flow file can serve several lines of business.
        self.home = home or flow.start
        self.prompts: Prompts = flow.prompts(language)
        self.language = language
        # The languages this call can switch to (those served); () : the call's language only.
        self.languages = tuple(dict.fromkeys((language, *languages)))
        self.unavailable_language = unavailable_language  # asked for, not served: apologised for
        self.actions = actions
        self.policy = policy
        self.call_id = call_id
        self.caller_id = caller_id
        self._emit = emit
        self.slots: dict[str, Any] = {}
        self.account: str | None = None
        self.auth_attempts = 0
        self.lockout = IdentificationLockout(actions.identification_attempts, policy)  # across calls
        self.failures = 0
        self.out_of_scope_count = 0
        self.tasks_done = 0
        self.turn = 0
        self.memory = CallMemory()
        self.ended: Hangup | None = None
        self.handoff: HandoffRecord | None = None
        self._state: State = Menu(flow.nodes[self.home])
        self._after_auth: Node | None = None
        self._last_question: list[Say] = []
        self._last_ask: tuple[str, dict[str, Any] | None, bool] | None = None  # to ask it in another language
        self._menu_stack: list[str] = []
        self._task_intent: str | None = None
        self._out: list[Output] = []

    @property
    def node(self) -> Node:
        return self._state.node

    @property
    def privacy(self) -> CallerPrivacy:
        """How the caller's words and keys of the turn in progress are kept in the trace and the
        handoff record: by what this state collects (a PIN, an account number)."""
        state = self._state
        return CallerPrivacy(self.read_digits, secret=state.secret, digits=state.collecting_digits)

    def read_digits(self, text: str) -> str:
        """The digits ``text`` says, read in the call's language."""
        return spoken_digits(text, language=self.language)

    def ask(self, prompt_id: str, values: dict[str, Any] | None = None, interruptible: bool = True) -> None:
        self._last_question = [self._say(prompt_id, values, interruptible)]
        self._last_ask = (prompt_id, values, interruptible)

    def repeat_question(self) -> None:
        self._out.extend(self._last_question)

    def _enter(self, node: Node, trigger: str, decision: str = "") -> None:
        """Runs a node: auth, slots, confirmation, action, result, then asks or moves on."""
        self._transition(node.name, trigger, decision)
        self.memory.menu_path.append(node.name)
        if node.escalate:
            self._escalate(node.escalate)
        elif node.auth and self.account is None:
            self._after_auth = node
            self._say("auth_required")
            self._ask_missing_slot(node, self.flow.auth.slots if self.flow.auth else (), for_auth=True)
        else:
            self._continue_task(node)

    def _continue_task(self, node: Node, confirmed: bool = False) -> None:
        if self._ask_missing_slot(node, node.slots, for_auth=False):
            return
        if node.confirm and not confirmed:
            self.ask(node.confirm, values=self._slot_values(), interruptible=node.interruptible)
            self._state = ConfirmTask(node, self.flow.confirm_keys)
            return
        values: dict[str, Any] = self._slot_values()
        if node.action:
            result = self._run_action(node.action)
            if not result.ok:
                self._say(result.error_prompt or "internal_error", result.values)
                self._after_task(node)
                return
            values.update(result.values)
        if node.say:
            self._say(node.say, values, interruptible=node.interruptible)
        if node.intent:
            self.tasks_done += 1
        self._after_task(node)

    def _after_task(self, node: Node) -> None:
        if node.end:
            self._end("contained" if not self.handoff else "escalated")
        elif node.waits_for_caller:
            self._menu_stack.append(node.name)
            self.ask(node.prompt or "")
            self._state = Menu(node)
        elif node.next:
            self._enter(self.flow.nodes[node.next], "next")

    def _ask_missing_slot(self, node: Node, slots: tuple[SlotSpec, ...], *, for_auth: bool) -> bool:
        for slot in slots:
            if slot.name in self.slots:
                continue
            if not for_auth and (slot.default is not None or not slot.required):
                if slot.default is not None:
                    self.slots[slot.name] = slot.default
                continue
            self.ask(slot.prompt)
            kind = KeyCollection if slot.kind == "digits" else SlotPrompt
            self._state = kind(node, slot, for_auth=for_auth)
            return True
        return False

    def _continue_auth(self) -> None:
        auth, target = self.flow.auth, self._after_auth
        assert auth is not None and target is not None
        if self._ask_missing_slot(target, auth.slots, for_auth=True):
            return
        account = str(self.slots.get(auth.slots[0].name, ""))
        locked_s = self.lockout.begin(account, time.time())
        if locked_s:  # refused unchecked: the PIN is not even compared
            for slot in auth.slots:
                self.slots.pop(slot.name, None)
            self._locked_out(account, locked_s, cause="locked")
            return
        result = self._run_action(auth.action)
        for slot in auth.slots:
            self.slots.pop(slot.name, None)
        if result.ok:
            self.lockout.succeeded(account, time.time())
            self.account = account
            self._after_auth = None
            self._continue_task(target)
            return
        self.auth_attempts += 1
        reason = result.error_prompt or "auth_failed"
        self._emit(IdentificationFailed(account=_last4(account), attempt=self.auth_attempts, reason=reason))
        self._say(reason)
        locked_s = self.lockout.failed(account, time.time())
        if locked_s:
            self._locked_out(account, locked_s, cause="failures")
        elif self.auth_attempts >= self.policy.max_auth_attempts:
            self._escalate("auth_failed")
        else:
            self._ask_missing_slot(target, auth.slots, for_auth=True)

    def _locked_out(self, account: str, locked_s: float, cause: str) -> None:
        """Too many failed identifications of this account, in any calls: an agent takes over."""
        retry_after_s = math.ceil(locked_s)
        self._emit(IdentificationLocked(account=_last4(account), retry_after_s=retry_after_s, cause=cause))
        self._say("auth_locked")
        detail = f"account {_last4(account)}: identification locked for {retry_after_s} s, too many failures"
        self._escalate("identification_locked", detail=detail)

    def _run_action(self, name: str) -> ActionResult:
        context = ActionContext(
            slots=dict(self.slots),
            caller_id=self.caller_id,
            account=self.account,
            language=self.language,
            value_words=self.prompts.value_words,
        )
        return self.actions.run(name, context)

    def _menu_node(self) -> Node:
        return self.flow.nodes[self._menu_stack[-1] if self._menu_stack else self.home]

    def _escalate(self, reason: str, detail: str = "") -> None:
        specs = [s for n in self.flow.nodes.values() for s in n.slots]
        specs += list(self.flow.auth.slots) if self.flow.auth else []
        last_intent = self.memory.intents[-1].intent if self.memory.intents else None
        self.handoff = build_handoff_record(
            self.memory,
            call_id=self.call_id,
            caller_id=self.caller_id,
            language=self.language,
            reason=reason,
            queue=self.flow.queue_for(self._task_intent or last_intent),
            slots=self.slots,
            privacy={s.name: SlotPrivacy(secret=s.secret, digits=s.kind == "digits") for s in specs},
            account=self.account,
            detail=self.privacy.redacted(detail),
        )
        self._emit(Escalated(reason=reason, queue=self.handoff.queue, record=self.handoff.to_dict()))
        self._say("transfer", interruptible=False)
        self._out.append(Handoff(self.handoff))
        self._end("escalated")

    def _end(self, outcome: str) -> None:
        self.ended = Hangup(outcome)
        self._state = Done(self.node)
        self._out.append(self.ended)

    def _slot_values(self) -> dict[str, Any]:
        return {name: _speakable(value, self.language) for name, value in self.slots.items()}

    def _say(self, prompt_id: str, values: dict[str, Any] | None = None, interruptible: bool = True) -> Say:
        prompt = self.prompts.get(prompt_id)
        text = self.prompts.render(prompt_id, values)
        self.memory.transcript.append(TranscriptLine("Bot", self.privacy.redacted(text)))
        say = Say(text, prompt_id, interruptible and prompt.interruptible, static=prompt.is_static)
        self._out.append(say)
        return say

    def _transition(self, to_node: str, trigger: str, decision: str) -> None:
        self._emit(
            DialogueTransition(from_node=self.node.name, to_node=to_node, trigger=trigger, decision=decision)
        )


def _last4(account: str) -> str:
    return mask_digits(account, keep_last=4)


def _speakable(value: Any, language: str = "en") -> Any:
    """Slot values as the bot should say them (amounts in words the TTS reads naturally)."""
    if isinstance(value, float):
        return spoken_money(round(value * 100), language=language)
    return value
