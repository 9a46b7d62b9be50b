"""Spoken numbers as ASR writes them ("one two three four", "fifty dollars") turned into values."""

from __future__ import annotations

import re

from text_to_num import alpha2digit

# Callers say "oh" for zero in account and card numbers; "a hundred" means "one hundred".
_SPOKEN_ZERO = re.compile(r"\b(?:oh|o)\b")
_INDEFINITE_ARTICLE = re.compile(r"\ba\s+(?=hundred|thousand|million)")
_REPEATED_DIGIT = re.compile(r"\b(double|triple)\s+(\d)\b")
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DOLLARS_AND_CENTS = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:dollars?|bucks?)\s*(?:and\s+)?(\d{1,2})\s*(?:cents?)?\b"
)
_CENTS_ONLY = re.compile(r"^\D*?(\d{1,2})\s*cents?\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_REPEAT_COUNT = {"double": 2, "triple": 3}


def _to_digits(text: str) -> str:
    """Lowercases and rewrites number words as digits; threshold 0 so a lone "one" converts too."""
    normalised = _INDEFINITE_ARTICLE.sub("one ", text.lower())
    return alpha2digit(normalised, "en", threshold=0)


def spoken_digits(text: str) -> str:
    """The digits a caller read out, in order: "one two three four" -> "1234", "oh four" -> "04".

    Filler words ("uh", "my pin is") are ignored; grouped numbers keep their digits ("twelve thirty
    four" -> "1234"), and "double five" -> "55".
    """
    converted = _to_digits(_SPOKEN_ZERO.sub("zero", text.lower()))
    converted = _REPEATED_DIGIT.sub(lambda m: m.group(2) * _REPEAT_COUNT[m.group(1)], converted)
    return "".join(ch for ch in converted if ch.isdigit())


def parse_amount(text: str) -> float | None:
    """A money amount: "fifty dollars" -> 50.0, "$1,250.50" -> 1250.5, "two dollars and five cents"
    -> 2.05; None when the text holds no number."""
    converted = _THOUSANDS_SEPARATOR.sub("", _to_digits(text)).replace("$", " ")
    if match := _DOLLARS_AND_CENTS.search(converted):
        return float(match.group(1)) + int(match.group(2)) / 100
    if match := _CENTS_ONLY.search(converted):
        return int(match.group(1)) / 100
    if match := _NUMBER.search(converted):
        return float(match.group())
    return None
