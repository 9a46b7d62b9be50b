"""The dialogue: applies the confidence ladder, routes, retries and escalates.

It knows nothing about audio: it takes understood turns (text + NLU result), DTMF keys, no-input
timeouts and stage errors, and answers with outputs (what to say, hand off, hang up). What the
caller's next turn answers is an explicit state (voicebot/dialogue/states.py); walking the flow's
nodes, slots and actions is voicebot/dialogue/walk.py. The same manager drives audio calls and
``voicebot chat``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from voicebot.asr.base import RecognitionHints
from voicebot.dialogue.flow import GlobalRoute, Node, phrase_words
from voicebot.dialogue.outputs import Handoff, Hangup, Output, Say, SwitchLanguage
from voicebot.dialogue.policy import Decision, decide
from voicebot.dialogue.states import (
    ConfirmIntent,
    ConfirmTask,
    Menu,
    SlotPrompt,
    prefilled_slots,
)
from voicebot.dialogue.walk import FlowWalk
from voicebot.events import LanguageChanged, NoInput, NoMatch
from voicebot.handoff.record import IntentTurn, TranscriptLine, masked_slot_value
from voicebot.nlu.base import NluResult

__all__ = ["DialogueManager", "Handoff", "Hangup", "Output", "Say"]
# "Spanish, please", "en español por favor": longer utterances that name a language are requests.
MAX_LANGUAGE_REQUEST_WORDS = 4


class DialogueManager(FlowWalk):
    # ----- what the session asks -------------------------------------------------------------

    @property
    def collecting_secret(self) -> bool:
        return self._state.secret

    @property
    def takes_request(self) -> bool:
        """The next answer is a request, so the NLU may choose among the recogniser's hypotheses."""
        return self._state.takes_request

    def hints(self) -> RecognitionHints:
        """What the next caller turn is likely to contain, for ASR biasing and grammars; for the
        caller's first request, the languages to tell apart when the call serves several."""
        hints = self._state.hints(self.prompts)
        first_request = self.turn == 0 and self._state.takes_request
        if first_request and self.policy.detect_language and len(self.languages) > 1:
            threshold = self.policy.language_switch_probability
            hints = dataclasses.replace(hints, languages=self.languages, language_threshold=threshold)
        return hints

    def accepts_key(self, key: str) -> bool:
        return self._state.accepts_key(key)

    # ----- inputs ------------------------------------------------------------------------------

    def start(self) -> list[Output]:
        """The greeting, the other languages' offers, the home node (after an apology when the
        caller asked for a language that cannot be served now)."""

        def greet() -> None:
            if self.unavailable_language is not None:
                self._say("language_unavailable")
            self._say("greeting")
            for language in self.languages[1:]:
                self._offer_language(language)
            self._enter(self.flow.nodes[self.home], "start")

        return self._collect(greet)

    def on_utterance(
        self,
        text: str,
        result: NluResult,
        alternatives: tuple[str, ...] = (),
        language: str | None = None,
    ) -> list[Output]:
        """``language``: the recogniser heard another of the call's languages, and ``text`` and
        ``result`` are in it: the call goes on in that language without asking."""
        if self.ended is not None:
            return []  # the call is already leaving (goodbye or transfer prompt playing)
        asked_for = self._language_named(text)
        if asked_for is not None:
            return self._collect(lambda: self.switch_language(asked_for, "spoken"))

        def understood() -> None:
            if language is not None and language != self.language and language in self.languages:
                self._use_language(language, "detected")
            self.turn += 1
            privacy = self.privacy
            self.memory.transcript.append(TranscriptLine("Caller", privacy.caller_text(text)))
            if alternatives and not privacy.secret:
                self.memory.alternatives.append([privacy.caller_text(a) for a in alternatives])
            heard = self._state.pick_transcript(text, alternatives, self.language)
            self._state.on_result(self, heard, result)

        return self._collect(understood)

    def offer_language(self, language: str) -> list[Output]:
        """The caller may have spoken ``language`` (the recogniser was not sure): its offer, in it."""
        if self.ended is not None or language == self.language or language not in self.languages:
            return []
        return self._collect(lambda: self._offer_language(language))

    def on_dtmf(self, key: str) -> list[Output]:
        """One key at a time; digits for a slot collect until '#' or the slot's length."""
        return self._collect(lambda: self._state.on_key(self, key))

    def on_no_input(self) -> list[Output]:
        if self.ended is not None:
            return []
        return self._collect(lambda: self.failure("no_input", ""))

    def on_error(self, stage: str, error: BaseException) -> list[Output]:
        def apologise_and_escalate() -> None:
            self._say("internal_error")
            self._escalate("internal_error", detail=f"{stage}: {error!r}")

        return self._collect(apologise_and_escalate)

    def on_hangup(self) -> Hangup:
        if self.ended is None:
            outcome = "escalated" if self.handoff else "contained" if self.tasks_done else "abandoned"
            self.ended = Hangup(outcome)
        return self.ended

    def _collect(self, run: Callable[[], None]) -> list[Output]:
        self._out = []
        run()
        out, self._out = self._out, []
        return out

    # ----- moves the states make (voicebot.dialogue.states.Moves) -------------------------------

    def route(self, result: NluResult) -> None:
        decision = decide(result, self.policy)
        self.remember_intent(result, decision.value)
        if decision is Decision.OUT_OF_SCOPE:
            self.out_of_scope_count += 1
            if self.out_of_scope_count >= self.policy.max_out_of_scope:
                self._escalate("out_of_scope")
            else:
                self.failure("no_match", "out_of_scope", prompt="out_of_scope", count=False)
        elif decision is Decision.REJECT:
            self.failure("no_match", "low_confidence")
        elif decision is Decision.CONFIRM and not self._runner_up_agrees(result):
            if self._target_for(result.intent.name) is None:
                self.failure("no_match", "unexpected_intent")
                return
            label = self.prompts.intent_labels.get(result.intent.name, result.intent.name.replace("_", " "))
            self.ask("confirm_intent", values={"intent_label": label})
            self._state = ConfirmIntent(self.node, self.flow.confirm_keys, result)
        else:
            self.accept(result, trigger=result.intent.name)

    def would_accept(self, result: NluResult) -> bool:
        return (
            decide(result, self.policy) is Decision.ACCEPT
            and self._target_for(result.intent.name) is not None
        )

    def accept(self, result: NluResult, trigger: str) -> None:
        target = self._target_for(result.intent.name)
        if target is None:
            self.failure("no_match", "unexpected_intent")
            return
        self.failures = 0
        if isinstance(target, GlobalRoute):
            self._global(target, trigger)
            return
        if target.intent:
            self._task_intent = target.intent
            for slot in target.slots:
                self.slots.pop(slot.name, None)
            self.slots.update(prefilled_slots(target.slots, result, set(self.slots)))
        self._enter(target, trigger, decision="accept")

    def pressed(self, key: str) -> None:
        self.memory.dtmf.append(key)
        self.memory.transcript.append(TranscriptLine("Caller", f"(pressed {key})"))

    def menu_key(self, node: Node, key: str) -> None:
        self.failures = 0
        self._enter(self.flow.nodes[node.dtmf[key]], f"dtmf:{key}")

    def global_key(self, key: str) -> None:
        language = self.flow.language_keys.get(key)
        if language is not None and language in self.languages:
            if language == self.language:
                self._transition(self.node.name, f"dtmf:{key}", "global")
                self.repeat_question()
            else:
                self.switch_language(language, f"dtmf:{key}")
        elif key in self.flow.global_dtmf:
            self._global(self.flow.global_dtmf[key], f"dtmf:{key}")
        else:
            self.failure("no_match", "unexpected_key")

    def keyed_digits(self, state: SlotPrompt, digits: str) -> None:
        masked = masked_slot_value(digits, secret=state.slot.secret, digits=True)
        self.memory.dtmf.append(str(masked))
        self.memory.transcript.append(TranscriptLine("Caller", f"(keyed {masked})"))
        self.fill_slot(state, digits)

    def fill_slot(self, state: SlotPrompt, value: Any) -> None:
        slot = state.slot
        if slot.kind == "digits" and slot.length and len(str(value)) != slot.length:
            self.failure("no_match", "slot_invalid", prompt="slot_invalid")
            return
        self.failures = 0
        self.slots[slot.name] = value
        if state.for_auth:
            self._continue_auth()
        else:
            self._continue_task(state.node)

    def confirmed_intent(self, state: ConfirmIntent, yes: bool) -> None:
        self.failures = 0
        self._state = Menu(state.node)
        if yes:
            self.accept(state.intent, trigger=f"confirmed:{state.intent.intent.name}")
        else:
            self._say("confirm_denied")
            self._state.reask(self, examples=True)

    def confirmed_task(self, state: ConfirmTask, yes: bool) -> None:
        self.failures = 0
        if yes:
            self._continue_task(state.node, confirmed=True)
        else:
            self._say("confirm_denied")
            self._enter(self.flow.nodes[state.node.next or self.home], "denied")

    def back_to_menu(self, result: NluResult) -> None:
        self._state = Menu(self._menu_node())
        self.route(result)

    def failure(self, kind: str, reason: str, prompt: str = "", count: bool = True) -> None:
        if count:
            self.failures += 1
        if kind == "no_input":
            self._emit(NoInput(node=self.node.name, count=self.failures))
        else:
            self._emit(NoMatch(node=self.node.name, count=self.failures, reason=reason))
        if self.failures >= self.policy.max_consecutive_failures:
            self._escalate(kind)
            return
        self._say(prompt or kind)
        self._state.reask(self, examples=True)

    def reask_menu(self, node: Node, examples: bool) -> None:
        """Asks the menu again; re-prompts give examples, not just the same words."""
        node = node if node.waits_for_caller else self._menu_node()
        self.ask((node.examples if examples and node.examples else node.prompt) or "")
        self._state = Menu(node)

    def remember_intent(self, result: NluResult, decision: str) -> None:
        text = self.privacy.caller_text(result.text)
        self.memory.intents.append(
            IntentTurn(self.turn, text, result.intent.name, round(result.intent.confidence, 3), decision)
        )

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
        if intent in self.node.routes:
            return self.flow.nodes[self.node.routes[intent]]
        if intent in self.flow.global_intents:
            return self.flow.global_intents[intent]
        return self.flow.node_for_intent(intent)

    # ----- languages -------------------------------------------------------------------------------

    def switch_language(self, language: str, trigger: str) -> None:
        """The caller chose another language: the question they were asked, asked again in it."""
        if language == self.language:
            self.repeat_question()
            return
        self._use_language(language, trigger)
        if self._last_ask is not None:
            self.ask(*self._last_ask)
        else:
            self._state.reask(self, examples=False)

    def _use_language(self, language: str, trigger: str) -> None:
        previous, self.language = self.language, language
        self.prompts = self.flow.prompts(language)
        self._emit(LanguageChanged(language=language, previous=previous, trigger=trigger))
        self.memory.transcript.append(TranscriptLine("Bot", f"(language: {language})"))
        self._out.append(SwitchLanguage(language))

    def _offer_language(self, language: str) -> None:
        """ "Para español, oprima 7", in that language's words and voice (pre-synthesised)."""
        offer = self.flow.language_offer(language)
        if offer is not None:
            self._out.append(Say(offer, "language_offer", language=language))

    def _language_named(self, text: str) -> str | None:
        """The served language a short utterance asks for by name ("español", "in Spanish please")."""
        words = phrase_words(text)
        if not words or len(words) > MAX_LANGUAGE_REQUEST_WORDS:
            return None
        for language in self.languages:
            for name in self.flow.prompts(language).language_names:
                name_words = phrase_words(name)
                if any(words[i : i + len(name_words)] == name_words for i in range(len(words))):
                    return language
        return None

    def _global(self, route: GlobalRoute, trigger: str) -> None:
        self.failures = 0
        if route.action == "escalate":
            self._escalate(route.target or "caller_request")
        elif route.action == "help":
            self._transition(self.node.name, trigger, "global")
            self._say("help")
            self._state.reask(self, examples=True)
        elif route.action == "repeat":
            self._transition(self.node.name, trigger, "global")
            self.repeat_question()
        elif route.action == "back":
            target = self._menu_stack[-2] if len(self._menu_stack) >= 2 else self.home
            self._enter(self.flow.nodes[target], trigger, decision="global")
        else:
            self._enter(self.flow.nodes[route.target], trigger, decision="global")


def _place(target: GlobalRoute | Node | None) -> tuple[str, str] | None:
    """Where a route leads, so two routes to the same node compare equal."""
    if isinstance(target, Node):
        return ("node", target.name)
    if target is None:
        return None
    return ("node", target.target) if target.action == "node" else (target.action, target.target)
