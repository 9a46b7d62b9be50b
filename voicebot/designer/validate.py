"""`voicebot validate`: checks the NLU data and the flow, each on its own and against each other.

Every finding names the file and, where there is one, the line. Structural problems (broken YAML,
malformed examples) stop the checks that depend on that data, so one mistake gives one error.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from voicebot.config import Config
from voicebot.datafile import LineDict, load_yaml
from voicebot.dialogue.flow import Flow, Node, SlotSpec, check_against_nlu, load_flow, prompt_ids
from voicebot.dialogue.policy import OUT_OF_SCOPE
from voicebot.errors import DataFileError
from voicebot.nlu.normalize import normalise
from voicebot.nlu.rasa_engine import (
    NLU_ITEM_KINDS,
    config_file,
    languages,
    training_files,
    validate_config,
    validate_training_file,
)

ERROR = "error"
WARNING = "warning"
# Fewer examples than this rarely generalise to the ways callers really phrase a request.
MIN_EXAMPLES = 10
# The dialogue engine reads these itself (yes/no answers, out-of-scope handling), so the flow need not
# route them.
ENGINE_INTENTS = frozenset({"affirm", "deny", OUT_OF_SCOPE})
# The sections of prompts/<language>.yml whose keys every language has (compared with the default
# language's file): what the bot says, and the names it gives intents when it confirms them.
PROMPT_SECTIONS = {"prompts": "prompt", "intent_labels": "intent label"}  # section: what one key is


@dataclass(frozen=True)
class Finding:
    severity: str  # ERROR | WARNING
    path: Path
    line: int | None
    message: str

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message}"


def _error(exc: DataFileError) -> Finding:
    finding = Finding(ERROR, exc.path, exc.line, str(exc))
    # DataFileError's text starts with the same "path:line: " that the finding prints itself.
    return Finding(ERROR, exc.path, exc.line, str(exc).removeprefix(f"{finding.location}: "))


@dataclass(frozen=True)
class Example:
    intent: str
    text: str  # as Rasa reads it: entity annotations replaced by their text
    entities: frozenset[str]
    path: Path
    line: int


@dataclass(frozen=True)
class Block:
    """One entry of a file's ``nlu`` list: an intent, synonym, regex or lookup, where it starts."""

    kind: str  # one of NLU_ITEM_KINDS
    name: str
    path: Path
    line: int


@dataclass(frozen=True)
class NluData:
    examples: tuple[Example, ...]
    intent_lines: dict[str, tuple[Path, int]]  # where each intent is first defined
    blocks: tuple[Block, ...] = ()  # every entry of every file, in file order

    @property
    def annotated_entities(self) -> set[str]:
        return {entity for example in self.examples for entity in example.entities}


def read_examples(language: str, data_dir: Path) -> NluData:
    """Every intent example with its file and line; the files must have passed validate_training_file."""
    from rasa.shared.nlu.training_data import entities_parser

    examples: list[Example] = []
    intent_lines: dict[str, tuple[Path, int]] = {}
    blocks: list[Block] = []
    for path in training_files(language, data_dir):
        for item in load_yaml(path)["nlu"]:
            kind = next(kind for kind in NLU_ITEM_KINDS if kind in item)  # exactly one: validated
            blocks.append(Block(kind, str(item[kind]), path, item.line_of(kind)))
            if kind != "intent":
                continue
            intent = str(item["intent"])
            intent_lines.setdefault(intent, (path, item.line_of("intent")))
            first_line = item.line_of("examples") + 1  # a block scalar starts on the line after its key
            for offset, raw in enumerate(item["examples"].splitlines()):
                example = raw.strip()[2:].strip()  # validate_training_file checked the "- " prefix
                if example:
                    entities = entities_parser.find_entities_in_training_example(example)
                    examples.append(
                        Example(
                            intent=intent,
                            text=entities_parser.replace_entities(example),
                            entities=frozenset(e["entity"] for e in entities),
                            path=path,
                            line=first_line + offset,
                        )
                    )
    return NluData(tuple(examples), intent_lines, tuple(blocks))


def _structure_findings(language: str, data_dir: Path) -> list[Finding]:
    findings: list[Finding] = []
    try:
        validate_config(config_file(language, data_dir))
        files = training_files(language, data_dir)
    except DataFileError as exc:
        return [_error(exc)]
    for path in files:
        try:
            validate_training_file(path)
        except DataFileError as exc:
            findings.append(_error(exc))
    return findings


def _rasa_findings(language: str, data_dir: Path) -> list[Finding]:
    """Loads the data the way training does and runs Rasa's own checks (TrainingData.validate).

    Rasa's Validator is not used: for an NLU-only project its checks compare against a domain we do
    not have, and its duplicate-example check is repeated below with file and line.
    """
    from rasa.shared.exceptions import RasaException
    from rasa.shared.importers.importer import TrainingDataImporter

    language_dir = data_dir / language
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # Rasa reports its findings as UserWarnings
        try:
            importer = TrainingDataImporter.load_nlu_importer_from_config(
                str(config_file(language, data_dir)), training_data_paths=[str(language_dir)]
            )
            importer.get_nlu_data(language).validate()
        except (RasaException, ValueError) as exc:
            return [Finding(ERROR, language_dir, None, f"Rasa cannot load the data: {exc}")]
    return [
        Finding(WARNING, language_dir, None, f"Rasa: {w.message}")
        for w in caught
        if issubclass(w.category, UserWarning)
    ]


def _example_findings(data: NluData, language: str) -> list[Finding]:
    findings: list[Finding] = []
    by_text: dict[str, list[Example]] = defaultdict(list)
    for example in data.examples:
        by_text[normalise(example.text, language)].append(example)  # as the model is trained on it
    for same in by_text.values():
        if len({e.intent for e in same}) > 1:
            first, *others = same
            clashes = [e for e in others if e.intent != first.intent]
            elsewhere = ", ".join(f"'{e.intent}' ({e.path}:{e.line})" for e in clashes)
            message = f"example '{first.text}' is under intent '{first.intent}' and also {elsewhere}"
            findings.append(Finding(ERROR, first.path, first.line, message))
    counts = Counter(example.intent for example in data.examples)
    for intent, (path, line) in data.intent_lines.items():
        count = counts[intent]
        if count == 0:
            # Rasa drops an intent without examples: the model never gives it, though the flow may route it.
            message = f"intent '{intent}' has no examples (the model would not know it)"
            findings.append(Finding(ERROR, path, line, message))
        elif count < MIN_EXAMPLES:
            message = f"intent '{intent}' has {count} examples; give it at least {MIN_EXAMPLES}"
            findings.append(Finding(WARNING, path, line, message))
    return findings


def _duplicate_findings(data: NluData) -> list[Finding]:
    """A name given two blocks (in one file or two): Rasa's reader merges them silently, so a designer
    who pastes a block twice or adds an 'intent' block to another file would not know they are one."""
    first: dict[tuple[str, str], Block] = {}
    findings: list[Finding] = []
    for block in data.blocks:
        earlier = first.setdefault((block.kind, block.name), block)
        if earlier is not block:
            message = (
                f"{block.kind} '{block.name}' is defined twice: also at {earlier.path}:{earlier.line} "
                "(Rasa would merge the two blocks); keep one"
            )
            findings.append(Finding(ERROR, block.path, block.line, message))
    return findings


def _routed_but_untrained(flow: Flow, known: set[str], nlu_dir: Path) -> list[Finding]:
    missing = flow.intents() - known
    findings = []
    for intent in sorted(missing):
        # check_against_nlu stops at the first unknown intent: treating the other missing ones as
        # known makes it report this one, at its first use in the flow.
        try:
            check_against_nlu(flow, known | (missing - {intent}), nlu_dir)
        except DataFileError as exc:
            findings.append(_error(exc))
    return findings


def _slots_with_lines(flow: Flow, doc: LineDict) -> list[tuple[SlotSpec, int]]:
    slots = [
        (slot, doc["nodes"][node.name]["slots"].line_of(slot.name))
        for node in flow.nodes.values()
        for slot in node.slots
    ]
    if flow.auth:
        slots += [(slot, doc["auth"]["slots"].line_of(slot.name)) for slot in flow.auth.slots]
    return slots


def unreachable_nodes(flow: Flow) -> list[Node]:
    """Nodes the caller can never get to: not reached from start, global routes or an intent."""
    global_targets = [
        route.target
        for route in (*flow.global_intents.values(), *flow.global_dtmf.values())
        if route.action == "node"
    ]
    intent_entries = [node.name for node in flow.nodes.values() if node.intent]
    pending = [flow.start, *global_targets, *intent_entries]
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        node = flow.nodes[name]
        pending.extend([*node.routes.values(), *node.dtmf.values(), *([node.next] if node.next else [])])
    return [node for node in flow.nodes.values() if node.name not in reached]


def _flow_findings(flow: Flow, doc: LineDict, data: NluData, language: str, nlu_dir: Path) -> list[Finding]:
    findings = _routed_but_untrained(flow, set(data.intent_lines), nlu_dir)
    for intent in sorted(set(data.intent_lines) - flow.intents() - ENGINE_INTENTS):
        path, line = data.intent_lines[intent]
        message = f"intent '{intent}' is trained but the flow ({flow.path}) never routes it"
        findings.append(Finding(WARNING, path, line, message))
    annotated = data.annotated_entities
    for slot, line in _slots_with_lines(flow, doc):
        if slot.kind == "entity" and slot.entity not in annotated:
            message = (
                f"slot '{slot.name}' takes entity '{slot.entity}', which no {language} NLU example "
                f"in {nlu_dir} annotates"
            )
            findings.append(Finding(ERROR, flow.path, line, message))
    return findings


def _language_findings(flow: Flow, nlu_languages: list[str]) -> list[Finding]:
    flow_dir = flow.path.parent
    findings = [
        Finding(ERROR, flow_dir / f"{language}.yml", None, f"no prompts for language '{language}'")
        for language in nlu_languages
        if language not in flow.languages
    ]
    findings += [
        Finding(WARNING, prompts.path, 1, f"prompts for '{language}', but no NLU data for that language")
        for language, prompts in flow.languages.items()
        if language not in nlu_languages
    ]
    return findings


def _prompt_findings(flow: Flow, reference: str) -> list[Finding]:
    """Each language's prompts file against the default language's, key by key, and against what the
    flow says. A prompt the flow uses that a language lacks is an error (calls in that language could
    not say it); any other key only one of the two files has is a warning."""
    used = set(prompt_ids(flow))
    docs = {language: load_yaml(prompts.path) for language, prompts in flow.languages.items()}
    findings: list[Finding] = []
    for language, prompts in flow.languages.items():
        for prompt_id in sorted(used - set(prompts.prompts)):
            line = docs[language].line_of("prompts")
            message = f"prompt '{prompt_id}' is used by the flow ({flow.path}) but not defined here"
            findings.append(Finding(ERROR, prompts.path, line, message))
    if reference not in flow.languages:
        return findings
    ref_path, ref_doc = flow.languages[reference].path, docs[reference]
    for language, prompts in flow.languages.items():
        if language == reference:
            continue
        doc = docs[language]
        for section, what in PROMPT_SECTIONS.items():
            ours, theirs = _section(ref_doc, section), _section(doc, section)
            for key in sorted(set(ours) - set(theirs)):
                if section == "prompts" and key in used:
                    continue  # the error above
                message = f"{what} '{key}' is in {ref_path}:{ours.line_of(key)} but missing here"
                findings.append(Finding(WARNING, prompts.path, doc.line_of(section), message))
            for key in sorted(set(theirs) - set(ours)):
                if section == "prompts" and key in used:
                    continue  # the reference's own error above
                message = f"{what} '{key}' is not in {ref_path} (the default language's)"
                findings.append(Finding(WARNING, prompts.path, theirs.line_of(key), message))
    return findings


# The script each language is written in, for spotting prompts left untranslated or pasted into
# the wrong file; languages not listed are not checked.
LANGUAGE_SCRIPTS = {"en": "Latin", "es": "Latin", "fa": "Arabic"}
_SCRIPT_LETTERS = {
    "Latin": re.compile(r"[A-Za-z\u00c0-\u024f]"),
    "Arabic": re.compile(r"[\u0600-\u06ff\ufb50-\ufdff\ufe70-\ufeff]"),
}


def _script_findings(flow: Flow) -> list[Finding]:
    """A prompt or intent label whose letters are mostly of another script than its language's."""
    findings: list[Finding] = []
    for language, prompts in flow.languages.items():
        script = LANGUAGE_SCRIPTS.get(language)
        if script is None:
            continue
        doc = load_yaml(prompts.path)
        texts = [("prompt", "prompts", key, p.text) for key, p in prompts.prompts.items()]
        texts += [
            ("intent label", "intent_labels", key, label) for key, label in prompts.intent_labels.items()
        ]
        for what, section, key, text in texts:
            letters = re.sub(r"\{[^}]*\}|[\W\d_]", "", text)  # placeholders and punctuation aside
            own = len(_SCRIPT_LETTERS[script].findall(letters))
            if letters and own < len(letters) / 2:
                message = (
                    f"{what} '{key}' is mostly not in the {script} script of '{language}': untranslated?"
                )
                findings.append(Finding(WARNING, prompts.path, _section(doc, section).line_of(key), message))
    return findings


def _section(doc: LineDict, name: str) -> LineDict:
    section = doc.get(name)
    return section if isinstance(section, LineDict) else LineDict()


def validate_project(config: Config) -> list[Finding]:
    """All findings for the configured NLU data and flow, errors and warnings, in file order."""
    data_dir = config.path(config.nlu.data_dir)
    nlu_languages = languages(data_dir)
    findings: list[Finding] = []
    if not nlu_languages:
        findings.append(Finding(ERROR, data_dir, None, "no NLU data: expected <language>/*.yml here"))
    data_by_language: dict[str, NluData] = {}
    for language in nlu_languages:
        structure = _structure_findings(language, data_dir)
        findings += structure
        if structure:
            continue  # the checks below would only repeat the problem
        data_by_language[language] = read_examples(language, data_dir)
        findings += _rasa_findings(language, data_dir)
        findings += _example_findings(data_by_language[language], language)
        findings += _duplicate_findings(data_by_language[language])
    try:
        flow = load_flow(config.path(config.flow_dir), check_prompts=False)  # _prompt_findings does
    except DataFileError as exc:
        findings.append(_error(exc))
    else:
        doc = load_yaml(flow.path)  # load_flow keeps no key lines; this gives them
        findings += _language_findings(flow, nlu_languages)
        findings += _prompt_findings(flow, config.language)
        findings += _script_findings(flow)
        for language, data in data_by_language.items():
            findings += _flow_findings(flow, doc, data, language, data_dir / language)
        findings += [
            Finding(
                WARNING,
                flow.path,
                doc["nodes"].line_of(node.name),
                f"node '{node.name}' can never be reached",
            )
            for node in unreachable_nodes(flow)
        ]
    return sorted(findings, key=lambda f: (str(f.path), f.line or 0, f.message))
