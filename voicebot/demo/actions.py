"""The Acme Bank actions flow files call by name; every value they return is ready to be spoken.

Failures a caller should hear about come back as ok=False with a prompt id the flow's prompt file
defines: auth_failed, auth_required, account_not_found, transfer_invalid, transfer_insufficient_funds,
card_not_found, unknown_branch, transactions_none and dispute_not_found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voicebot.demo import phrases
from voicebot.demo.bank import (
    MINIMUM_OPENING_DEPOSIT_CENTS,
    RATES_BASIS_POINTS,
    AcmeBank,
    Branch,
    BusinessRuleError,
    Transaction,
)
from voicebot.dialogue.actions import Action, ActionContext, ActionRegistry, ActionResult
from voicebot.tts.speech_format import (
    spoken_date,
    spoken_digits,
    spoken_list,
    spoken_money,
    spoken_percent,
    spoken_weekly_hours,
)

AccountAction = Callable[[ActionContext, str], ActionResult]

LOAN_PRODUCTS = ("personal_loan", "auto_loan", "mortgage")


def _failure(prompt_id: str) -> ActionResult:
    return ActionResult(ok=False, error_prompt=prompt_id)


def _digits(value: Any) -> str:
    """Slots may hold "1234 5678", "1-2-3-4" or an int; only the digits matter."""
    return "".join(character for character in str(value) if character.isdigit())


def _cents(amount: Any) -> int:
    return round(float(amount) * 100)


def _spoken_transaction(transaction: Transaction, context: ActionContext) -> str:
    language = context.language
    words = phrases.for_language(language)
    direction = words.received_from if transaction.amount_cents > 0 else words.paid_to
    moved = direction.format(
        amount=spoken_money(abs(transaction.amount_cents), language=language),
        counterparty=phrases.counterparty(words, transaction.description, context.word_for),
    )
    return words.on_date.format(transaction=moved, date=spoken_date(transaction.posted_on, language=language))


def _authenticated(action: AccountAction) -> Action:
    """Refuses with auth_required until the dialogue has verified the caller."""

    def run(context: ActionContext) -> ActionResult:
        if context.account is None:
            return _failure("auth_required")
        return action(context, context.account)

    return run


def _speaking_rule_errors(action: Action) -> Action:
    """Turns the bank's refusals into the prompt that explains them."""

    def run(context: ActionContext) -> ActionResult:
        try:
            return action(context)
        except BusinessRuleError as error:
            return _failure(error.code)

    return run


class _BankActions:
    def __init__(self, bank: AcmeBank) -> None:
        self.bank = bank

    def verify_caller(self, context: ActionContext) -> ActionResult:
        holder_name = self.bank.verify(
            _digits(context.slots.get("account_number", "")), _digits(context.slots.get("pin", ""))
        )
        return ActionResult({"holder_name": holder_name}) if holder_name else _failure("auth_failed")

    def branch_hours(self, context: ActionContext) -> ActionResult:
        branch = self._branch(context)
        if branch is None:
            return _failure("unknown_branch")
        hours = spoken_weekly_hours(branch.hours, language=context.language)
        return ActionResult({"branch_name": branch.name, "hours": hours})

    def branch_location(self, context: ActionContext) -> ActionResult:
        branch = self._branch(context)
        if branch is None:
            return _failure("unknown_branch")
        return ActionResult({"branch_name": branch.name, "address": branch.address})

    def open_account_info(self, context: ActionContext) -> ActionResult:
        language, words = context.language, phrases.for_language(context.language)
        deposit = spoken_money(MINIMUM_OPENING_DEPOSIT_CENTS, language=language)
        documents = spoken_list(words.opening_documents, language=language)
        savings_rate = spoken_percent(RATES_BASIS_POINTS["savings"], language=language)
        details = words.open_account.format(documents=documents, deposit=deposit, savings_rate=savings_rate)
        return ActionResult(
            {
                "details": details,
                "minimum_deposit": deposit,
                "documents": documents,
                "savings_rate": savings_rate,
            }
        )

    def loan_info(self, context: ActionContext) -> ActionResult:
        language, words = context.language, phrases.for_language(context.language)
        rates = {p: spoken_percent(RATES_BASIS_POINTS[p], language=language) for p in LOAN_PRODUCTS}
        offers = spoken_list(
            [words.loan_products[product].format(rate=rates[product]) for product in LOAN_PRODUCTS],
            language=language,
        )
        details = words.loans.format(offers=offers)
        return ActionResult(
            {"details": details, **{f"{product}_rate": rate for product, rate in rates.items()}}
        )

    def get_balance(self, context: ActionContext, account: str) -> ActionResult:
        account_type = context.slots.get("account_type") or "checking"
        balance = self.bank.balance(account, account_type)
        return ActionResult(
            {"account_type": account_type, "balance": spoken_money(balance, language=context.language)}
        )

    def get_recent_transactions(self, context: ActionContext, account: str) -> ActionResult:
        transactions = self.bank.recent_transactions(account)
        if not transactions:
            return _failure("transactions_none")
        spoken = [_spoken_transaction(t, context) for t in transactions]
        return ActionResult({"transactions": spoken_list(spoken, language=context.language)})

    def transfer_funds(self, context: ActionContext, account: str) -> ActionResult:
        amount = _cents(context.slots["amount"])
        from_type, to_type = context.slots["from_account"], context.slots["to_account"]
        new_balance = self.bank.transfer(account, from_type, to_type, amount)
        language = context.language
        return ActionResult(
            {
                "amount": spoken_money(amount, language=language),
                "from_account": from_type,
                "to_account": to_type,
                "new_balance": spoken_money(new_balance, language=language),
            }
        )

    def block_card(self, context: ActionContext, account: str) -> ActionResult:
        card_type = context.slots.get("card_type") or "debit"
        last4 = self.bank.block_card(account, card_type)
        return ActionResult(
            {"card_type": card_type, "card_ending": spoken_digits(last4, language=context.language)}
        )

    def update_contact_info(self, context: ActionContext, account: str) -> ActionResult:
        details = {
            key: context.slots[key] for key in ("contact_type", "contact_value") if key in context.slots
        }
        self.bank.record_request(account, "contact_update", details)
        return ActionResult({})

    def dispute_charge(self, context: ActionContext, account: str) -> ActionResult:
        amount = context.slots.get("amount")
        charge = self.bank.latest_charge(account, None if amount is None else _cents(amount))
        if charge is None:
            return _failure("dispute_not_found")
        reference = self.bank.record_request(
            account, "dispute", {"transaction_id": charge.id, "amount_cents": -charge.amount_cents}
        )
        return ActionResult(
            {
                "reference": spoken_digits(reference, language=context.language),
                "amount": spoken_money(-charge.amount_cents, language=context.language),
                "merchant": phrases.counterparty(
                    phrases.for_language(context.language), charge.description, context.word_for
                ),
                "date": spoken_date(charge.posted_on, language=context.language),
            }
        )

    def _branch(self, context: ActionContext) -> Branch | None:
        return self.bank.branch(context.slots.get("branch"))


def register_bank_actions(registry: ActionRegistry, bank: AcmeBank) -> None:
    """Registers every Acme Bank action under the name flow files use; every call's identification
    attempts are counted in the bank's database (they outlast a restart)."""
    registry.identification_attempts = bank
    actions = _BankActions(bank)
    public: dict[str, Action] = {
        "verify_caller": actions.verify_caller,
        "branch_hours": actions.branch_hours,
        "branch_location": actions.branch_location,
        "open_account_info": actions.open_account_info,
        "loan_info": actions.loan_info,
    }
    for_customers: dict[str, AccountAction] = {
        "get_balance": actions.get_balance,
        "get_recent_transactions": actions.get_recent_transactions,
        "transfer_funds": actions.transfer_funds,
        "block_card": actions.block_card,
        "update_contact_info": actions.update_contact_info,
        "dispute_charge": actions.dispute_charge,
    }
    for name, action in public.items():
        registry.register(name, _speaking_rule_errors(action))
    for name, account_action in for_customers.items():
        registry.register(name, _speaking_rule_errors(_authenticated(account_action)))
