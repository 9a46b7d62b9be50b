from __future__ import annotations

import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date, time
from pathlib import Path

import pytest

from voicebot.config import PROJECT_ROOT, Config
from voicebot.demo import database_path
from voicebot.demo.actions import register_bank_actions
from voicebot.demo.bank import AcmeBank, BusinessRuleError, seed
from voicebot.dialogue.actions import ActionContext, ActionRegistry, ActionResult
from voicebot.dialogue.flow import load_flow
from voicebot.engines import load_actions
from voicebot.errors import DataFileError
from voicebot.tts.speech_format import (
    ordinal,
    spoken_date,
    spoken_digits,
    spoken_list,
    spoken_money,
    spoken_percent,
    spoken_time,
    spoken_weekly_hours,
)

PROMPTS = load_flow(PROJECT_ROOT / "prompts").languages
JANE = "12345678"
JOHN = "87654321"


@pytest.fixture
def registry(bank: AcmeBank) -> ActionRegistry:
    registry = ActionRegistry()
    register_bank_actions(registry, bank)
    return registry


def run_action(
    registry: ActionRegistry, name: str, account: str | None = JANE, language: str = "en", **slots: object
) -> ActionResult:
    words = PROMPTS[language].value_words if language in PROMPTS else {}
    context = ActionContext(
        slots=dict(slots), caller_id="+15550100000", account=account, language=language, value_words=words
    )
    return registry.run(name, context)


def table_counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}


# --- backend ---------------------------------------------------------------------------------------


def test_seed_is_idempotent_and_reset_restores_the_demo(db_path: Path, bank: AcmeBank) -> None:
    seeded = table_counts(db_path)
    seed(db_path)
    assert table_counts(db_path) == seeded
    assert bank.verify(JANE, "4321") == "Jane Doe"

    bank.transfer(JANE, "checking", "savings", 10_000)
    seed(db_path)  # keeps what callers did
    assert bank.balance(JANE, "checking") == 244_075
    seed(db_path, reset=True)
    assert bank.balance(JANE, "checking") == 254_075
    assert table_counts(db_path) == seeded


def test_database_uses_wal(db_path: Path) -> None:
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_verify_accepts_only_the_right_pin(bank: AcmeBank) -> None:
    assert bank.verify(JANE, "4321") == "Jane Doe"
    assert bank.verify(JOHN, "1111") == "John Smith"
    assert bank.verify(JANE, "1111") is None
    assert bank.verify("99999999", "4321") is None


def test_pins_are_not_stored_in_clear(db_path: Path) -> None:
    # 4321 is also the tail of account 87654321, so check the other seeded PINs.
    stored = b"".join(path.read_bytes() for path in db_path.parent.glob(f"{db_path.name}*"))
    assert b"1111" not in stored
    assert b"9753" not in stored


def test_transfer_moves_money_and_records_both_sides(bank: AcmeBank) -> None:
    new_checking = bank.transfer(JANE, "checking", "savings", 50_050)
    assert new_checking == 254_075 - 50_050
    assert bank.balance(JANE, "checking") == new_checking
    assert bank.balance(JANE, "savings") == 1_200_000 + 50_050
    latest = {t.account_type: t.amount_cents for t in bank.recent_transactions(JANE, limit=2)}
    assert latest == {"checking": -50_050, "savings": 50_050}


@pytest.mark.parametrize(
    ("from_type", "to_type", "amount_cents", "code"),
    [
        ("checking", "savings", 254_076, "transfer_insufficient_funds"),
        ("checking", "checking", 100, "transfer_invalid"),
        ("checking", "savings", 0, "transfer_invalid"),
        ("checking", "savings", -500, "transfer_invalid"),
        ("checking", "brokerage", 100, "transfer_invalid"),
    ],
)
def test_refused_transfer_changes_nothing(
    bank: AcmeBank, from_type: str, to_type: str, amount_cents: int, code: str
) -> None:
    with pytest.raises(BusinessRuleError) as refused:
        bank.transfer(JANE, from_type, to_type, amount_cents)
    assert refused.value.code == code
    assert bank.balance(JANE, "checking") == 254_075
    assert bank.balance(JANE, "savings") == 1_200_000
    assert len(bank.recent_transactions(JANE, limit=100)) == 10


def test_concurrent_transfers_never_overdraw(bank: AcmeBank) -> None:
    # John's 89.50 in checking covers eight 10-dollar transfers out of twenty attempted at once.
    def attempt(_: int) -> bool:
        try:
            bank.transfer(JOHN, "checking", "savings", 1_000)
        except BusinessRuleError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        succeeded = sum(pool.map(attempt, range(20)))
    assert succeeded == 8
    assert bank.balance(JOHN, "checking") == 950
    assert bank.balance(JOHN, "savings") == 50_000 + 8_000


def test_block_card_orders_one_replacement(bank: AcmeBank) -> None:
    assert bank.block_card(JANE, "debit") == "4821"
    assert bank.block_card(JANE, "debit") == "4821"  # already blocked: no second replacement
    requests = bank.service_requests(JANE)
    assert [(r.kind, r.details) for r in requests] == [
        ("card_replacement", {"card_type": "debit", "last4": "4821"})
    ]
    with pytest.raises(BusinessRuleError, match="no credit card"):
        bank.block_card(JOHN, "credit")


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (None, "Main Street"),
        ("", "Main Street"),
        ("riverside", "Riverside"),
        ("the Oak Park branch", "Oak Park"),
        ("downtown", "Main Street"),
        ("Springfield", "Main Street"),
        ("oak parc", "Oak Park"),
    ],
)
def test_branch_lookup_by_name_or_area(bank: AcmeBank, query: str | None, name: str) -> None:
    branch = bank.branch(query)
    assert branch is not None
    assert branch.name == name


def test_unknown_branch_is_none(bank: AcmeBank) -> None:
    assert bank.branch("Atlantis") is None


def test_record_request_returns_distinct_references(bank: AcmeBank) -> None:
    first = bank.record_request(JANE, "contact_update", {"contact_type": "email"})
    second = bank.record_request(JANE, "contact_update", {"contact_type": "phone"})
    assert first != second
    assert [r.reference for r in bank.service_requests(JANE)] == [first, second]


# --- spoken formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "spoken"),
    [
        (123_456, "1,234 dollars and 56 cents"),
        (100, "1 dollar"),
        (1, "1 cent"),
        (0, "0 dollars"),
        (-2_550, "minus 25 dollars and 50 cents"),
    ],
)
def test_spoken_money(cents: int, spoken: str) -> None:
    assert spoken_money(cents) == spoken


def test_spoken_dates_and_times() -> None:
    assert [spoken_date(date(2024, 11, day)) for day in (1, 2, 3, 11, 22)] == [
        "November 1st",
        "November 2nd",
        "November 3rd",
        "November 11th",
        "November 22nd",
    ]
    assert [spoken_time(moment) for moment in (time(9), time(12), time(17, 30), time(0))] == [
        "9 AM",
        "12 PM",
        "5:30 PM",
        "12 AM",
    ]


def test_spoken_weekly_hours_merges_days() -> None:
    hours = [*((day, time(9), time(17)) for day in range(5)), (5, time(9), time(13))]
    assert spoken_weekly_hours(hours) == "9 AM to 5 PM Monday to Friday, 9 AM to 1 PM on Saturday"


def test_spoken_list() -> None:
    assert spoken_list(["a"]) == "a"
    assert spoken_list(["a", "b"]) == "a and b"
    assert spoken_list(["a", "b", "c"]) == "a, b, and c"


@pytest.mark.parametrize(
    ("cents", "language", "spoken"),
    [
        (254_075, "es", "dos mil quinientos cuarenta dólares con setenta y cinco centavos"),
        (100, "es", "un dólar"),
        (2_100, "es", "veintiún dólares"),
        (3_101, "es", "treinta y un dólares con un centavo"),
        (2_100_000, "es", "veintiún mil dólares"),
        (100_000_000, "es", "un millón de dólares"),
        (150_000_000, "es", "un millón quinientos mil dólares"),
        (0, "es", "cero dólares"),
        (-2_550, "es-MX", "menos veinticinco dólares con cincuenta centavos"),
        (254_075, "fa", "دو هزار و پانصد و چهل دلار و هفتاد و پنج سنت"),
        (1, "fa", "یک سنت"),
        (150_000_000, "fa", "یک میلیون و پانصد هزار دلار"),
        (-2_550, "fa", "منفی بیست و پنج دلار و پنجاه سنت"),
        (123_456, "de", "1,234 dollars and 56 cents"),  # not spoken here: English
    ],
)
def test_spoken_money_per_language(cents: int, language: str, spoken: str) -> None:
    assert spoken_money(cents, language=language) == spoken


def test_spoken_dates_times_and_ordinals_per_language() -> None:
    days = (1, 3, 21, 30)
    assert [spoken_date(date(2024, 3, d), language="es") for d in days] == [
        "primero de marzo",
        "tres de marzo",
        "veintiuno de marzo",
        "treinta de marzo",
    ]
    # Persian words for the Gregorian date (no calendar conversion); 30th is سی‌ام, not "سیم".
    assert [spoken_date(date(2024, 3, d), language="fa") for d in days] == [
        "یکم مارس",
        "سوم مارس",
        "بیست و یکم مارس",
        "سی\u200cام مارس",
    ]
    assert [ordinal(n, language="es") for n in (1, 3, 11)] == ["primero", "tercero", "decimoprimero"]
    assert [ordinal(n, language="fa") for n in (2, 3, 23)] == ["دوم", "سوم", "بیست و سوم"]
    moments = (time(9), time(13), time(17, 30), time(12), time(0), time(8, 15))
    assert [spoken_time(m, language="es") for m in moments] == [
        "las nueve de la mañana",
        "la una de la tarde",
        "las cinco y media de la tarde",
        "las doce del mediodía",
        "las doce de la noche",
        "las ocho y cuarto de la mañana",
    ]
    assert [spoken_time(m, language="fa") for m in moments] == [
        "ساعت نه صبح",
        "ساعت یک بعدازظهر",
        "ساعت پنج و نیم عصر",
        "ساعت دوازده ظهر",
        "ساعت دوازده شب",
        "ساعت هشت و ربع صبح",
    ]


def test_spoken_digits_percent_and_lists_per_language() -> None:
    assert spoken_digits("4821", language="es") == "cuatro ocho dos uno"
    assert spoken_digits("۰۹۱۲", language="fa") == "صفر نه یک دو"
    assert spoken_digits("۰۹۱۲") == "0 9 1 2"
    assert [spoken_percent(bp, language="es") for bp in (425, 500, 405)] == [
        "cuatro punto veinticinco por ciento",
        "cinco por ciento",
        "cuatro punto cero cinco por ciento",
    ]
    assert [spoken_percent(bp, language="fa") for bp in (425, 450)] == [
        "چهار ممیز بیست و پنج درصد",
        "چهار و نیم درصد",
    ]
    assert spoken_list(["a", "b"], language="es") == "a y b"
    assert spoken_list(["a", "b", "c"], language="es") == "a, b y c"
    assert spoken_list(["agua", "Inés"], language="es") == "agua e Inés"
    assert spoken_list(["الف", "ب", "ج"], language="fa") == "الف، ب و ج"


def test_spoken_weekly_hours_per_language() -> None:
    hours = [*((day, time(9), time(17)) for day in range(5)), (5, time(9), time(13))]
    assert spoken_weekly_hours(hours, language="es") == (
        "de lunes a viernes de nueve de la mañana a cinco de la tarde"
        " y los sábados de nueve de la mañana a una de la tarde"
    )
    assert spoken_weekly_hours(hours, language="fa") == (
        "از دوشنبه تا جمعه از ساعت نه صبح تا پنج عصر و شنبه از ساعت نه صبح تا یک بعدازظهر"
    )
    weekend = [(5, time(10), time(14)), (6, time(10), time(14))]
    assert (
        spoken_weekly_hours(weekend, language="es")
        == "los sábados y domingos de diez de la mañana a dos de la tarde"
    )


# --- actions ---------------------------------------------------------------------------------------


def test_verify_caller(registry: ActionRegistry) -> None:
    welcomed = run_action(registry, "verify_caller", account=None, account_number="1234 5678", pin="4 3 2 1")
    assert welcomed == ActionResult({"holder_name": "Jane Doe"})
    refused = run_action(registry, "verify_caller", account=None, account_number=JANE, pin="0000")
    assert refused == ActionResult(ok=False, error_prompt="auth_failed")


@pytest.mark.parametrize(
    "name",
    [
        "get_balance",
        "get_recent_transactions",
        "transfer_funds",
        "block_card",
        "update_contact_info",
        "dispute_charge",
    ],
)
def test_account_actions_require_authentication(registry: ActionRegistry, name: str) -> None:
    result = run_action(
        registry, name, account=None, amount=10.0, from_account="checking", to_account="savings"
    )
    assert result == ActionResult(ok=False, error_prompt="auth_required")


def test_get_balance_defaults_to_checking(registry: ActionRegistry) -> None:
    assert run_action(registry, "get_balance").values == {
        "account_type": "checking",
        "balance": "2,540 dollars and 75 cents",
    }
    assert run_action(registry, "get_balance", account_type="savings").values["balance"] == "12,000 dollars"
    missing = run_action(registry, "get_balance", account=JOHN, account_type="credit")
    assert missing.error_prompt == "account_not_found"


def test_recent_transactions_are_spoken_newest_first(registry: ActionRegistry) -> None:
    spoken = run_action(registry, "get_recent_transactions").values["transactions"]
    assert spoken == (
        "45 dollars and 20 cents to Grocery Mart on November 3rd, "
        "23 dollars and 99 cents to Book Nook on November 2nd, "
        "and 4 dollars and 75 cents to Corner Cafe on November 1st"
    )


def test_transfer_funds_speaks_amounts(registry: ActionRegistry) -> None:
    result = run_action(
        registry, "transfer_funds", amount=250.0, from_account="checking", to_account="savings"
    )
    assert result == ActionResult(
        {
            "amount": "250 dollars",
            "from_account": "checking",
            "to_account": "savings",
            "new_balance": "2,290 dollars and 75 cents",
        }
    )
    assert "$" not in " ".join(result.values.values())


def test_transfer_funds_insufficient_funds(registry: ActionRegistry, bank: AcmeBank) -> None:
    result = run_action(
        registry,
        "transfer_funds",
        account=JOHN,
        amount=1_000.0,
        from_account="checking",
        to_account="savings",
    )
    assert result == ActionResult(ok=False, error_prompt="transfer_insufficient_funds")
    assert bank.balance(JOHN, "checking") == 8_950


def test_block_card_speaks_only_the_last_digits(registry: ActionRegistry) -> None:
    result = run_action(registry, "block_card")
    assert result.values == {"card_type": "debit", "card_ending": "4 8 2 1"}
    assert (
        run_action(registry, "block_card", account=JOHN, card_type="credit").error_prompt == "card_not_found"
    )


def test_branch_actions(registry: ActionRegistry) -> None:
    hours = run_action(registry, "branch_hours", account=None, branch="oak park")
    assert hours.values == {
        "branch_name": "Oak Park",
        "hours": "10 AM to 6 PM Monday to Friday, 10 AM to 2 PM on Saturday",
    }
    location = run_action(registry, "branch_location", account=None)
    assert location.values == {"branch_name": "Main Street", "address": "100 Main Street, Springfield"}
    unknown = run_action(registry, "branch_hours", account=None, branch="Atlantis")
    assert unknown == ActionResult(ok=False, error_prompt="unknown_branch")


def test_product_information_is_spoken(registry: ActionRegistry) -> None:
    opening = run_action(registry, "open_account_info", account=None).values
    assert opening["minimum_deposit"] == "25 dollars"
    assert opening["savings_rate"] == "4.25 percent"
    assert "at least 25 dollars" in opening["details"]
    loans = run_action(registry, "loan_info", account=None).values
    assert loans["mortgage_rate"] == "6.75 percent"
    assert loans["details"].startswith(
        "We offer personal loans from 8.99 percent, auto loans from 6.49 percent,"
        " and mortgages from 6.75 percent a year."
    )
    assert not any("%" in value or "$" in value for value in (*opening.values(), *loans.values()))


def test_update_contact_info_records_a_request(registry: ActionRegistry, bank: AcmeBank) -> None:
    result = run_action(
        registry, "update_contact_info", contact_type="email", contact_value="jane@example.org"
    )
    assert result == ActionResult({})
    [request] = bank.service_requests(JANE)
    assert (request.kind, request.details) == (
        "contact_update",
        {"contact_type": "email", "contact_value": "jane@example.org"},
    )


def test_dispute_charge_by_amount_or_latest(registry: ActionRegistry, bank: AcmeBank) -> None:
    by_amount = run_action(registry, "dispute_charge", amount=15.99).values
    assert (by_amount["merchant"], by_amount["amount"], by_amount["date"]) == (
        "Streamflix",
        "15 dollars and 99 cents",
        "October 30th",
    )
    latest = run_action(registry, "dispute_charge").values
    assert latest["merchant"] == "Grocery Mart"
    references = [request.reference for request in bank.service_requests(JANE)]
    assert [by_amount["reference"], latest["reference"]] == [" ".join(ref) for ref in references]
    assert run_action(registry, "dispute_charge", amount=1.23).error_prompt == "dispute_not_found"


def test_actions_speak_the_call_language(registry: ActionRegistry) -> None:
    """The demo's own words come from voicebot/demo/phrases.py, the numbers from speech_format; the
    values it returns stay canonical, and the prompts say them in the language (value_words)."""
    balance = run_action(registry, "get_balance", language="es").values
    assert balance == {
        "account_type": "checking",
        "balance": "dos mil quinientos cuarenta dólares con setenta y cinco centavos",
    }
    said = PROMPTS["es"].render("balance_result", balance)
    assert said.startswith("El saldo de su cuenta corriente es de dos mil quinientos")
    transactions = run_action(registry, "get_recent_transactions", language="es").values["transactions"]
    assert transactions == (
        "cuarenta y cinco dólares con veinte centavos a Grocery Mart el tres de noviembre, "
        "veintitrés dólares con noventa y nueve centavos a Book Nook el dos de noviembre "
        "y cuatro dólares con setenta y cinco centavos a Corner Cafe el primero de noviembre"
    )
    transfer = run_action(
        registry, "transfer_funds", language="es", amount=250.0, from_account="checking", to_account="savings"
    ).values
    assert transfer == {
        "amount": "doscientos cincuenta dólares",
        "from_account": "checking",
        "to_account": "savings",
        "new_balance": "dos mil doscientos noventa dólares con setenta y cinco centavos",
    }
    # The transfer's own transaction names the other account in Spanish too.
    latest = run_action(registry, "get_recent_transactions", language="es").values["transactions"]
    assert latest.startswith("doscientos cincuenta dólares de su cuenta corriente el ")
    assert ", doscientos cincuenta dólares a su cuenta de ahorros el " in latest
    card = run_action(registry, "block_card", language="es").values
    assert card == {"card_type": "debit", "card_ending": "cuatro ocho dos uno"}
    assert "Su tarjeta de débito terminada en cuatro ocho dos uno" in PROMPTS["es"].render(
        "card_blocked", card
    )
    hours = run_action(registry, "branch_hours", account=None, language="es", branch="oak park").values
    assert hours["hours"] == (
        "de lunes a viernes de diez de la mañana a seis de la tarde y los sábados de diez de la mañana a dos"
        " de la tarde"
    )
    opening = run_action(registry, "open_account_info", account=None, language="es").values
    assert opening["details"] == (
        "Puede abrir una cuenta en cualquier sucursal con una identificación oficial con foto y un"
        " comprobante de domicilio, y un depósito inicial de al menos veinticinco dólares. Nuestra cuenta"
        " de ahorros paga actualmente cuatro punto veinticinco por ciento al año."
    )
    loans = run_action(registry, "loan_info", account=None, language="es").values["details"]
    # "y" is said "e" before an /i/ sound: "... e hipotecas".
    assert loans.startswith(
        "Ofrecemos préstamos personales desde ocho punto noventa y nueve por ciento, préstamos para auto"
        " desde seis punto cuarenta y nueve por ciento e hipotecas desde seis punto setenta y cinco por"
        " ciento al año."
    )
    dispute = run_action(registry, "dispute_charge", language="es", amount=15.99).values
    assert (dispute["amount"], dispute["date"]) == (
        "quince dólares con noventa y nueve centavos",
        "treinta de octubre",
    )
    assert not any(ch.isdigit() for ch in dispute["reference"])


def test_actions_speak_persian(registry: ActionRegistry) -> None:
    balance = run_action(registry, "get_balance", language="fa").values
    assert balance == {"account_type": "checking", "balance": "دو هزار و پانصد و چهل دلار و هفتاد و پنج سنت"}
    assert "جاری" in PROMPTS["fa"].render("balance_result", balance)
    transactions = run_action(registry, "get_recent_transactions", language="fa").values["transactions"]
    assert transactions.startswith("چهل و پنج دلار و بیست سنت به Grocery Mart در سوم نوامبر، ")
    assert transactions.endswith(" و چهار دلار و هفتاد و پنج سنت به Corner Cafe در یکم نوامبر")
    hours = run_action(registry, "branch_hours", account=None, language="fa", branch="oak park").values
    assert hours["hours"] == "از دوشنبه تا جمعه از ساعت ده صبح تا شش عصر و شنبه از ساعت ده صبح تا دو بعدازظهر"


# --- the demo as an actions plugin ------------------------------------------------------------------


def test_the_default_plugin_is_the_demo_bank_seeded_once(config: Config, tmp_path: Path) -> None:
    assert Config().plugins == ["voicebot.demo"]
    settings = config.replace(data_dir=str(tmp_path))
    registry = load_actions(settings)
    assert {"verify_caller", "get_balance", "block_card"} <= set(registry.names())
    seeded = table_counts(database_path(settings))
    assert seeded["customers"] == 3
    load_actions(settings)  # another process or a reload: the data callers changed stays
    assert table_counts(database_path(settings)) == seeded


def test_plugins_are_entry_point_names_or_dotted_paths(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "greeting_actions.py").write_text(
        "from voicebot.dialogue.actions import ActionResult\n"
        "def register(registry, config):\n"
        "    registry.register('greet', lambda context: ActionResult({'caller': context.caller_id}))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # "demo" is the entry point pyproject.toml declares in the voicebot.actions group.
    registry = load_actions(config.replace(data_dir=str(tmp_path), plugins=["demo", "greeting_actions"]))
    assert "get_balance" in registry
    assert registry.run("greet", ActionContext(slots={}, caller_id="+1555")) == ActionResult(
        {"caller": "+1555"}
    )


@pytest.mark.parametrize(
    ("module", "source", "message"),
    [
        ("missing_actions", None, "actions plugin 'missing_actions' cannot be imported"),
        ("registerless_actions", "ACTIONS = []\n", "actions plugin 'registerless_actions' has no register"),
    ],
)
def test_a_broken_plugin_is_named(
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    source: str | None,
    message: str,
) -> None:
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DataFileError, match=message):
        load_actions(config.replace(plugins=[module]))


def test_the_engines_do_not_import_the_demo() -> None:
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, voicebot.engines; print('voicebot.demo' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "False"
