"""The customer panel an agent sees of an authenticated caller: the actions plugin's view, masked."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from voicebot.config import Config
from voicebot.demo import register
from voicebot.demo.bank import AcmeBank
from voicebot.demo.customer import customer_view, written_money
from voicebot.dialogue.actions import ActionContext, ActionRegistry, CustomerPanel, PanelTable

JANE = "12345678"
SEEDED_ACCOUNTS = (JANE, "87654321", "24681357")


@pytest.fixture
def registry(bank: AcmeBank) -> ActionRegistry:
    registry = ActionRegistry()
    registry.customer_view = customer_view(bank)
    return registry


def context(account: str | None = JANE) -> ActionContext:
    return ActionContext(slots={}, caller_id="+15550100000", account=account)


def table(panel: CustomerPanel, title: str) -> PanelTable:
    return next(table for table in panel.tables if table.title == title)


def strings(value: Any) -> list[str]:
    """Every string in a to_dict() tree."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    return [text for item in value for text in strings(item)]


def test_the_panel_shows_the_holder_accounts_transactions_and_cards(
    registry: ActionRegistry, bank: AcmeBank
) -> None:
    bank.block_card(JANE, "credit")  # the panel reads the backend as it is now

    panel = registry.customer_panel(context())

    assert panel is not None
    assert panel.title == "Jane Doe"
    assert panel.facts == [("Account number", "****5678")]
    assert table(panel, "Accounts").rows == [
        ["Checking", "****5678", "$2,540.75"],
        ["Savings", "****5678", "$12,000.00"],
        ["Credit (available)", "****5678", "$3,500.00"],
    ]
    transactions = table(panel, "Recent transactions")
    assert transactions.columns == ["Date", "Account", "Description", "Amount"]
    assert transactions.rows[:2] == [
        ["2024-11-03", "Checking", "Grocery Mart", "-$45.20"],
        ["2024-11-02", "Credit", "Book Nook", "-$23.99"],
    ]
    dates = [row[0] for row in transactions.rows]
    assert dates == sorted(dates, reverse=True) and len(dates) == 5
    assert table(panel, "Cards").rows == [["Debit", "****4821", "Active"], ["Credit", "****9034", "Blocked"]]


def test_to_dict_is_json_of_title_facts_and_tables(registry: ActionRegistry) -> None:
    panel = registry.customer_panel(context())
    assert panel is not None

    shown = json.loads(json.dumps(panel.to_dict()))

    assert shown["title"] == "Jane Doe"
    assert shown["facts"] == [["Account number", "****5678"]]
    assert [table["title"] for table in shown["tables"]] == ["Accounts", "Recent transactions", "Cards"]
    assert shown["tables"][2] == {
        "title": "Cards",
        "columns": ["Card", "Number", "Status"],
        "rows": [["Debit", "****4821", "Active"], ["Credit", "****9034", "Active"]],
    }


@pytest.mark.parametrize("account", SEEDED_ACCOUNTS)
def test_no_account_or_card_number_appears_in_the_panel(registry: ActionRegistry, account: str) -> None:
    panel = registry.customer_panel(context(account))
    assert panel is not None

    for text in strings(panel.to_dict()):
        assert not re.search(r"\d{8,}", text), text
        for seeded in SEEDED_ACCOUNTS:
            assert seeded not in re.sub(r"\D", "", text), text


def test_an_unauthenticated_caller_has_no_panel(registry: ActionRegistry, bank: AcmeBank) -> None:
    assert registry.customer_panel(context(account=None)) is None
    assert customer_view(bank)(context(account=None)) is None


def test_an_unknown_account_has_no_panel(registry: ActionRegistry) -> None:
    assert registry.customer_panel(context("00000000")) is None


def test_a_registry_without_a_view_has_no_panel() -> None:
    assert ActionRegistry().customer_panel(context()) is None


def test_a_failing_view_gives_no_panel_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(context: ActionContext) -> CustomerPanel | None:
        raise RuntimeError("backend down")

    registry = ActionRegistry()
    registry.customer_view = broken

    with caplog.at_level(logging.ERROR, logger="voicebot.dialogue"):
        assert registry.customer_panel(context()) is None

    [record] = caplog.records
    assert record.exc_info is not None and "backend down" in str(record.exc_info[1])


def test_the_plugin_registers_the_view(config: Config) -> None:
    registry = ActionRegistry()
    register(registry, config)

    panel = registry.customer_panel(context())

    assert panel is not None and panel.title == "Jane Doe"


@pytest.mark.parametrize(
    ("cents", "written"),
    [(0, "$0.00"), (5, "$0.05"), (-6_732, "-$67.32"), (123_456_789, "$1,234,567.89")],
)
def test_written_money(cents: int, written: str) -> None:
    assert written_money(cents) == written
