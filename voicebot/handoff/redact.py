"""Privacy helpers for transcripts and handoff records: card numbers never leave the call in full."""

from __future__ import annotations

import re

from text_to_num import alpha2digit

CARD_MIN_DIGITS = 13
CARD_MAX_DIGITS = 19

_NUMBER_WORDS = (
    "zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    "|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred"
)
_NUMBER_TOKEN = rf"(?:\d+|\b(?:{_NUMBER_WORDS})\b)"
# A run of digit groups and number words, as typed ("4111-1111 ...") or transcribed ("four one one ...").
_NUMBER_RUN = re.compile(rf"{_NUMBER_TOKEN}(?:(?:[ \t]*[-,][ \t]*|[ \t]+){_NUMBER_TOKEN})*", re.IGNORECASE)
_DIGIT_GROUP = re.compile(r"\d+")


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


def mask_digits(digits: str, keep_last: int = 0) -> str:
    """ "12345678" -> "****5678" with keep_last=4, "********" with keep_last=0."""
    keep = min(max(keep_last, 0), len(digits))
    return "*" * (len(digits) - keep) + digits[len(digits) - keep :]


def _card_mask(digits: str) -> str:
    return f"[card ending {digits[-4:]}]"


def _redact_run(run: str) -> str:
    """The run with any card number in it masked; unchanged when it holds none."""
    # "oh" is how people say 0 in digit strings; alpha2digit only knows "zero" and needs spaces, not dashes.
    words = re.sub(r"\boh\b", "zero", run.replace("-", " "), flags=re.IGNORECASE)
    converted = alpha2digit(words, "en")
    groups = list(_DIGIT_GROUP.finditer(converted))
    # Try the longest spans of consecutive groups first, so "card 4111 ... 1111 expiry 12 26"
    # still finds the card when extra numbers are said in the same breath.
    spans = sorted(
        ((first, last) for first in range(len(groups)) for last in range(first, len(groups))),
        key=lambda span: span[0] - span[1],
    )
    for first, last in spans:
        digits = "".join(group.group() for group in groups[first : last + 1])
        if CARD_MIN_DIGITS <= len(digits) <= CARD_MAX_DIGITS and luhn_valid(digits):
            start, end = groups[first].start(), groups[last].end()
            return converted[:start] + _card_mask(digits) + converted[end:]
    return run


def redact_card_numbers(text: str) -> str:
    """Replaces each Luhn-valid 13-19 digit card number with "[card ending 1234]".

    Digits may be grouped with spaces or dashes or spoken as words. Amounts, account numbers and
    phone numbers are left alone: they are too short or fail the Luhn check.
    """
    return _NUMBER_RUN.sub(lambda match: _redact_run(match.group()), text)
