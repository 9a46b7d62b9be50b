"""Privacy: what is kept of the caller's words and keys once they leave the dialogue.

The dialogue keeps a slot's value in memory to do its work (look up the account, check the PIN);
every form of it that is stored or shown (the trace, the handoff record, recordings' summaries,
logs) goes through here:

- a PIN (a secret slot) never appears: its keys are ``*``, its words ``[withheld]``;
- the digits of a turn that answers a digits slot (an account number), keyed or spoken, are masked
  but for the last four: keys ``*``, "one two three four five six seven eight" -> "****5678";
- a card number (13-19 digits passing the Luhn check, grouped with spaces or dashes or spoken as
  words) is "[card ending 1111]" wherever it appears.

Numbers are read by the :data:`DigitReader` given (the NLU's ``spoken_digits`` in the call's
language), so number words count in every language the bot speaks, and digits in any script.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicebot.events import AsrFinal, AsrPartial, CallEvent, DtmfReceived, NluParsed

DigitReader = Callable[[str], str]
"""The digits a text says, in order: "four one one" -> "411", "۴۱۱" -> "411", "hello" -> ""."""

WITHHELD = "[withheld]"
MASK = "*"
KEEP_LAST = 4
CARD_MIN_DIGITS = 13
CARD_MAX_DIGITS = 19
# A run of numbers may hold one other word between two of them: "double five", "treinta y cuatro",
# "one two three, uh, four".
_MAX_WORDS_BETWEEN = 1
_WORD = re.compile(r"\w+")
# What between two numbers makes them parts of something else (an address, a time, a version).
_GLUED = re.compile(r"[^\w\s-]+")
# Who and which call, never a card number even when its digits pass the Luhn check (a long phone
# number may): left as they are.
_IDENTIFIERS = frozenset({"caller_id", *(field.name for field in dataclasses.fields(CallEvent))})


def luhn_valid(number: str) -> bool:
    """The Luhn checksum every payment card number satisfies; non-digits are ignored."""
    digits = [int(character) for character in number if character.isdigit()]
    if not digits:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def account_key(account: str) -> str:
    """What stores key an account by: a hash of its letters and digits, however it was given."""
    normalised = "".join(character for character in account.lower() if character.isalnum())
    return hashlib.sha256(normalised.encode()).hexdigest()


def mask_digits(digits: str, keep_last: int = 0) -> str:
    """ "12345678" -> "****5678" with keep_last=4, "********" with keep_last=0."""
    keep = min(max(keep_last, 0), len(digits))
    return MASK * (len(digits) - keep) + digits[len(digits) - keep :]


def _card_mask(digits: str) -> str:
    return f"[card ending {digits[-4:]}]"


def _is_number(word: str, read_digits: DigitReader) -> bool:
    """A digit group, or a number word; not a token mixing letters and digits ("0x47", "v2")."""
    if any(ch.isdigit() for ch in word):
        return word.isdigit()
    return bool(read_digits(word))


def _number_runs(text: str, read_digits: DigitReader) -> list[list[re.Match[str]]]:
    """The runs of numbers in ``text`` (digit groups and number words), each as its number words.
    Numbers glued by other punctuation than a dash ("127.0.0.1:33774", "12:30") are not one run."""
    runs: list[list[re.Match[str]]] = []
    previous: int | None = None  # the index of the last number word
    for index, word in enumerate(_WORD.finditer(text)):
        if not _is_number(word.group(), read_digits):
            continue
        glued = (
            previous is not None and runs[-1] and _GLUED.fullmatch(text[runs[-1][-1].end() : word.start()])
        )
        if previous is None or index - previous > _MAX_WORDS_BETWEEN + 1 or glued:
            runs.append([])
        runs[-1].append(word)
        previous = index
    return runs


def _cards_in(
    text: str, numbers: list[re.Match[str]], read_digits: DigitReader
) -> list[tuple[int, int, str]]:
    """The card numbers among a run's numbers, as (start, end, replacement) spans of ``text``."""
    if not numbers:
        return []
    # The longest spans of consecutive numbers first, so "card 4111 ... 1111 expiry 12 26" still
    # finds the card when more numbers are said in the same breath; each number is a digit at least.
    spans = sorted(
        (
            (first, last)
            for first in range(len(numbers))
            for last in range(first, min(first + CARD_MAX_DIGITS, len(numbers)))
        ),
        key=lambda span: span[0] - span[1],
    )
    for first, last in spans:
        start, end = numbers[first].start(), numbers[last].end()
        digits = read_digits(text[start:end])
        if CARD_MIN_DIGITS <= len(digits) <= CARD_MAX_DIGITS and luhn_valid(digits):
            before = _cards_in(text, numbers[:first], read_digits)
            return [
                *before,
                (start, end, _card_mask(digits)),
                *_cards_in(text, numbers[last + 1 :], read_digits),
            ]
    return []


def _replaced(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, replacement) span, in order and not overlapping, replaced."""
    pieces, done = [], 0
    for start, end, replacement in spans:
        pieces += [text[done:start], replacement]
        done = end
    return "".join([*pieces, text[done:]])


def redact_card_numbers(text: str, read_digits: DigitReader) -> str:
    """Replaces each Luhn-valid 13-19 digit card number with "[card ending 1234]".

    Digits may be grouped with spaces or dashes or spoken as words. Amounts, account numbers and
    phone numbers are left alone: they are too short or fail the Luhn check.
    """
    if len(read_digits(text)) < CARD_MIN_DIGITS:  # the common case, at the cost of one reading
        return text
    spans = [span for run in _number_runs(text, read_digits) for span in _cards_in(text, run, read_digits)]
    return _replaced(text, spans)


def typed_digits(text: str) -> str:
    """The digits of typed text in any script ("۴۱۱" -> "411"): a :data:`DigitReader` for what
    people type (an agent's notes), where words are not numbers."""
    return "".join(str(unicodedata.digit(ch)) for ch in text if ch.isdigit())


def redact_typed_text(text: str) -> str:
    """Typed text (an agent's wrap-up notes) with each card number redacted."""
    return redact_card_numbers(text, typed_digits)


def mask_spoken_digits(text: str, read_digits: DigitReader, keep_last: int = KEEP_LAST) -> str:
    """Every number in ``text`` as digits, masked but for the last ``keep_last`` digits of them all:
    "one two three four, I think, five six seven eight" -> "****, I think, 5678"."""
    spans: list[tuple[int, int, str]] = []
    keep = keep_last
    for run in reversed(_number_runs(text, read_digits)):
        start, end = run[0].start(), run[-1].end()
        digits = read_digits(text[start:end])
        kept = min(keep, len(digits))
        keep -= kept
        spans.insert(0, (start, end, mask_digits(digits, kept)))
    return _replaced(text, spans)


@dataclass(frozen=True)
class CallerPrivacy:
    """What the dialogue is collecting now, and so how the caller's words and keys are kept."""

    read_digits: DigitReader
    secret: bool = False  # a PIN: the words are withheld, every key masked
    digits: bool = False  # a digits slot (an account number): its digits masked but the last four

    def redacted(self, text: str) -> str:
        """Any text, with card numbers redacted."""
        return redact_card_numbers(text, self.read_digits)

    def caller_text(self, text: str) -> str:
        """What the caller said, as it may be stored and shown."""
        if self.secret:
            return WITHHELD
        # Masked but the last four digits, the words hold no card number either.
        return mask_spoken_digits(text, self.read_digits) if self.digits else self.redacted(text)

    def key_masked(self, key: str) -> bool:
        return self.secret or (self.digits and key.isdigit())


def redact_event(event: CallEvent, privacy: CallerPrivacy) -> None:
    """Makes ``event`` what may be stored and shown, in place; every emitted event passes here."""
    if isinstance(event, DtmfReceived):
        if privacy.key_masked(event.digits):
            event.digits, event.masked = MASK, True
    elif isinstance(event, AsrPartial):
        event.text = privacy.caller_text(event.text)
    elif isinstance(event, AsrFinal):
        text, event.text = event.text, privacy.caller_text(event.text)
        event.alternatives = [] if privacy.secret else [privacy.caller_text(a) for a in event.alternatives]
        if event.text != text or privacy.digits:
            event.words = _number_words_masked(event.words, privacy)
    elif isinstance(event, NluParsed):
        event.text = privacy.caller_text(event.text)
        event.entities = [] if privacy.secret else [_entity_masked(e, privacy) for e in event.entities]
    else:
        for field in dataclasses.fields(event):
            if field.name not in _IDENTIFIERS:
                setattr(event, field.name, _strings_redacted(getattr(event, field.name), privacy.redacted))


def _number_words_masked(words: list[dict[str, Any]], privacy: CallerPrivacy) -> list[dict[str, Any]]:
    """The recogniser's words with the numbers among them masked (none at all for a secret)."""
    if privacy.secret:
        return []
    return [
        {**word, "word": MASK} if privacy.read_digits(str(word.get("word", ""))) else word for word in words
    ]


def _entity_masked(entity: dict[str, Any], privacy: CallerPrivacy) -> dict[str, Any]:
    value = str(entity.get("value", ""))
    shown = privacy.caller_text(value)
    return entity if shown == value else {**entity, "value": shown}


def _strings_redacted(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string in a JSON-like value through ``redact``, but identifiers'."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_strings_redacted(item, redact) for item in value]
    if isinstance(value, dict):
        return {
            key: item if key in _IDENTIFIERS else _strings_redacted(item, redact)
            for key, item in value.items()
        }
    return value


class RedactingFilter(logging.Filter):
    """Card numbers out of log records, message and traceback; for the handlers that write logs."""

    def __init__(self, read_digits: DigitReader) -> None:
        super().__init__()
        self._read_digits = read_digits
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format: the handler reports it as it always does
            return True
        redacted = redact_card_numbers(message, self._read_digits)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_card_numbers(record.exc_text, self._read_digits)
        return True


def redact_logs(read_digits: DigitReader) -> None:
    """Puts a :class:`RedactingFilter` on every handler of the root logger (set up before)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(read_digits))
