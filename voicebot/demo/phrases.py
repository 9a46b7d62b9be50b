"""The words the demo bank's actions say themselves, per language (the numbers, dates and lists come
from voicebot.tts.speech_format in the call's language).

The bank stores English values ("your savings account" as a transfer's counterparty); these tables
say them in the caller's language, the account type in the words of the language's prompts
(``value_words``). A language not here is spoken in English.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.demo.bank import ACCOUNT_OPENING_DOCUMENTS


@dataclass(frozen=True)
class BankPhrases:
    received_from: str  # a transaction that paid money in: "{amount} from {counterparty}"
    paid_to: str  # "{amount} to {counterparty}"
    on_date: str  # "{transaction} on {date}"
    your_account: str  # the bank's "your {account_type} account"
    opening_documents: tuple[str, ...]
    open_account: str  # with {documents}, {deposit} and {savings_rate}
    loan_products: dict[str, str]  # with {rate}
    loans: str  # with {offers}


ENGLISH = BankPhrases(
    received_from="{amount} from {counterparty}",
    paid_to="{amount} to {counterparty}",
    on_date="{transaction} on {date}",
    your_account="your {account_type} account",
    opening_documents=ACCOUNT_OPENING_DOCUMENTS,
    open_account=(
        "You can open an account at any branch with {documents}, and a first deposit of at least"
        " {deposit}. Our savings account currently pays {savings_rate} a year."
    ),
    loan_products={
        "personal_loan": "personal loans from {rate}",
        "auto_loan": "auto loans from {rate}",
        "mortgage": "mortgages from {rate}",
    },
    loans="We offer {offers} a year. A loan officer can give you a personal quote.",
)

SPANISH = BankPhrases(
    received_from="{amount} de {counterparty}",
    paid_to="{amount} a {counterparty}",
    on_date="{transaction} el {date}",
    your_account="su cuenta {account_type}",
    opening_documents=("una identificación oficial con foto", "un comprobante de domicilio"),
    open_account=(
        "Puede abrir una cuenta en cualquier sucursal con {documents}, y un depósito inicial de al"
        " menos {deposit}. Nuestra cuenta de ahorros paga actualmente {savings_rate} al año."
    ),
    loan_products={
        "personal_loan": "préstamos personales desde {rate}",
        "auto_loan": "préstamos para auto desde {rate}",
        "mortgage": "hipotecas desde {rate}",
    },
    loans="Ofrecemos {offers} al año. Un asesor de préstamos puede darle una cotización personalizada.",
)

PERSIAN = BankPhrases(
    received_from="{amount} از {counterparty}",
    paid_to="{amount} به {counterparty}",
    on_date="{transaction} در {date}",
    your_account="حساب {account_type} شما",
    opening_documents=("کارت شناسایی عکس‌دار معتبر", "مدرکی برای نشانی محل سکونت"),
    open_account=(
        "می‌توانید در هر یک از شعبه‌های ما با {documents} و سپرده‌ی اولیه‌ی دست‌کم {deposit} حساب"
        " باز کنید. سود سالانه‌ی حساب پس‌انداز ما در حال حاضر {savings_rate} است."
    ),
    loan_products={
        "personal_loan": "وام شخصی با سود سالانه از {rate}",
        "auto_loan": "وام خودرو با سود سالانه از {rate}",
        "mortgage": "وام مسکن با سود سالانه از {rate}",
    },
    loans="ما {offers} ارائه می‌کنیم. کارشناس وام ما می‌تواند پیشنهادی متناسب با شرایط شما بدهد.",
)

_BY_LANGUAGE = {"en": ENGLISH, "es": SPANISH, "fa": PERSIAN}
_YOUR_ACCOUNT = re.compile(r"your (\w+) account")


def for_language(language: str) -> BankPhrases:
    """ "es-MX" -> the Spanish phrases; English for a language not here."""
    return _BY_LANGUAGE.get(language.lower().replace("_", "-").split("-")[0], ENGLISH)


def counterparty(words: BankPhrases, description: str, word_for: Callable[[str], str]) -> str:
    """A transaction's counterparty: a merchant's name as stored, the bank's own "your savings
    account" (a transfer) in the caller's language."""
    match = _YOUR_ACCOUNT.fullmatch(description)
    if match is None:
        return description
    return words.your_account.format(account_type=word_for(match.group(1)))
