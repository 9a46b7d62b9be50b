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
from voicebot.nlu import rasa_engine
from voicebot.nlu.base import NluResult
from voicebot.nlu.normalize import normalise, normalise_aligned
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
    write_normalised_data,
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
    assert languages(DATA_DIR) == ["en", "es", "fa"]


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


# ----- text normalisation -------------------------------------------------------------------------

ZWNJ = "\u200c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("كارت اعتباري", "کارت اعتباری"),  # Arabic kaf and yeh
        ("مبلغ حداقلى", "مبلغ حداقلی"),  # alef maksura
        ("خانة", "خانه"),  # teh marbuta
        ("تأیید مؤسسه", "تایید موسسه"),  # hamza carriers
        ("مـــوجـودی", "موجودی"),  # tatweel
        ("مَوْجُودِی", "موجودی"),  # harakat
        ("۱۲۳۴ و ٥٦٧٨", "1234 و 5678"),  # Persian and Arabic-Indic digits
        ("۱٬۲۵۰٫۵۰ دلار", "1,250.50 دلار"),  # with the Persian separators
        ("چطوری؟", "چطوری?"),
    ],
)
def test_persian_letters_marks_and_digits_have_one_form(text: str, expected: str) -> None:
    assert normalise(text, "fa") == expected


@pytest.mark.parametrize(
    ("spellings", "expected"),
    [
        ([f"می{ZWNJ}خوام", "می خوام", "میخوام", "مي خوام", f"مي{ZWNJ}خوام"], "میخوام"),
        ([f"نمی{ZWNJ}دونم", "نمی دونم", "نمیدونم"], "نمیدونم"),
        ([f"کارت{ZWNJ}هام", "کارت هام", "کارتهام", "كارت هام"], "کارتهام"),
        ([f"پس{ZWNJ}انداز", "پسانداز"], "پسانداز"),
    ],
)
def test_persian_half_space_space_and_joined_spellings_are_one(spellings: list[str], expected: str) -> None:
    assert {normalise(f"{spelling} رو", "fa") for spelling in spellings} == {f"{expected} رو"}


def test_words_that_only_start_like_a_prefix_stay_whole() -> None:
    assert normalise("یک میلیون تومن", "fa") == "یک میلیون تومن"
    assert normalise("می 200", "fa") == "می 200"  # no Persian word after it to join


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("¿Cuánto dinero tengo?", "¿cuanto dinero tengo?"),
        ("Tarjeta de DÉBITO", "tarjeta de debito"),
        ("Sí, está bien", "si, esta bien"),
        ("PINGÜINO", "pinguino"),
        ("Año de la Señora", "año de la señora"),  # ñ is a letter of its own
    ],
)
def test_spanish_folds_accents_but_keeps_enye(text: str, expected: str) -> None:
    assert normalise(text, "es") == normalise(text, "es-MX") == expected


def test_spanish_accented_and_plain_spellings_are_one_feature() -> None:
    assert normalise("cuánto", "es") == normalise("cuanto", "es")
    assert normalise("año", "es") != normalise("ano", "es")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Ｍｙ\u00a0\tBALANCE  please ", "my balance please"),  # NFKC, lowercase, spaces
        ("\ufb01ve dollars", "five dollars"),  # the fi ligature
        ("\u200fhello\u200e world\ufeff", "hello world"),  # bidi marks and BOM
        ("café", "café"),  # English keeps its accents
        ("my pin is ٤٣٢١", "my pin is 4321"),  # digits in any script, any language
    ],
)
def test_every_language_gets_nfkc_lowercase_and_one_space(text: str, expected: str) -> None:
    assert normalise(text, "en") == expected


@pytest.mark.parametrize("language", ["en", "es", "fa"])
def test_normalising_twice_changes_nothing(language: str) -> None:
    texts = [
        "مي  خوام ۲۰۰ دلار از پس‌اندازم بفرستم ‌",
        "کارت ها و ﻻ می",
        "¿Cuánto?  Ñandú\u0301 e\u0301",
        "\u0130stanbul  \u1e9e ﬁ",
    ]
    for text in texts:
        once = normalise(text, language)
        assert normalise(once, language) == once


def test_aligned_spans_lead_back_to_what_was_said() -> None:
    said = "مي  خوام ۲۰۰ دلار از پس‌اندازم"
    normalised = normalise_aligned(said, "fa")
    assert normalised.text == "میخوام 200 دلار از پساندازم"
    for part, original in (("200 دلار", "۲۰۰ دلار"), ("پساندازم", "پس‌اندازم"), ("میخوام", "مي  خوام")):
        start = normalised.text.index(part)
        begin, end = normalised.source_span(start, start + len(part))
        assert said[begin:end] == original
        assert normalised.target_span(begin, end) == (start, start + len(part))


def test_hash_covers_the_normalisation_rules(data_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = content_hash("en", data_copy)
    monkeypatch.setattr(rasa_engine, "code_fingerprint", lambda: "other rules")
    assert content_hash("en", data_copy) != before


TRAINING_FA = f"""version: "3.1"
nlu:
- intent: transfer_funds
  examples: |
    - مي  خوام [۲۰۰ دلار](amount) از [پس{ZWNJ}اندازم](account_type) بفرستم
    - [٥٠](amount) دلار از [حســاب جاري](account_type) بده
    - انتقال از [جاريم]{{"entity": "account_type", "value": "checking"}} به [پس انداز](account_type)
- synonym: savings
  examples: |
    - پس{ZWNJ}اندازم
    - پس انداز
- lookup: branch
  examples: |
    - ونك
- regex: amount_digits
  examples: |
    - [0-9۰-۹]+
"""
TRAINING_ES = """version: "3.1"
nlu:
- intent: pay_bill
  examples: |
    - Quiero   pagar [cincuenta dólares](amount) de mi [cuenta de AHORROS](account_type)
"""


def _entities(message: object) -> list[tuple[str, str, str]]:
    text = message.get("text")  # type: ignore[attr-defined]
    return [(e["entity"], text[e["start"] : e["end"]], e["value"]) for e in message.get("entities")]  # type: ignore[attr-defined]


def test_training_copy_is_normalised_with_entity_spans_kept(tmp_path: Path) -> None:
    from rasa.shared.nlu.training_data.loading import load_data

    for language, text in (("fa", TRAINING_FA), ("es", TRAINING_ES)):
        (tmp_path / "data" / language).mkdir(parents=True)
        (tmp_path / "data" / language / "nlu.yml").write_text(text, encoding="utf-8")
    fa = load_data(str(write_normalised_data("fa", tmp_path / "data", tmp_path / "fa")), "fa")
    es = load_data(str(write_normalised_data("es", tmp_path / "data", tmp_path / "es")), "es")

    assert [(m.get("text"), _entities(m)) for m in fa.intent_examples] == [
        (
            "میخوام 200 دلار از پساندازم بفرستم",
            [("amount", "200 دلار", "200 دلار"), ("account_type", "پساندازم", "پساندازم")],
        ),
        ("50 دلار از حساب جاری بده", [("amount", "50", "50"), ("account_type", "حساب جاری", "حساب جاری")]),
        (
            "انتقال از جاریم به پس انداز",
            [("account_type", "جاریم", "checking"), ("account_type", "پس انداز", "پس انداز")],
        ),
    ]
    # Variants normalised, canonical values (what the dialogue compares) and regexes as written.
    assert fa.entity_synonyms == {"پساندازم": "savings", "پس انداز": "savings", "جاریم": "checking"}
    assert [t["elements"] for t in fa.lookup_tables] == [["ونک"]]
    assert [r["pattern"] for r in fa.regex_features] == ["[0-9۰-۹]+"]
    assert [(m.get("text"), _entities(m)) for m in es.intent_examples] == [
        (
            "quiero pagar cincuenta dolares de mi cuenta de ahorros",
            [("amount", "cincuenta dolares", "cincuenta dolares"),
             ("account_type", "cuenta de ahorros", "cuenta de ahorros")],
        )
    ]  # fmt: skip


def test_spellings_that_become_one_cannot_map_to_two_values(tmp_path: Path) -> None:
    (tmp_path / "fa").mkdir()
    (tmp_path / "fa" / "nlu.yml").write_text(
        'version: "3.1"\nnlu:\n- synonym: checking\n  examples: |\n    - جاري\n'
        "- synonym: savings\n  examples: |\n    - جاری\n",
        encoding="utf-8",
    )
    with pytest.raises(DataFileError, match="'checking' and 'savings'") as caught:
        write_normalised_data("fa", tmp_path, tmp_path / "out")
    assert caught.value.path == tmp_path / "fa"


def test_parse_reports_entities_in_the_callers_own_text(nlu: RasaNlu) -> None:
    said = "Can you move   FORTY dollars over to my SAVINGS account"
    result = parse(nlu, said)
    plain = parse(nlu, "can you move forty dollars over to my savings account")
    assert result.text == said
    assert (result.intent, result.ranking) == (plain.intent, plain.ranking)  # one form for the model
    amount, account = result.entity("amount"), result.entity("account_type")
    assert (amount.text, amount.value) == ("FORTY dollars", 40.0)
    assert (account.text, account.value) == ("SAVINGS account", "savings")
    assert all(said[e.start : e.end] == e.text for e in result.entities)


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


@pytest.mark.parametrize(
    ("text", "language", "digits"),
    [
        ("uno dos tres cuatro", "es", "1234"),
        ("eh mi número es cinco cinco cero uno", "es", "5501"),
        ("cero cero uno", "es", "001"),
        ("un momento, cuatro cinco", "es", "45"),  # "un" is the article here
        ("doce treinta y cuatro", "es-MX", "1234"),
        ("veintidos", "es", "22"),  # the accent left out
        ("یک دو سه چهار", "fa", "1234"),
        ("شماره من صفر نه یک دو است", "fa", "0912"),
        ("يک دو سه", "fa", "123"),  # Arabic yeh
        ("دوازده سی و چهار", "fa", "1234"),
        ("سه\u200cچهار", "fa", "34"),  # a half-space between the words
        ("سه\u200cشنبه", "fa", ""),  # Tuesday, not a 3
        ("۰۹۱۲", "fa", "0912"),
        ("٠٩١٢", "fa", "0912"),
        ("۱۲۳۴", "en", "1234"),  # Persian digits are digits for everyone
        ("my pin is ٤ ٣ 2 1", "en", "4321"),
        ("one two", "de", "12"),  # a language not read here: English
    ],
)
def test_spoken_digits_per_language(text: str, language: str, digits: str) -> None:
    assert spoken_digits(text, language=language) == digits


@pytest.mark.parametrize(
    ("text", "language", "amount"),
    [
        ("cincuenta dólares", "es", 50.0),
        ("cincuenta dolares", "es", 50.0),
        ("ciento veinte", "es", 120.0),
        ("mil quinientos", "es", 1500.0),
        ("dos mil trescientos cuarenta y cinco con cincuenta centavos", "es", 2345.5),
        ("veintiuno", "es", 21.0),
        ("veintiún dólares", "es", 21.0),
        ("doscientos", "es", 200.0),
        ("un millón", "es", 1_000_000.0),
        ("un dólar", "es", 1.0),
        ("treinta y un dólares con cinco centavos", "es", 31.05),
        ("cincuenta centavos", "es", 0.5),
        ("eh, quiero mandar cien dólares", "es", 100.0),
        ("$1.250,50", "es", 1250.5),
        ("$1,250.50", "es", 1250.5),
        ("۲۰۰ dólares", "es", 200.0),
        ("no sé", "es", None),
        ("صد و بیست و پنج دلار", "fa", 125.0),
        ("هزار و پانصد", "fa", 1500.0),
        ("۲۰۰ دلار", "fa", 200.0),
        ("٢٠٠ دلار", "fa", 200.0),
        ("دو هزار و سیصد و چهل و پنج دلار و پنجاه سنت", "fa", 2345.5),
        ("پنجاه سنت", "fa", 0.5),
        ("چهل و يك دلار", "fa", 41.0),  # Arabic yeh and kaf
        ("دويست\u200cو\u200cپنجاه", "fa", 250.0),  # half-spaces around "و"
        ("صدوبیست", "fa", 120.0),  # the half-spaces dropped (as the NLU's normaliser does)
        ("دو میلیون و پانصد هزار", "fa", 2_500_000.0),
        ("یه میلیون", "fa", 1_000_000.0),
        ("۱٬۲۵۰ دلار", "fa", 1250.0),
        ("۱۲٫۵ دلار", "fa", 12.5),
        ("سه\u200cشنبه صد دلار", "fa", 100.0),
        ("نمی دانم", "fa", None),
        ("۵۰ dollars", "en", 50.0),
    ],
)
def test_parse_amount_per_language(text: str, language: str, amount: float | None) -> None:
    assert parse_amount(text, language=language) == amount


def test_amount_entities_are_read_in_the_model_language() -> None:
    assert canonical_value("amount", "doscientos dólares", "es") == 200.0
    assert canonical_value("amount", "صد و بیست دلار", "fa") == 120.0


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
