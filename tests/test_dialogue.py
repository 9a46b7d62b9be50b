"""The dialogue manager on the demo flow, fed understood turns directly (the NLU is tested elsewhere)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voicebot.config import PROJECT_ROOT, Config
from voicebot.demo.actions import register_bank_actions
from voicebot.demo.bank import AcmeBank
from voicebot.dialogue.actions import ActionRegistry
from voicebot.dialogue.flow import Flow, check_against_nlu, load_flow
from voicebot.dialogue.manager import DialogueManager, Handoff, Hangup, Output, Say
from voicebot.errors import DataFileError
from voicebot.events import CallEvent
from voicebot.nlu.base import Entity, IntentScore, NluResult
from voicebot.nlu.data import known_intents


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(PROJECT_ROOT / "prompts")


@pytest.fixture
def dialogue(flow: Flow, db_path: Path) -> DialogueManager:
    actions = ActionRegistry()
    register_bank_actions(actions, AcmeBank(db_path))
    events: list[CallEvent] = []
    manager = DialogueManager(
        flow, "en", actions, Config().policy, call_id="test", caller_id="+15550100", emit=events.append
    )
    manager.events = events  # type: ignore[attr-defined]
    return manager


def nlu(
    text: str, intent: str, confidence: float = 0.95, runner_up: float = 0.02, **entities: object
) -> NluResult:
    ranking = (IntentScore(intent, confidence), IntentScore("other", runner_up))
    found = tuple(
        Entity(name, value, text=str(value), start=text.find(str(value))) for name, value in entities.items()
    )
    return NluResult(text, IntentScore(intent, confidence), ranking, found)


def prompt_ids(outputs: list[Output]) -> list[str]:
    return [o.prompt_id for o in outputs if isinstance(o, Say)]


def keys(dialogue: DialogueManager, digits: str) -> list[Output]:
    out: list[Output] = []
    for key in digits:
        out += dialogue.on_dtmf(key)
    return out


def test_greets_and_asks_main_menu(dialogue: DialogueManager) -> None:
    assert prompt_ids(dialogue.start()) == ["greeting", "main_menu"]


def test_a_call_can_start_at_another_node(flow: Flow, db_path: Path) -> None:
    actions = ActionRegistry()
    register_bank_actions(actions, AcmeBank(db_path))
    manager = DialogueManager(flow, "en", actions, Config().policy, call_id="t", caller_id="+15550100",
                              emit=lambda event: None, home="report_lost_card")  # fmt: skip
    assert prompt_ids(manager.start()) == ["greeting", "auth_required", "ask_account_number"]


def test_balance_needs_identification_then_answers(dialogue: DialogueManager) -> None:
    dialogue.start()
    assert prompt_ids(dialogue.on_utterance("my balance", nlu("my balance", "check_balance"))) == [
        "auth_required",
        "ask_account_number",
    ]
    assert prompt_ids(keys(dialogue, "12345678")) == ["ask_pin"]
    assert dialogue.collecting_secret
    out = keys(dialogue, "4321#")
    assert prompt_ids(out) == ["balance_result", "anything_else"]
    assert "2,540 dollars and 75 cents" in out[0].text  # type: ignore[union-attr]
    out = dialogue.on_utterance("no", nlu("no", "deny"))
    assert isinstance(out[-1], Hangup) and out[-1].outcome == "contained"


def test_spoken_account_number_and_entities_fill_slots(dialogue: DialogueManager) -> None:
    dialogue.start()
    text = "move 50 dollars from savings to checking"
    result = nlu(text, "transfer_funds", amount=50.0)
    result = NluResult(
        text,
        result.intent,
        result.ranking,
        (
            Entity("amount", 50.0, start=5),
            Entity("account_type", "savings", start=text.find("savings")),
            Entity("account_type", "checking", start=text.find("checking")),
        ),
    )
    dialogue.on_utterance(text, result)
    out = dialogue.on_utterance("one two three four five six seven eight", nlu("...", "out_of_scope", 0.3))
    assert prompt_ids(out) == ["ask_pin"]
    out = keys(dialogue, "4321")
    assert prompt_ids(out) == ["confirm_transfer"]
    assert "from your savings account to your checking account" in out[0].text  # type: ignore[union-attr]
    out = dialogue.on_utterance("yes", nlu("yes", "affirm"))
    assert prompt_ids(out) == ["transfer_done", "anything_else"]


def test_an_account_number_misheard_at_the_top_is_taken_from_the_n_best_list(
    dialogue: DialogueManager,
) -> None:
    dialogue.start()
    dialogue.on_utterance("what's my balance", nlu("what's my balance", "check_balance"))
    misheard = "1-2-3-4-5-6-MNA"

    out = dialogue.on_utterance(
        misheard, nlu(misheard, "out_of_scope", 0.3), alternatives=("1 2 3 4 5 6 M&A", "1 2 3 4 5 6 7 8")
    )
    assert prompt_ids(out) == ["ask_pin"]


def test_without_a_fitting_hypothesis_a_misheard_account_number_is_asked_again(
    dialogue: DialogueManager,
) -> None:
    dialogue.start()
    dialogue.on_utterance("what's my balance", nlu("what's my balance", "check_balance"))
    misheard = "1-2-3-4-5-6-MNA"

    out = dialogue.on_utterance(misheard, nlu(misheard, "out_of_scope", 0.3), alternatives=("1 2 3 M&A",))
    assert prompt_ids(out)[0] == "slot_invalid"


def test_a_spanish_call_reads_and_speaks_numbers_in_spanish(flow: Flow, db_path: Path) -> None:
    """Spoken digits and amounts are read in the call's language (states.py), amounts in slots are
    said in it (walk.py), and actions are told it (ActionContext.language)."""
    actions = ActionRegistry()
    register_bank_actions(actions, AcmeBank(db_path))
    manager = DialogueManager(flow, "es", actions, Config().policy, call_id="t", caller_id="+15550100",
                              emit=lambda event: None)  # fmt: skip
    manager.start()
    text = "transferir de ahorros a corriente"
    request = NluResult(
        text,
        IntentScore("transfer_funds", 0.95),
        (IntentScore("transfer_funds", 0.95),),
        (
            Entity("account_type", "savings", start=text.find("ahorros")),
            Entity("account_type", "checking", start=text.find("corriente")),
        ),
    )
    manager.on_utterance(text, request)
    spoken = "eh, uno dos tres cuatro cinco seis siete ocho"
    assert prompt_ids(manager.on_utterance(spoken, nlu(spoken, "out_of_scope", 0.3))) == ["ask_pin"]
    assert prompt_ids(keys(manager, "4321")) == ["ask_transfer_amount"]
    amount = "cincuenta dólares con veinticinco centavos"
    out = manager.on_utterance(amount, nlu(amount, "out_of_scope", 0.3))
    assert prompt_ids(out) == ["confirm_transfer"]
    assert "cincuenta dólares con veinticinco centavos" in out[0].text  # type: ignore[union-attr]
    out = manager.on_utterance("sí", nlu("sí", "affirm"))
    assert prompt_ids(out)[0] == "transfer_done"
    assert "cincuenta dólares con veinticinco centavos" in out[0].text  # type: ignore[union-attr]
    assert "su cuenta corriente" in out[0].text  # type: ignore[union-attr]


def test_medium_confidence_is_confirmed(dialogue: DialogueManager) -> None:
    dialogue.start()
    out = dialogue.on_utterance("branch", nlu("branch", "branch_hours", 0.55, 0.2))
    assert prompt_ids(out) == ["confirm_intent"]
    assert "branch opening hours" in out[0].text  # type: ignore[union-attr]
    assert prompt_ids(dialogue.on_utterance("yes", nlu("yes", "affirm")))[0] == "branch_hours_result"


def test_ambiguous_top_two_are_confirmed(dialogue: DialogueManager) -> None:
    dialogue.start()
    out = dialogue.on_utterance("card", nlu("card", "report_lost_card", 0.75, 0.70))
    assert prompt_ids(out) == ["confirm_intent"]
    out = dialogue.on_utterance("no", nlu("no", "deny"))
    assert prompt_ids(out) == ["confirm_denied", "main_menu_examples"]


def test_two_failures_escalate_with_context(dialogue: DialogueManager) -> None:
    dialogue.start()
    out = dialogue.on_utterance("mumble", nlu("mumble", "check_balance", 0.2))
    assert prompt_ids(out) == ["no_match", "main_menu_examples"]
    out = dialogue.on_no_input()
    assert prompt_ids(out) == ["transfer"]
    handoff = next(o for o in out if isinstance(o, Handoff))
    assert handoff.record.reason == "no_input"
    assert handoff.record.transcript[0].speaker == "Bot"
    assert any(line.text == "mumble" for line in handoff.record.transcript)
    assert handoff.record.intents[0].intent == "check_balance"


def test_success_resets_the_failure_count(dialogue: DialogueManager) -> None:
    dialogue.start()
    dialogue.on_no_input()
    dialogue.on_utterance("branch hours", nlu("branch hours", "branch_hours"))
    out = dialogue.on_no_input()
    assert "transfer" not in prompt_ids(out)


def test_out_of_scope_twice_escalates(dialogue: DialogueManager) -> None:
    dialogue.start()
    assert prompt_ids(dialogue.on_utterance("pizza", nlu("pizza", "out_of_scope")))[0] == "out_of_scope"
    out = dialogue.on_utterance("weather", nlu("weather", "out_of_scope"))
    assert dialogue.handoff is not None and dialogue.handoff.reason == "out_of_scope"
    assert isinstance(out[-1], Hangup) and out[-1].outcome == "escalated"


def test_agent_by_key_zero_and_queue_from_last_task(dialogue: DialogueManager) -> None:
    dialogue.start()
    dialogue.on_utterance("pay a bill", nlu("pay a bill", "pay_bill"))
    out = dialogue.on_dtmf("0")
    assert dialogue.handoff is not None
    assert dialogue.handoff.reason == "caller_request" and dialogue.handoff.queue == "payments"
    assert isinstance(out[-1], Hangup)


def test_pin_and_card_numbers_never_reach_the_handoff(dialogue: DialogueManager) -> None:
    dialogue.start()
    dialogue.on_utterance("balance", nlu("balance", "check_balance"))
    keys(dialogue, "12345678")
    dialogue.on_utterance("four three two one", nlu("four three two one", "out_of_scope", 0.2))  # the PIN
    card = "my card is 4111 1111 1111 1111"
    dialogue.on_utterance(card, nlu(card, "talk_to_agent"))
    record = dialogue.handoff
    assert record is not None
    dump = str(record.to_dict())
    assert "4111 1111 1111 1111" not in dump and "4321" not in dump and "four three two one" not in dump
    assert "12345678" not in dump and "****5678" in dump
    assert record.auth_level == "authenticated"


def test_global_help_repeat_and_back(dialogue: DialogueManager) -> None:
    dialogue.start()
    assert prompt_ids(dialogue.on_utterance("help", nlu("help", "help"))) == ["help", "main_menu_examples"]
    assert prompt_ids(dialogue.on_utterance("again", nlu("again", "repeat"))) == ["main_menu_examples"]
    dialogue.on_utterance("hours", nlu("hours", "branch_hours"))
    assert prompt_ids(dialogue.on_utterance("main menu", nlu("main menu", "go_back"))) == ["main_menu"]


def test_wrong_pin_three_times_escalates(dialogue: DialogueManager) -> None:
    dialogue.start()
    dialogue.on_dtmf("1")
    for pin in ("0000", "1111"):
        keys(dialogue, "12345678")
        assert prompt_ids(keys(dialogue, pin)) == ["auth_failed", "ask_account_number"]
    keys(dialogue, "12345678")
    keys(dialogue, "2222")
    assert dialogue.handoff is not None and dialogue.handoff.reason == "auth_failed"


def test_flow_errors_name_file_and_line(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    flow_file = tmp_path / "prompts" / "flow.yml"
    text = flow_file.read_text()
    flow_file.write_text(text.replace("deny: goodbye", "deny: farewell"))
    with pytest.raises(DataFileError) as error:
        load_flow(tmp_path / "prompts")
    line = next(
        i
        for i, text_line in enumerate(flow_file.read_text().splitlines(), 1)
        if "deny: farewell" in text_line
    )
    assert f"flow.yml:{line}:" in str(error.value) and "farewell" in str(error.value)

    flow_file.write_text(text.replace("nodes:\n", "nodes:\n  broken: [unclosed\n"))
    with pytest.raises(DataFileError, match=r"flow\.yml:\d+: invalid YAML"):
        load_flow(tmp_path / "prompts")


def test_flow_intent_unknown_to_nlu_is_reported(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    flow_file = tmp_path / "prompts" / "flow.yml"
    flow_file.write_text(flow_file.read_text().replace("affirm: main_menu", "agree_loudly: main_menu"))
    flow = load_flow(tmp_path / "prompts")
    nlu_dir = PROJECT_ROOT / "nlu_data" / "en"
    with pytest.raises(DataFileError, match=r"flow\.yml:\d+: .*'agree_loudly'"):
        check_against_nlu(flow, known_intents(nlu_dir), nlu_dir)


def test_missing_prompt_is_reported(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    prompts_file = tmp_path / "prompts" / "en.yml"
    prompts_file.write_text(prompts_file.read_text().replace("  ask_pin:", "  ask_pin_code:"))
    with pytest.raises(DataFileError, match=r"en\.yml: prompt 'ask_pin' is not defined"):
        load_flow(tmp_path / "prompts")


def test_a_node_given_twice_is_an_error_not_a_silent_replacement(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    flow_file = tmp_path / "prompts" / "flow.yml"
    flow_file.write_text(flow_file.read_text() + "\n  main_menu:\n    prompt: main_menu\n")
    with pytest.raises(DataFileError, match=r"duplicate key 'main_menu' \(first at line \d+\)") as error:
        load_flow(tmp_path / "prompts")
    assert f"flow.yml:{len(flow_file.read_text().splitlines()) - 1}:" in str(error.value)
