"""Acme Bank's customer panel: what the agent who takes an authenticated caller's call sees of the
caller (the registry's ``customer_view``, voicebot/dialogue/actions.py).

Account numbers are masked but for their last four digits, as in the handoff record
(voicebot/handoff/redact.py); of a card the bank keeps only the last four digits. Amounts are written
for the screen, not spoken: the project's money helper (speech_format.spoken_money) is for the voice.
"""

from __future__ import annotations

from voicebot.demo.bank import AcmeBank
from voicebot.dialogue.actions import ActionContext, CustomerPanel, CustomerView, PanelTable
from voicebot.handoff.redact import KEEP_LAST, MASK, mask_digits

RECENT_TRANSACTIONS = 5


def written_money(cents: int) -> str:
    """254075 -> "$2,540.75", -6732 -> "-$67.32"."""
    dollars, remainder = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}${dollars:,}.{remainder:02d}"


def _account_label(account_type: str) -> str:
    # A credit account's balance is the credit still available, not what is owed.
    label = account_type.capitalize()
    return f"{label} (available)" if account_type == "credit" else label


def _panel(bank: AcmeBank, account: str) -> CustomerPanel | None:
    holder_name = bank.holder_name(account)
    if holder_name is None:
        return None
    number = mask_digits(account, keep_last=KEEP_LAST)
    accounts = PanelTable(
        "Accounts",
        ["Account", "Number", "Balance"],
        [
            [_account_label(account_type), number, written_money(bank.balance(account, account_type))]
            for account_type in bank.account_types(account)
        ],
    )
    transactions = PanelTable(
        "Recent transactions",
        ["Date", "Account", "Description", "Amount"],
        [
            [
                transaction.posted_on.isoformat(),
                transaction.account_type.capitalize(),
                transaction.description,
                written_money(transaction.amount_cents),
            ]
            for transaction in bank.recent_transactions(account, limit=RECENT_TRANSACTIONS)
        ],
    )
    cards = PanelTable(
        "Cards",
        ["Card", "Number", "Status"],
        [
            [card.card_type.capitalize(), MASK * KEEP_LAST + card.last4, card.status.capitalize()]
            for card in bank.cards(account)
        ],
    )
    return CustomerPanel(holder_name, [("Account number", number)], [accounts, transactions, cards])


def customer_view(bank: AcmeBank) -> CustomerView:
    """The panel of the caller the dialogue authenticated; None for an unknown account."""

    def view(context: ActionContext) -> CustomerPanel | None:
        return None if context.account is None else _panel(bank, context.account)

    return view
