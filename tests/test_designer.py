"""Designers' tools (validate, train, nlu try, nlu report) run as commands, on copies of the project data."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest

from voicebot.config import PROJECT_ROOT, Config
from voicebot.designer.commands import add_commands
from voicebot.designer.report import (
    NluReport,
    Prediction,
    Thresholds,
    accuracy_by_intent,
    supported_thresholds,
    write_overview,
)
from voicebot.designer.validate import ERROR, WARNING, Finding, validate_project
from voicebot.dialogue.actions import ActionRegistry
from voicebot.dialogue.flow import load_flow
from voicebot.dialogue.manager import DialogueManager, Say
from voicebot.errors import DataFileError
from voicebot.events import CallEvent, DialogueTransition
from voicebot.nlu.rasa_engine import RasaNlu, languages, latest_model, train
from voicebot.scenarios import load_scenario

# A task the demo bank does not have yet, worded unlike any existing intent (loan_info already
# covers mortgage rates, so a mortgage intent would test the data's overlap rather than the tools).
NEW_INTENT = "order_checkbook"
NEW_EXAMPLES = [
    "i need a new checkbook",
    "can i order a checkbook",
    "order checks for my account",
    "i ran out of checks",
    "please send me a cheque book",
    "i'd like some more checks",
    "how do i get a new book of checks",
    "my checkbook is almost empty",
    "can you mail me a checkbook",
    "i want to order cheques",
    "send a checkbook to my house",
    "i need more paper checks",
]
NEW_NODE = f"""
  {NEW_INTENT}:
    intent: {NEW_INTENT}
    say: checkbook_ordered
    next: anything_else
"""


def run_command(argv: list[str], config: Config, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Runs one designer subcommand as cli.py would; returns the exit code, stdout and stderr."""
    parser = argparse.ArgumentParser(prog="voicebot")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.handler(args, config)
    out, err = capsys.readouterr()
    return code, out, err


def line_of(path: Path, pattern: str) -> int:
    """The first line (1-based) that, stripped, matches ``pattern`` in full."""
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if re.fullmatch(pattern, line.strip()))


@pytest.fixture
def project(tmp_path: Path, config: Config) -> Config:
    """A Config pointing at a scratch copy of nlu_data/ and prompts/ (without the demo recordings)."""
    shutil.copytree(PROJECT_ROOT / "nlu_data", tmp_path / "nlu_data")
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts", ignore=shutil.ignore_patterns("demo"))
    nlu = config.nlu.replace(data_dir=str(tmp_path / "nlu_data"), models_dir=str(tmp_path / "models"))
    return config.replace(flow_dir=str(tmp_path / "prompts"), nlu=nlu)


def data_path(config: Config, *parts: str) -> Path:
    return config.path(config.nlu.data_dir).joinpath(*parts)


def flow_path(config: Config, name: str = "flow.yml") -> Path:
    return config.path(config.flow_dir) / name


def add_new_intent(config: Config, examples: list[str]) -> None:
    lines = "".join(f"    - {example}\n" for example in examples)
    data_path(config, "en", "checkbooks.yml").write_text(
        f'version: "3.1"\nnlu:\n- intent: {NEW_INTENT}\n  examples: |\n{lines}'
    )


def add_new_node(config: Config) -> None:
    """The new node in the flow, and its prompt and intent label in every language's prompts."""
    with flow_path(config).open("a") as flow:
        flow.write(NEW_NODE)
    for prompts in sorted(config.path(config.flow_dir).glob("*.yml")):
        if prompts.name != "flow.yml":
            add_prompt(prompts, "checkbook_ordered", "Your new checkbook is on its way.")
            with prompts.open("a") as file:
                file.write(f"  {NEW_INTENT}: order a checkbook\n")  # each file ends with intent_labels


def add_prompt(path: Path, prompt_id: str, text: str) -> None:
    content = path.read_text()
    assert "\nprompts:\n" in content
    path.write_text(content.replace("\nprompts:\n", f"\nprompts:\n  {prompt_id}: {text}\n", 1))


def remove_prompt(path: Path, prompt_id: str) -> None:
    """Deletes a prompt's key line and its continuation lines (indented deeper)."""
    lines = path.read_text().splitlines(keepends=True)
    first = next(n for n, line in enumerate(lines) if line.startswith(f"  {prompt_id}:"))
    last = first + 1
    while last < len(lines) and lines[last].startswith("   "):
        last += 1
    path.write_text("".join(lines[:first] + lines[last:]))


def only_languages(config: Config, *keep: str) -> None:
    """Leaves the NLU data of ``keep`` only in a scratch project (the prompts stay: the flow's language
    keys need them)."""
    for language in languages(config.path(config.nlu.data_dir)):
        if language not in keep:
            shutil.rmtree(data_path(config, language))
            data_path(config, "config", f"{language}.yml").unlink()


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]


# ----- validate -----------------------------------------------------------------------------------


def test_project_data_validates_without_errors(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_command(["validate"], config, capsys)
    assert code == 0, out
    assert "0 error(s)" in out


@pytest.mark.parametrize(
    ("relative", "corruption"),
    [
        (("nlu_data", "en", "cards.yml"), "- intent: broken\n  examples: |\n    - one\n   bad: [\n"),
        (("prompts", "flow.yml"), "  bad_node:\n    say: [unclosed\n"),
    ],
    ids=["nlu_data", "flow"],
)
def test_broken_yaml_gives_one_error_with_file_and_line(
    project: Config, capsys: pytest.CaptureFixture[str], relative: tuple[str, ...], corruption: str
) -> None:
    path = Path(project.path(project.nlu.data_dir)).parent.joinpath(*relative)
    lines_before = len(path.read_text().splitlines())
    with path.open("a") as file:
        file.write(corruption)
    code, out, _ = run_command(["validate"], project, capsys)
    assert code == 1
    reported = [line for line in out.splitlines() if ": error: " in line]
    assert len(reported) == 1, out
    match = re.match(rf"{re.escape(str(path))}:(\d+): error: invalid YAML", reported[0])
    assert match, reported[0]
    assert int(match[1]) > lines_before  # the line is in the part that broke the file


def test_intent_routed_but_never_trained_is_one_error_per_language_at_its_flow_line(
    project: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    add_new_node(project)
    code, out, _ = run_command(["validate"], project, capsys)
    assert code == 1
    line = line_of(flow_path(project), f"intent: {NEW_INTENT}")
    assert [line for line in out.splitlines() if ": error: " in line] == [
        f"{flow_path(project)}:{line}: error: node '{NEW_INTENT}' uses intent '{NEW_INTENT}', which the NLU "
        f"data ({data_path(project, language)}) does not define"
        for language in ("en", "es", "fa")
    ]


def test_a_prompt_in_the_wrong_script_is_reported_where_it_is(project: Config) -> None:
    """An English sentence left in the Persian file, a Persian one pasted into the Spanish file."""
    persian, spanish = flow_path(project, "fa.yml"), flow_path(project, "es.yml")
    remove_prompt(persian, "goodbye")
    add_prompt(persian, "goodbye", "Thank you for calling, {name}. Goodbye!")
    remove_prompt(spanish, "no_input")
    add_prompt(spanish, "no_input", "ببخشید، چیزی نشنیدم.")

    located = {(f.severity, f.path, f.line, f.message) for f in validate_project(project)}

    assert (
        WARNING, persian, line_of(persian, "goodbye: .*"),
        "prompt 'goodbye' is mostly not in the Arabic script of 'fa': untranslated?",
    ) in located  # fmt: skip
    assert (
        WARNING, spanish, line_of(spanish, "no_input: .*"),
        "prompt 'no_input' is mostly not in the Latin script of 'es': untranslated?",
    ) in located  # fmt: skip
    assert not any("script" in message for *_, message in located if "goodbye" not in message
                   and "no_input" not in message)  # fmt: skip


def test_missing_spanish_prompt_and_persian_intent_are_reported_where_they_are(project: Config) -> None:
    spanish, persian, english = (flow_path(project, f"{language}.yml") for language in ("es", "fa", "en"))
    remove_prompt(spanish, "balance_result")  # the flow's check_balance node says it
    loans = data_path(project, "fa", "loans.yml")
    loans.write_text(loans.read_text().replace("- intent: loan_info\n", "- intent: loan_info_renamed\n"))
    add_prompt(persian, "only_in_persian", "فقط فارسی")  # and the other way round:
    add_prompt(english, "only_in_english", "English only.")  # keys one file has, unused by the flow
    # Two Spanish intents whose examples differ in accents only: one feature for the model.
    data_path(project, "es", "checkbooks.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: order_checkbook\n  examples: |\n    - cuánto cuesta una chequera\n'
        "- intent: checkbook_price\n  examples: |\n    - Cuanto  cuesta una chequera\n"
    )

    findings = validate_project(project)
    located = {(f.severity, f.path, f.line, f.message) for f in findings}
    flow = flow_path(project)
    assert (
        ERROR, spanish, line_of(spanish, "prompts:"),
        f"prompt 'balance_result' is used by the flow ({flow}) but not defined here",
    ) in located  # fmt: skip
    assert (
        ERROR, flow, line_of(flow, "intent: loan_info"),
        f"node 'loan_info' uses intent 'loan_info', which the NLU data ({data_path(project, 'fa')}) does "
        "not define",
    ) in located  # fmt: skip
    assert (
        WARNING, persian, line_of(persian, "only_in_persian: .*"),
        f"prompt 'only_in_persian' is not in {english} (the default language's)",
    ) in located  # fmt: skip
    for other in (spanish, persian):
        assert (
            WARNING, other, line_of(other, "prompts:"),
            f"prompt 'only_in_english' is in {english}:{line_of(english, 'only_in_english: .*')} but "
            "missing here",
        ) in located  # fmt: skip
    checkbooks = data_path(project, "es", "checkbooks.yml")
    assert any(
        (f.severity, f.path, f.line) == (ERROR, checkbooks, 5) and "'checkbook_price'" in f.message
        for f in findings
    )
    assert not [f for f in errors(findings) if f.path == english]  # only the languages that lack them


def test_designer_mistakes_are_each_reported_where_they_are(project: Config) -> None:
    # An intent with too few examples, one of them also under check_balance, that the flow never routes.
    add_new_intent(project, [*NEW_EXAMPLES[:3], "balance"])
    # A slot expecting an entity that no example annotates, and a node nothing leads to.
    with flow_path(project).open("a") as flow:
        flow.write("  lonely:\n    slots:\n      colour: {kind: entity, prompt: ask_pin}\n    say: goodbye\n")
    # NLU data for a language the prompts do not cover.
    shutil.copytree(data_path(project, "en"), data_path(project, "fr"))
    shutil.copy(data_path(project, "config", "en.yml"), data_path(project, "config", "fr.yml"))

    findings = validate_project(project)
    located = {(f.severity, f.path.name, f.line, f.message.split(" ")[0]) for f in findings}
    new_file = data_path(project, "en", "checkbooks.yml")
    accounts = data_path(project, "en", "accounts.yml")
    flow = flow_path(project)
    assert (ERROR, "accounts.yml", line_of(accounts, "- balance"), "example") in located
    assert (WARNING, "checkbooks.yml", line_of(new_file, f"- intent: {NEW_INTENT}"), "intent") in located
    assert (ERROR, "flow.yml", line_of(flow, "colour: .*"), "slot") in located
    assert (WARNING, "flow.yml", line_of(flow, "lonely:"), "node") in located
    assert (ERROR, "fr.yml", None, "no") in located
    messages = [f.message for f in findings if f.path in (accounts, new_file)]
    duplicate = f"'{NEW_INTENT}' ({new_file}:{line_of(new_file, '- balance')})"
    assert any(m.startswith("example 'balance'") and duplicate in m for m in messages)
    assert any(m.startswith(f"intent '{NEW_INTENT}' has 4 examples") for m in messages)
    assert any(m.startswith(f"intent '{NEW_INTENT}' is trained but the flow") for m in messages)


# Designer files with a key given twice: (file, what is appended, the key, the lines of the two in
# the appended text, 0 where the first is the file's own). YAML itself keeps the second silently (a
# second `main_menu:` node replaces the first).
DUPLICATE_KEYS = {
    "flow node": (("prompts", "flow.yml"), "  main_menu:\n    prompt: main_menu\n", "main_menu", (0, 1)),
    "prompts section": (("prompts", "es.yml"), "prompts:\n  goodbye: Adiós.\n", "prompts", (0, 1)),
    "nlu entry": (
        ("nlu_data", "es", "cards.yml"),
        "- intent: lost_card\n  intent: report_fraud\n  examples: |\n    - a\n", "intent", (1, 2),
    ),
    "nlu top level": (
        ("nlu_data", "fa", "loans.yml"), "nlu:\n- intent: loan_info\n  examples: |\n    - a\n", "nlu", (0, 1),
    ),
    "pipeline config": (("nlu_data", "config", "en.yml"), "language: en\n", "language", (0, 1)),
}  # fmt: skip


@pytest.mark.parametrize(
    ("relative", "addition", "key", "lines"), DUPLICATE_KEYS.values(), ids=DUPLICATE_KEYS
)
def test_a_key_given_twice_in_a_designer_file_is_one_error_at_its_line(
    project: Config,
    capsys: pytest.CaptureFixture[str],
    relative: tuple[str, ...],
    addition: str,
    key: str,
    lines: tuple[int, int],
) -> None:
    path = Path(project.path(project.nlu.data_dir)).parent.joinpath(*relative)
    length = len(path.read_text().splitlines())
    first = length + lines[0] if lines[0] else line_of(path, rf"(- )?{key}:.*")
    second = length + lines[1]
    with path.open("a") as file:
        file.write(addition)
    code, out, _ = run_command(["validate"], project, capsys)
    assert code == 1
    assert [line for line in out.splitlines() if ": error: " in line] == [
        f"{path}:{second}: error: invalid YAML: duplicate key '{key}' (first at line {first})"
    ]


def test_a_key_given_twice_in_a_scenario_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "balance_dtmf.yml"
    shutil.copy(PROJECT_ROOT / "tests" / "scenarios" / path.name, path)
    first = line_of(path, "outcome: .*")
    with path.open("a") as file:
        file.write("outcome: escalated\n")
    second = len(path.read_text().splitlines())
    with pytest.raises(
        DataFileError,
        match=rf"{path}:{second}: invalid YAML: duplicate key 'outcome' \(first at line {first}\)",
    ):
        load_scenario(path)


@pytest.mark.parametrize("kind", ["intent", "synonym"])
def test_an_intent_or_synonym_defined_twice_is_an_error_naming_both_places(
    project: Config, kind: str
) -> None:
    """Rasa's reader merges two blocks of one name silently: a designer who adds an 'intent' block
    to a second file, or pastes one twice, would not know that the two are one intent."""
    name = "check_balance" if kind == "intent" else "checking"
    existing = next(
        path
        for path in sorted(data_path(project, "en").rglob("*.yml"))
        if f"- {kind}: {name}\n" in path.read_text()
    )
    added = data_path(project, "en", "updates.yml")  # read after the file that has it
    added.write_text(f'version: "3.1"\nnlu:\n- {kind}: {name}\n  examples: |\n    - zebra crossing\n')

    duplicates = [f for f in validate_project(project) if "defined twice" in f.message]

    assert [(f.severity, f.path, f.line) for f in duplicates] == [(ERROR, added, 3)]
    assert f"{kind} '{name}'" in duplicates[0].message
    assert f"{existing}:{line_of(existing, f'- {kind}: {name}')}" in duplicates[0].message


def test_an_intent_with_an_empty_examples_block_is_an_error(project: Config) -> None:
    """Rasa drops an intent without examples: the model would never give it, though the flow may route it."""
    cards = data_path(project, "en", "cards.yml")
    line = len(cards.read_text().splitlines()) + 1
    with cards.open("a") as file:
        file.write("- intent: order_checkbook\n  examples: |\n\n")

    found = [f for f in validate_project(project) if "'order_checkbook'" in f.message]

    assert (ERROR, cards, line) in {(f.severity, f.path, f.line) for f in found}
    assert any("no examples" in f.message for f in found if f.severity == ERROR)


# ----- train and the acceptance path --------------------------------------------------------------


def test_new_intent_validates_trains_and_routes_a_new_phrase(
    project: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    only_languages(project, "en")  # an English designer's change; the other languages need their own data
    add_new_intent(project, NEW_EXAMPLES)
    add_new_node(project)
    code, out, _ = run_command(["validate"], project, capsys)
    assert code == 0, out

    code, out, err = run_command(["train"], project, capsys)
    assert code == 0
    assert re.fullmatch(r"en: trained in \d+s: .*\.tar\.gz\n", out)
    phases = [line.split("] ", 1)[1] for line in err.splitlines()]
    assert phases == ["en: validating data", "en: training", "en: packaging"]
    code, out, _ = run_command(["train"], project, capsys)
    assert out.startswith("en: up to date: ")

    nlu = RasaNlu.load(latest_model("en", project.path(project.nlu.models_dir)))
    phrase = "hi i have used up all my checks could you order me another checkbook"
    result = asyncio.run(nlu.parse(phrase))
    events: list[CallEvent] = []
    dialogue = DialogueManager(
        load_flow(project.path(project.flow_dir)), "en", ActionRegistry(), project.policy,
        call_id="test", caller_id="+15550100", emit=events.append,
    )  # fmt: skip
    dialogue.start()
    said = [o.prompt_id for o in dialogue.on_utterance(phrase, result) if isinstance(o, Say)]
    assert result.intent.name == NEW_INTENT
    assert any(isinstance(e, DialogueTransition) and e.to_node == NEW_INTENT for e in events)
    assert said[0] == "checkbook_ordered"


# ----- nlu try and nlu report ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def project_model(config: Config) -> Path:
    """The project's own model (training is skipped when it is up to date)."""
    return train(
        config.language, config.path(config.nlu.data_dir), config.path(config.nlu.models_dir)
    ).model_path


@pytest.fixture(scope="module")
def language_models(config: Config) -> dict[str, Path]:
    """The project's model for every language with NLU data, as `voicebot train` leaves them."""
    data_dir, models_dir = config.path(config.nlu.data_dir), config.path(config.nlu.models_dir)
    return {language: train(language, data_dir, models_dir).model_path for language in languages(data_dir)}


def test_nlu_try_prints_ranking_and_entities(
    config: Config, project_model: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_command(["nlu", "try", "what's the balance of my savings account"], config, capsys)
    assert code == 0
    assert out.startswith("check_balance ")
    assert "account_type = 'savings'" in out

    phrases = tmp_path / "phrases.txt"
    phrases.write_text("i lost my credit card\n\nmove 50 dollars to checking\n")
    code, out, _ = run_command(["nlu", "try", "--file", str(phrases)], config, capsys)
    assert code == 0
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["intent"] for r in results] == ["report_lost_card", "transfer_funds"]
    assert set(results[0]) == {"text", "intent", "confidence", "ranking", "entities"}
    assert results[0]["ranking"][0] == {"name": "report_lost_card", "confidence": results[0]["confidence"]}
    amount = results[1]["entities"][0]
    assert (amount["entity"], amount["value"]) == ("amount", 50.0)


# Phrasings written for these tests, in neither the training data nor the held-out sets.
SPANISH_BALANCE = [
    "Por favor revise qué saldo tengo ahora mismo en mi cuenta de ahorros",
    "por favor revise que saldo tengo ahora mismo en mi cuenta de ahorros",
]
PERSIAN_TRANSFER = "سلام وقت بخير، ۳۵۰ دلار از حساب پس‌اندازم بفرستید به جاري لطفا"


def test_nlu_try_in_spanish_and_persian(
    config: Config, language_models: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_command(["nlu", "try", "--language", "es", SPANISH_BALANCE[0]], config, capsys)
    assert code == 0
    assert out.startswith("check_balance ")
    start = SPANISH_BALANCE[0].index("cuenta de ahorros")
    assert f"account_type = 'savings'  ('cuenta de ahorros' at {start}-{start + 17}" in out

    phrases = tmp_path / "phrases.txt"
    phrases.write_text("\n".join(SPANISH_BALANCE) + "\n")
    code, out, _ = run_command(["nlu", "try", "--language", "es", "--file", str(phrases)], config, capsys)
    accented, plain = [json.loads(line) for line in out.splitlines()]
    assert accented["text"] == SPANISH_BALANCE[0]  # what the caller said, accents and all
    assert {k: v for k, v in accented.items() if k != "text"} == {
        k: v for k, v in plain.items() if k != "text"
    }

    phrases.write_text(PERSIAN_TRANSFER + "\n")
    code, out, _ = run_command(["nlu", "try", "--language", "fa", "--file", str(phrases)], config, capsys)
    assert code == 0
    (result,) = [json.loads(line) for line in out.splitlines()]
    assert result["intent"] == "transfer_funds"
    found = {(e["entity"], e["value"], e["text"]) for e in result["entities"]}
    assert ("amount", 350.0, "۳۵۰ دلار") in found  # the caller's digits, read as 350
    assert {("account_type", "savings", "حساب پس‌اندازم"), ("account_type", "checking", "جاري")} <= found


def test_nlu_report_writes_html_with_both_figures(
    config: Config, project_model: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    code, out, _ = run_command(
        ["nlu", "report", "--language", "en", "--folds", "2", "--asr-sample", "2", "--out", str(out_dir)],
        config,
        capsys,
    )
    assert code == 0
    assert out.splitlines()[-1] == f"report: {out_dir / 'index.html'}"
    assert "cross-validation (2 folds, " in out and "held-out via TTS -> telephone -> " in out
    page = (out_dir / "index.html").read_text()
    for figure in ("confusion_matrix.png", "confidence_histogram.png"):
        assert (out_dir / figure).read_bytes().startswith(b"\x89PNG")
        assert f'src="{figure}"' in page
    for section in (
        "Per intent", "Held-out set: accuracy per intent", "Most confused pairs",
        "Through the telephone and ASR", "report_lost_card",
    ):  # fmt: skip
        assert section in page


def test_held_out_accuracy_per_intent_and_the_overview_of_languages(tmp_path: Path, config: Config) -> None:
    def said(gold: str, understood: str) -> Prediction:
        return Prediction("text", gold, understood, understood, 0.9)

    held_out = [
        said("pay_bill", "pay_bill"), said("pay_bill", "transfer_funds"), said("pay_bill", "nlu_fallback"),
        said("pay_bill", "transfer_funds"), said("goodbye", "goodbye"),
    ]  # fmt: skip
    rows = accuracy_by_intent(held_out)
    assert [(r.intent, r.phrases, r.accuracy, r.mistaken_for) for r in rows] == [
        ("pay_bill", 4, 0.25, [("transfer_funds", 2), ("nlu_fallback", 1)]),
        ("goodbye", 1, 1.0, []),
    ]
    reports = [
        NluReport(language, tmp_path / f"{language}.tar.gz", 2, held_out, held_out[: n + 1], [], "",
                  config.policy, Thresholds(None, None), tmp_path / language / "index.html")
        for n, language in enumerate(["es", "fa"])
    ]  # fmt: skip
    page = write_overview(tmp_path, reports).read_text()
    assert "<a href='es/index.html'>es</a>" in page and "<a href='fa/index.html'>fa</a>" in page
    assert "<td>1</td><td>1.000</td>" in page and "<td>2</td><td>0.500</td>" in page  # held-out accuracy


def prediction(confidence: float, right: bool) -> Prediction:
    return Prediction("text", "gold", "gold" if right else "other", "gold" if right else "other", confidence)


def test_supported_thresholds_read_off_correct_and_wrong_predictions() -> None:
    wrong_low = [prediction(c, False) for c in (0.10, 0.15, 0.20, 0.25, 0.30)]
    right_middle = [prediction(c, True) for c in (0.35, 0.45, 0.50)]
    high = [prediction(round(0.60 + i / 100, 2), True) for i in range(19)]
    high += [prediction(0.65, False), prediction(0.66, False)]
    thresholds = supported_thresholds(wrong_low + right_middle + high)
    assert thresholds.reject == 0.35  # everything below is wrong, everything just above right
    assert thresholds.accept == 0.66  # from here up all 13 are right; from 0.65 up 14 of 16
    assert supported_thresholds([prediction(0.9, True), prediction(0.2, True)]).reject is None
