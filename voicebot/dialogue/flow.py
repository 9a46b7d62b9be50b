"""The IVR as data: nodes, routes, slots and prompts loaded from ``prompts/`` (YAML).

``prompts/flow.yml`` holds the structure (shared by all languages); ``prompts/<lang>.yml`` holds what
the bot says in each language. Every error names the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.audio import DTMF_KEYS
from voicebot.datafile import LineDict, load_yaml, reject_unknown_keys, require_mapping
from voicebot.errors import DataFileError

# Global behaviours a flow can bind to intents or keys at every node.
GLOBAL_ACTIONS = ("escalate", "help", "repeat", "back")
SLOT_KINDS = ("digits", "amount", "entity")
# Prompt ids the dialogue engine itself uses; every language must define them.
SYSTEM_PROMPTS = (
    "greeting",
    "no_input",
    "no_match",
    "out_of_scope",
    "confirm_intent",
    "confirm_denied",
    "help",
    "transfer",
    "internal_error",
    "auth_failed",
    "auth_locked",
    "auth_required",
    "slot_invalid",
)
# Grammars the dialogue engine itself uses. Backchannel phrases ("uh-huh", "okay") said over a prompt
# are no interruption; the same words answer a yes/no question, so a language that has them needs a
# yes/no grammar too, which tells the call when they do.
YES_NO_GRAMMAR = "yes_no"
BACKCHANNEL_GRAMMAR = "backchannel"
# Prompt ids the contact centre speaks to callers waiting in its queue; every language must define them.
QUEUE_PROMPTS = (
    "queue_next",
    "queue_position",
    "queue_wait_one_minute",
    "queue_wait_minutes",
    "queue_callback_offer",
    "callback_confirmation",
    "transfer_unavailable",
    "hold_comfort",
    "transfer_to_colleague",
)


@dataclass(frozen=True)
class GlobalRoute:
    action: str  # one of GLOBAL_ACTIONS, or "node"
    target: str = ""  # node name for "node", escalation reason for "escalate"


@dataclass(frozen=True)
class SlotSpec:
    name: str
    kind: str
    prompt: str
    entity: str = ""
    length: int | None = None
    secret: bool = False
    default: Any = None
    required: bool = True  # False: filled only if the caller mentions it, never asked for


@dataclass(frozen=True)
class Node:
    name: str
    line: int
    prompt: str | None = None
    examples: str | None = None
    intent: str | None = None
    routes: dict[str, str] = field(default_factory=dict)
    dtmf: dict[str, str] = field(default_factory=dict)
    auth: bool = False
    slots: tuple[SlotSpec, ...] = ()
    confirm: str | None = None
    action: str | None = None
    say: str | None = None
    next: str | None = None
    end: bool = False
    escalate: str | None = None
    interruptible: bool = True

    @property
    def waits_for_caller(self) -> bool:
        return self.prompt is not None


@dataclass(frozen=True)
class Prompt:
    text: str
    interruptible: bool = True

    @property
    def is_static(self) -> bool:
        return "{" not in self.text


@dataclass(frozen=True)
class Prompts:
    language: str
    path: Path
    prompts: dict[str, Prompt]
    intent_labels: dict[str, str]
    # Closed vocabularies by what the bot asked (yes_no, digits), for recognisers that take grammars.
    grammars: dict[str, tuple[str, ...]]
    # What callers call this language, in any language ("español", "spanish"): said, it switches.
    language_names: tuple[str, ...] = ()
    # How this language says the flow's canonical values (slot and action values: "checking").
    value_words: dict[str, str] = field(default_factory=dict)

    def get(self, prompt_id: str) -> Prompt:
        try:
            return self.prompts[prompt_id]
        except KeyError:
            raise DataFileError(self.path, f"prompt '{prompt_id}' is not defined") from None

    def render(self, prompt_id: str, values: dict[str, Any] | None = None) -> str:
        prompt = self.get(prompt_id)
        words = {
            name: self.value_words.get(v, v) if isinstance(v, str) else v
            for name, v in (values or {}).items()
        }
        try:
            return prompt.text.format(**words)
        except (KeyError, IndexError) as exc:
            raise DataFileError(self.path, f"prompt '{prompt_id}' uses unknown value {exc}") from exc


@dataclass(frozen=True)
class AuthSpec:
    action: str
    slots: tuple[SlotSpec, ...]


@dataclass(frozen=True)
class Flow:
    path: Path
    start: str
    nodes: dict[str, Node]
    global_intents: dict[str, GlobalRoute]
    global_dtmf: dict[str, GlobalRoute]
    queues: dict[str, str]
    default_queue: str
    auth: AuthSpec | None
    languages: dict[str, Prompts]
    confirm_keys: dict[str, bool]  # keys that answer a yes/no question
    language_keys: dict[str, str] = field(default_factory=dict)  # key -> the language it switches to

    def node_for_intent(self, intent: str) -> Node | None:
        return next((n for n in self.nodes.values() if n.intent == intent), None)

    def queue_for(self, intent: str | None) -> str:
        return self.queues.get(intent or "", self.default_queue)

    def prompts(self, language: str) -> Prompts:
        try:
            return self.languages[language]
        except KeyError:
            raise DataFileError(self.path, f"no prompts for language '{language}'") from None

    def language_offer(self, language: str) -> str | None:
        """ "Para español, oprima 7": how ``language`` is offered, in it; None if it has no key or
        no ``language_offer`` prompt."""
        key = next((k for k, offered in self.language_keys.items() if offered == language), None)
        prompts = self.languages.get(language)
        if key is None or prompts is None or "language_offer" not in prompts.prompts:
            return None
        return prompts.render("language_offer", {"key": key})

    def intents(self) -> set[str]:
        """Every intent the flow refers to."""
        names = set(self.global_intents)
        for node in self.nodes.values():
            names.update(node.routes)
            if node.intent:
                names.add(node.intent)
        return names

    def action_names(self) -> set[str]:
        names = {n.action for n in self.nodes.values() if n.action}
        if self.auth:
            names.add(self.auth.action)
        return names


def _str(value: Any, path: Path, what: str, line: int) -> str:
    if not isinstance(value, str) or not value:
        raise DataFileError(path, f"{what} must be a non-empty string", line)
    return value


def _global_route(value: Any, path: Path, line: int) -> GlobalRoute:
    if isinstance(value, str):
        if value in GLOBAL_ACTIONS:
            return GlobalRoute(value, "caller_request" if value == "escalate" else "")
        return GlobalRoute("node", value)
    if isinstance(value, LineDict) and len(value) == 1:
        ((action, target),) = value.items()
        if action in GLOBAL_ACTIONS or action == "node":
            return GlobalRoute(action, str(target))
    raise DataFileError(
        path,
        f"a global route is a node name, one of {', '.join(GLOBAL_ACTIONS)}, or {{escalate: reason}}",
        line,
    )


def _slot(name: str, raw: Any, path: Path, line: int) -> SlotSpec:
    spec = require_mapping(raw, path, f"slot '{name}'", line)
    kind = spec.get("kind", "entity")
    if kind not in SLOT_KINDS:
        raise DataFileError(path, f"slot '{name}': kind must be one of {', '.join(SLOT_KINDS)}", spec.line)
    length = spec.get("length")
    if length is not None and (not isinstance(length, int) or length <= 0):
        raise DataFileError(path, f"slot '{name}': length must be a positive integer", spec.line_of("length"))
    return SlotSpec(
        name=name,
        kind=kind,
        prompt=str(spec.get("prompt", ""))
        if spec.get("required") is False
        else _str(spec.get("prompt"), path, f"slot '{name}' prompt", spec.line_of("prompt")),
        entity=str(spec.get("entity", name)),
        length=length,
        secret=bool(spec.get("secret", False)),
        default=spec.get("default"),
        required=bool(spec.get("required", True)),
    )


def _slots(raw: Any, path: Path, line: int) -> tuple[SlotSpec, ...]:
    if raw is None:
        return ()
    slots = require_mapping(raw, path, "slots", line)
    return tuple(_slot(name, spec, path, slots.line_of(name)) for name, spec in slots.items())


_NODE_KEYS = {
    "prompt", "examples", "intent", "routes", "dtmf", "auth", "slots", "confirm",
    "action", "say", "next", "end", "escalate", "interruptible",
}  # fmt: skip


def _node(name: str, raw: Any, path: Path, line: int) -> Node:
    spec = require_mapping(raw, path, f"node '{name}'", line)
    reject_unknown_keys(spec, _NODE_KEYS, path, f"node '{name}'")
    routes = require_mapping(spec.get("routes", LineDict()), path, "routes", spec.line_of("routes"))
    dtmf = require_mapping(spec.get("dtmf", LineDict()), path, "dtmf", spec.line_of("dtmf"))
    node = Node(
        name=name,
        line=spec.line,
        prompt=spec.get("prompt"),
        examples=spec.get("examples"),
        intent=spec.get("intent"),
        routes={str(k): str(v) for k, v in routes.items()},
        dtmf={str(k): str(v) for k, v in dtmf.items()},
        auth=bool(spec.get("auth", False)),
        slots=_slots(spec.get("slots"), path, spec.line_of("slots")),
        confirm=spec.get("confirm"),
        action=spec.get("action"),
        say=spec.get("say"),
        next=spec.get("next"),
        end=bool(spec.get("end", False)),
        escalate=spec.get("escalate"),
        interruptible=bool(spec.get("interruptible", True)),
    )
    if not (node.prompt or node.say or node.next or node.end or node.escalate or node.action):
        raise DataFileError(
            path, f"node '{name}' does nothing: give it a prompt, say, next, end or escalate", line
        )
    if node.prompt and node.next:
        raise DataFileError(
            path, f"node '{name}': a node that asks (prompt) routes by intent, not next", line
        )
    return node


def _load_prompts(path: Path) -> Prompts:
    doc = require_mapping(load_yaml(path), path, "the prompts file")
    raw = require_mapping(doc.get("prompts"), path, "'prompts'", doc.line_of("prompts"))
    prompts: dict[str, Prompt] = {}
    for prompt_id, value in raw.items():
        line = raw.line_of(prompt_id)
        if isinstance(value, str):
            prompts[prompt_id] = Prompt(value)
        elif isinstance(value, LineDict):
            text = _str(value.get("text"), path, f"prompt '{prompt_id}' text", line)
            prompts[prompt_id] = Prompt(text, bool(value.get("interruptible", True)))
        else:
            raise DataFileError(path, f"prompt '{prompt_id}' must be text or {{text, interruptible}}", line)
    labels = require_mapping(doc.get("intent_labels", LineDict()), path, "'intent_labels'")
    grammars_raw = require_mapping(doc.get("grammars", LineDict()), path, "'grammars'")
    grammars: dict[str, tuple[str, ...]] = {}
    for name, words in grammars_raw.items():
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            line = grammars_raw.line_of(name)
            raise DataFileError(path, f"grammar '{name}' must be a list of phrases", line)
        grammars[str(name)] = tuple(words)
    _check_backchannel(grammars, path, grammars_raw.line_of(BACKCHANNEL_GRAMMAR))
    value_words = require_mapping(doc.get("value_words", LineDict()), path, "'value_words'")
    names = doc.get("language_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and phrase_words(n) for n in names):
        raise DataFileError(path, "'language_names' must be a list of names", doc.line_of("language_names"))
    return Prompts(
        language=str(doc.get("language", path.stem)),
        path=path,
        prompts=prompts,
        intent_labels={str(k): str(v) for k, v in labels.items()},
        grammars=grammars,
        language_names=tuple(names),
        value_words={str(k): str(v) for k, v in value_words.items()},
    )


def phrase_words(text: str) -> tuple[str, ...]:
    """The words of a phrase or transcript, for comparing them: "Uh-huh." -> ("uh", "huh")."""
    return tuple(re.findall(r"\w+(?:'\w+)*", text.lower()))


def _check_backchannel(grammars: dict[str, tuple[str, ...]], path: Path, line: int) -> None:
    phrases = grammars.get(BACKCHANNEL_GRAMMAR)
    if phrases is None:
        return
    if YES_NO_GRAMMAR not in grammars:
        raise DataFileError(
            path,
            f"grammar '{BACKCHANNEL_GRAMMAR}' needs a '{YES_NO_GRAMMAR}' grammar: without it a backchannel "
            "word that answers a yes/no question would be taken for no answer",
            line,
        )
    for phrase in phrases:
        words = phrase_words(phrase)
        if not words:
            raise DataFileError(path, f"backchannel phrase '{phrase}' has no words", line)
        for name, others in grammars.items():
            if name not in (BACKCHANNEL_GRAMMAR, YES_NO_GRAMMAR) and words in map(phrase_words, others):
                raise DataFileError(
                    path,
                    f"backchannel phrase '{phrase}' is also in grammar '{name}': said over that question, "
                    "it answers it",
                    line,
                )


def load_flow(flow_dir: Path, check_prompts: bool = True) -> Flow:
    """Loads ``flow.yml`` and every ``<lang>.yml`` prompts file in ``flow_dir``, checking references.

    ``check_prompts=False`` leaves out the check that every language defines every prompt the flow
    uses (`voicebot validate` reports those itself, each with its file and line).
    """
    path = flow_dir / "flow.yml"
    doc = require_mapping(load_yaml(path), path, "the flow file")
    raw_nodes = require_mapping(doc.get("nodes"), path, "'nodes'", doc.line_of("nodes"))
    nodes = {name: _node(name, spec, path, raw_nodes.line_of(name)) for name, spec in raw_nodes.items()}
    globals_raw = require_mapping(doc.get("global_intents", LineDict()), path, "'global_intents'")
    dtmf_raw = require_mapping(doc.get("global_dtmf", LineDict()), path, "'global_dtmf'")
    queues_raw = require_mapping(doc.get("queues", LineDict()), path, "'queues'")
    confirm_raw = require_mapping(doc.get("confirm_keys", LineDict()), path, "'confirm_keys'")
    confirm_keys: dict[str, bool] = {}
    for answer, key in confirm_raw.items():
        if answer not in ("yes", "no") or str(key) not in DTMF_KEYS:
            line = confirm_raw.line_of(answer)
            raise DataFileError(path, "confirm_keys maps yes/no to a key 0-9, * or #", line)
        confirm_keys[str(key)] = answer == "yes"
    auth_raw = doc.get("auth")
    auth = None
    if auth_raw is not None:
        auth_spec = require_mapping(auth_raw, path, "'auth'", doc.line_of("auth"))
        auth = AuthSpec(
            action=_str(auth_spec.get("action"), path, "auth action", auth_spec.line),
            slots=_slots(auth_spec.get("slots"), path, auth_spec.line_of("slots")),
        )
    languages = {p.stem: _load_prompts(p) for p in sorted(flow_dir.glob("*.yml")) if p.name != "flow.yml"}
    if not languages:
        raise DataFileError(flow_dir, "no prompts file (<language>.yml) next to flow.yml")
    keys_raw = require_mapping(doc.get("language_keys", LineDict()), path, "'language_keys'")
    language_keys: dict[str, str] = {}
    for key, language in keys_raw.items():
        line = keys_raw.line_of(key)
        if str(key) not in DTMF_KEYS or str(key) in dtmf_raw:
            raise DataFileError(
                path, f"language key '{key}' must be a key 0-9, * or # not in global_dtmf", line
            )
        if str(language) not in languages:
            raise DataFileError(path, f"language key '{key}': no prompts file {language}.yml", line)
        language_keys[str(key)] = str(language)
    flow = Flow(
        path=path,
        start=_str(doc.get("start"), path, "'start'", doc.line_of("start")),
        nodes=nodes,
        global_intents={k: _global_route(v, path, globals_raw.line_of(k)) for k, v in globals_raw.items()},
        global_dtmf={str(k): _global_route(v, path, dtmf_raw.line_of(k)) for k, v in dtmf_raw.items()},
        queues={str(k): str(v) for k, v in queues_raw.items() if k != "default"},
        default_queue=str(queues_raw.get("default", "general")),
        auth=auth,
        languages=languages,
        confirm_keys=confirm_keys,
        language_keys=language_keys,
    )
    _check_references(flow, doc, raw_nodes, globals_raw, dtmf_raw)
    if check_prompts:
        for prompts in flow.languages.values():
            for prompt_id in prompt_ids(flow):
                prompts.get(prompt_id)
    return flow


def _check_references(
    flow: Flow, doc: LineDict, raw_nodes: LineDict, globals_raw: LineDict, dtmf_raw: LineDict
) -> None:
    path = flow.path

    def need_node(target: str, line: int, where: str) -> None:
        if target not in flow.nodes:
            raise DataFileError(path, f"{where} goes to node '{target}', which does not exist", line)

    need_node(flow.start, doc.line_of("start"), "'start'")
    for node in flow.nodes.values():
        spec: LineDict = raw_nodes[node.name]
        for intent, target in node.routes.items():
            need_node(target, spec["routes"].line_of(intent), f"node '{node.name}' route '{intent}'")
        for key, target in node.dtmf.items():
            need_node(target, spec["dtmf"].line_of(key), f"node '{node.name}' key '{key}'")
        if node.next:
            need_node(node.next, spec.line_of("next"), f"node '{node.name}' next")
        if node.auth and flow.auth is None:
            raise DataFileError(
                path, f"node '{node.name}' needs auth but the flow has no 'auth' section", node.line
            )
    for routes, raw in ((flow.global_intents, globals_raw), (flow.global_dtmf, dtmf_raw)):
        for key, route in routes.items():
            if route.action == "node":
                need_node(route.target, raw.line_of(key), f"global '{key}'")
    intents_with_nodes: dict[str, str] = {}
    for node in flow.nodes.values():
        if node.intent:
            if node.intent in intents_with_nodes:
                first = intents_with_nodes[node.intent]
                message = f"intent '{node.intent}' enters both '{first}' and '{node.name}'"
                raise DataFileError(path, message, node.line)
            intents_with_nodes[node.intent] = node.name


def prompt_ids(flow: Flow) -> Iterable[str]:
    """Every prompt the flow and the dialogue engine say, in every language."""
    yield from SYSTEM_PROMPTS
    yield from QUEUE_PROMPTS
    for node in flow.nodes.values():
        yield from (p for p in (node.prompt, node.examples, node.confirm, node.say) if p)
        yield from (slot.prompt for slot in node.slots if slot.prompt)
    if flow.auth:
        yield from (slot.prompt for slot in flow.auth.slots)


def check_against_nlu(flow: Flow, known_intents: set[str], nlu_source: Path) -> None:
    """Every intent the flow routes must be one the NLU is trained on."""
    doc = load_yaml(flow.path)
    uses: list[tuple[str, str, int]] = [
        (intent, "global intent", doc.get("global_intents", LineDict()).line_of(intent))
        for intent in flow.global_intents
    ]
    for node in flow.nodes.values():
        spec = doc["nodes"][node.name]
        uses.extend((i, f"node '{node.name}' route", spec["routes"].line_of(i)) for i in node.routes)
        if node.intent:
            uses.append((node.intent, f"node '{node.name}'", spec.line_of("intent")))
    for intent, where, line in uses:
        if intent not in known_intents:
            message = f"{where} uses intent '{intent}', which the NLU data ({nlu_source}) does not define"
            raise DataFileError(flow.path, message, line)
