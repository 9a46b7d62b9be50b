from __future__ import annotations

import pytest

from voicebot.handoff.redact import luhn_valid, mask_digits, redact_card_numbers

VISA_TEST_CARD = "4111111111111111"


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        (VISA_TEST_CARD, True),
        ("4111 1111 1111 1111", True),
        ("378282246310005", True),  # 15-digit Amex test number
        ("4111111111111112", False),
        ("12345678", False),
        ("", False),
    ],
)
def test_luhn_valid(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("digits", "keep_last", "masked"),
    [("12345678", 4, "****5678"), ("12345678", 0, "********"), ("123", 4, "123"), ("", 4, "")],
)
def test_mask_digits(digits: str, keep_last: int, masked: str) -> None:
    assert mask_digits(digits, keep_last) == masked


@pytest.mark.parametrize(
    "typed",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "4111 - 1111 - 1111 - 1111"],
)
def test_typed_card_numbers_keep_only_last_four(typed: str) -> None:
    redacted = redact_card_numbers(f"my card is {typed} please block it")
    assert redacted == "my card is [card ending 1111] please block it"


def test_spoken_card_number_is_redacted() -> None:
    spoken = "my card number is four one one one one one one one one one one one one one one one thanks"
    assert redact_card_numbers(spoken) == "my card number is [card ending 1111] thanks"


def test_spoken_card_number_with_oh_for_zero_is_redacted() -> None:
    # 378282246310005 spoken digit by digit, with "oh" for zero as people say it.
    spoken = "it's three seven eight two eight two two four six three one oh oh oh five"
    assert redact_card_numbers(spoken) == "it's [card ending 0005]"


def test_card_followed_by_other_numbers_is_still_found() -> None:
    assert redact_card_numbers("card 4111 1111 1111 1111 25") == "card [card ending 1111] 25"


@pytest.mark.parametrize(
    "text",
    [
        "send 250 dollars",
        "send two hundred fifty dollars to savings",
        "account 12345678",
        "account one two three four five six seven eight",
        "call me on 555 010 2233",
        "4111 1111 1111 1112",  # card-shaped but fails Luhn
        "I have one question",
    ],
)
def test_non_card_numbers_are_untouched(text: str) -> None:
    assert redact_card_numbers(text) == text


def test_several_cards_in_one_text() -> None:
    text = "old 4111-1111-1111-1111, new 5555 5555 5555 4444."
    assert redact_card_numbers(text) == "old [card ending 1111], new [card ending 4444]."
