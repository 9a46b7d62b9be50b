"""NLU against the real Rasa model trained from nlu_data (trained once per session, skipped if current)."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from pathlib import Path

import pytest

from voicebot.config import load_config
from voicebot.errors import DataFileError, ModelNotFoundError
from voicebot.nlu.base import NluResult
from voicebot.nlu.numbers import parse_amount, spoken_digits
from voicebot.nlu.rasa_engine import (
    FALLBACK_INTENT,
    RasaNlu,
    TrainResult,
    canonical_value,
    content_hash,
    languages,
    latest_model,
    train,
)
from voicebot.nlu.remote import RemoteNluError, RemoteRasaNlu

CONFIG = load_config()
DATA_DIR = CONFIG.path(CONFIG.nlu.data_dir)
MODELS_DIR = CONFIG.path(CONFIG.nlu.models_dir)

# Phrasings written for these tests: in neither the training data nor the held-out bench set.
TYPICAL = [
    ("hi uh i'd like to know what my balance is at the moment", "check_balance"),
    ("i would like to hear about my latest card purchases please", "recent_transactions"),
    ("can you move forty dollars over to my savings", "transfer_funds"),
    ("i need to pay my electricity bill today", "pay_bill"),
    ("my credit card's gone missing i think it was stolen", "report_lost_card"),
    ("there's a charge here that i definitely didn't make", "dispute_charge"),
    ("what time does the branch shut on saturdays", "branch_hours"),
    ("is there a branch anywhere near downtown", "branch_location"),
    ("i'd like to open a savings account for my son", "open_account"),
    ("what are your rates for a mortgage right now", "loan_info"),
    ("i need to change the phone number on my account", "update_contact_info"),
    ("i wanna speak to a live human being", "talk_to_agent"),
    ("yes that is correct", "affirm"),
    ("no that's not right at all", "deny"),
    ("could you repeat what you said", "repeat"),
    ("take me back to the menu", "go_back"),
    ("what are the things i can say", "help"),
    ("okay thanks so much goodbye", "goodbye"),
]
OUT_OF_SCOPE = [
    "what's the weather going to be like in paris",
    "can you order me a pepperoni pizza",
    "who won the hockey game on sunday",
    "flibber jabber wocky",
]


def _training_sentences() -> set[str]:
    sentences = set()
    for path in (DATA_DIR / "en").rglob("*.yml"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("- "):
                sentences.add(re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line.strip()[2:]).lower())
    return sentences


def parse(nlu: RasaNlu, text: str) -> NluResult:
    return asyncio.run(nlu.parse(text))


@pytest.fixture(scope="session")
def trained() -> TrainResult:
    return train("en", DATA_DIR, MODELS_DIR)


@pytest.fixture(scope="session")
def nlu(trained: TrainResult) -> RasaNlu:
    return RasaNlu.load(trained.model_path)


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """The English training data and config in a scratch dir, for breaking on purpose."""
    shutil.copytree(DATA_DIR / "en", tmp_path / "en")
    shutil.copytree(DATA_DIR / "config", tmp_path / "config")
    return tmp_path


def test_languages_exclude_config_and_test() -> None:
    assert languages(DATA_DIR) == ["en"]


def test_typical_phrases_are_not_training_examples() -> None:
    assert not {text for text, _ in TYPICAL} & _training_sentences()


@pytest.mark.parametrize(("text", "intent"), TYPICAL)
def test_typical_phrasings(nlu: RasaNlu, text: str, intent: str) -> None:
    result = parse(nlu, text)
    assert result.intent.name == intent, result.ranking
    assert result.ranking[0] == result.intent


def test_amount_and_account_types_are_normalised(nlu: RasaNlu) -> None:
    result = parse(nlu, "um transfer two hundred and fifty bucks from my chequing to savings")
    assert result.intent.name == "transfer_funds"
    assert result.entity("amount").value == 250.0
    assert {e.value for e in result.entities if e.entity == "account_type"} == {"checking", "savings"}


def test_only_the_data_knows_the_domain_words() -> None:
    """The engine turns amounts into numbers; nlu_data/en/synonyms.yml maps "chequing" to "checking"."""
    assert canonical_value("amount", "fifty dollars") == 50.0
    assert canonical_value("account_type", "chequing") == "chequing"


@pytest.mark.parametrize(
    ("text", "amount", "account"),
    [
        ("send 20.50 to my current account", 20.5, "checking"),
        ("move fifty dollars into my savings account", 50.0, "savings"),
        ("pay seventy dollars on the credit card account", 70.0, "credit"),
    ],
)
def test_entity_values(nlu: RasaNlu, text: str, amount: float, account: str) -> None:
    result = parse(nlu, text)
    assert result.entity("amount").value == amount
    assert result.entity("account_type").value == account
    entity = result.entity("account_type")
    assert text[entity.start : entity.end] == entity.text


@pytest.mark.parametrize("text", OUT_OF_SCOPE)
def test_out_of_scope_is_not_guessed(nlu: RasaNlu, text: str) -> None:
    assert parse(nlu, text).intent.name in ("out_of_scope", FALLBACK_INTENT)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_is_no_match(nlu: RasaNlu, text: str) -> None:
    result = parse(nlu, text)
    assert result.intent.name == FALLBACK_INTENT
    assert result.intent.confidence == 0.0
    assert result.entities == ()


def test_concurrent_parses_match_sequential(nlu: RasaNlu) -> None:
    texts = [text for text, _ in TYPICAL]

    async def all_at_once() -> list[NluResult]:
        return await asyncio.gather(*(nlu.parse(text) for text in texts))

    assert asyncio.run(all_at_once()) == [parse(nlu, text) for text in texts]


def test_model_loads_once_per_process(nlu: RasaNlu, trained: TrainResult) -> None:
    assert RasaNlu.load(trained.model_path) is nlu


def test_training_is_skipped_when_unchanged(trained: TrainResult) -> None:
    again = train("en", DATA_DIR, MODELS_DIR)
    assert again.skipped
    assert again.model_path == trained.model_path
    assert content_hash("en", DATA_DIR) in again.model_path.name
    assert list((MODELS_DIR / "en").glob("*.tar.gz")) == [trained.model_path]
    assert latest_model("en", MODELS_DIR) == trained.model_path


def test_hash_covers_data_and_config(data_copy: Path) -> None:
    original = content_hash("en", data_copy)
    with (data_copy / "en" / "cards.yml").open("a", encoding="utf-8") as file:
        file.write("    - my card has vanished\n")
    edited = content_hash("en", data_copy)
    with (data_copy / "config" / "en.yml").open("a", encoding="utf-8") as file:
        file.write("# retuned\n")
    assert len({original, edited, content_hash("en", data_copy)}) == 3


def test_broken_yaml_names_file_and_line(data_copy: Path, tmp_path: Path) -> None:
    broken = data_copy / "en" / "cards.yml"
    lines = broken.read_text(encoding="utf-8").splitlines()
    lines.insert(5, "  - intent: [unclosed")
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        train("en", data_copy, tmp_path / "models")
    assert caught.value.path == broken
    assert caught.value.line is not None and 6 <= caught.value.line <= 8
    assert str(caught.value).startswith(f"{broken}:{caught.value.line}: ")
    assert not (tmp_path / "models").exists()


def test_malformed_entity_annotation_names_line(data_copy: Path, tmp_path: Path) -> None:
    broken = data_copy / "en" / "payments.yml"
    text = broken.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("    - pay bill\n", "    - pay [fifty dollars(amount) now\n"), encoding="utf-8"
    )
    expected_line = text.splitlines().index("    - pay bill") + 1
    with pytest.raises(DataFileError) as caught:
        train("en", data_copy, tmp_path / "models")
    assert (caught.value.path, caught.value.line) == (broken, expected_line)


def test_intent_without_examples_is_rejected(data_copy: Path, tmp_path: Path) -> None:
    broken = data_copy / "en" / "loans.yml"
    broken.write_text('version: "3.1"\nnlu:\n- intent: loan_info\n', encoding="utf-8")
    with pytest.raises(DataFileError, match="no 'examples'") as caught:
        train("en", data_copy, tmp_path / "models")
    assert (caught.value.path, caught.value.line) == (broken, 3)


def test_missing_model_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="run `voicebot train`"):
        latest_model("en", tmp_path)


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("one two three four", "1234"),
        ("1 2 3 4", "1234"),
        ("oh four", "04"),
        ("uh my pin is um four oh oh seven", "4007"),
        ("twelve thirty four", "1234"),
        ("double five nine", "559"),
        ("i don't know", ""),
    ],
)
def test_spoken_digits(text: str, digits: str) -> None:
    assert spoken_digits(text) == digits


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("fifty dollars", 50.0),
        ("$1,250.50", 1250.5),
        ("twenty five dollars and fifty cents", 25.5),
        ("two hundred and fifty bucks", 250.0),
        ("20.50", 20.5),
        ("$200", 200.0),
        ("a hundred dollars", 100.0),
        ("uh one thousand two hundred", 1200.0),
        ("fifty cents", 0.5),
        ("not sure", None),
    ],
)
def test_parse_amount(text: str, amount: float | None) -> None:
    assert parse_amount(text) == amount


def test_remote_client_reports_unreachable_server() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RemoteRasaNlu(f"http://127.0.0.1:{port}", timeout_s=2.0)

    async def parse_then_close() -> NluResult:
        try:
            return await client.parse("what's my balance")
        finally:
            await client.close()

    with pytest.raises(RemoteNluError, match=rf"cannot reach the Rasa server at http://127\.0\.0\.1:{port}"):
        asyncio.run(parse_then_close())
