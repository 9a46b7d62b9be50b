from __future__ import annotations

import functools
import logging

import pytest

from voicebot.events import AsrFinal, AsrPartial, BotSaid, CallStarted, DtmfReceived, Escalated, NluParsed
from voicebot.handoff.redact import (
    WITHHELD,
    CallerPrivacy,
    DigitReader,
    RedactingFilter,
    luhn_valid,
    mask_digits,
    mask_spoken_digits,
    redact_card_numbers,
    redact_event,
)
from voicebot.nlu.numbers import spoken_digits

VISA_TEST_CARD = "4111111111111111"
ENGLISH: DigitReader = functools.partial(spoken_digits, language="en")
SPANISH: DigitReader = functools.partial(spoken_digits, language="es")
PERSIAN: DigitReader = functools.partial(spoken_digits, language="fa")
ANYWHERE = CallerPrivacy(ENGLISH)  # a turn that collects nothing
ACCOUNT = CallerPrivacy(ENGLISH, digits=True)  # a turn that answers the account number
PIN = CallerPrivacy(ENGLISH, secret=True, digits=True)


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
    redacted = redact_card_numbers(f"my card is {typed} please block it", ENGLISH)
    assert redacted == "my card is [card ending 1111] please block it"


def test_spoken_card_number_is_redacted() -> None:
    spoken = "my card number is four one one one one one one one one one one one one one one one thanks"
    assert redact_card_numbers(spoken, ENGLISH) == "my card number is [card ending 1111] thanks"


def test_spoken_card_number_with_oh_for_zero_is_redacted() -> None:
    # 378282246310005 spoken digit by digit, with "oh" for zero as people say it.
    spoken = "it's three seven eight two eight two two four six three one oh oh oh five"
    assert redact_card_numbers(spoken, ENGLISH) == "it's [card ending 0005]"


@pytest.mark.parametrize(
    ("text", "read_digits", "redacted"),
    [
        (
            "mi tarjeta es cuatro uno uno uno uno uno uno uno uno uno uno uno uno uno uno uno, gracias",
            SPANISH,
            "mi tarjeta es [card ending 1111], gracias",
        ),
        ("کارت من ۴۱۱۱ ۱۱۱۱ ۱۱۱۱ ۱۱۱۱ است", PERSIAN, "کارت من [card ending 1111] است"),
        (
            "کارت من چهار یک یک یک یک یک یک یک یک یک یک یک یک یک یک یک است",
            PERSIAN,
            "کارت من [card ending 1111] است",
        ),
    ],
)
def test_card_numbers_in_spanish_and_persian_are_redacted(
    text: str, read_digits: DigitReader, redacted: str
) -> None:
    assert redact_card_numbers(text, read_digits) == redacted


def test_card_followed_by_other_numbers_is_still_found() -> None:
    assert redact_card_numbers("card 4111 1111 1111 1111 25", ENGLISH) == "card [card ending 1111] 25"


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
    assert redact_card_numbers(text, ENGLISH) == text


def test_addresses_ports_and_hex_codes_in_log_lines_are_never_a_card() -> None:
    """Found by CI: "0x47 (from 127.0.0.1:33774)" ran together to 14 digits passing the Luhn check.
    Every port is tried, so a line that some port would turn into a card cannot slip through."""
    for port in range(1024, 65536):
        line = f"AudioSocketCall closed: unknown message type 0x47 (from 127.0.0.1:{port})"
        assert redact_card_numbers(line, ENGLISH) == line, port
    assert redact_card_numbers(f"at 10.0.0.1:{VISA_TEST_CARD}", ENGLISH) == "at 10.0.0.1:[card ending 1111]"


def test_several_cards_in_one_text() -> None:
    text = "old 4111-1111-1111-1111, new 5555 5555 5555 4444."
    assert redact_card_numbers(text, ENGLISH) == "old [card ending 1111], new [card ending 4444]."


@pytest.mark.parametrize(
    ("text", "read_digits", "masked"),
    [
        ("one two three four five six seven eight", ENGLISH, "****5678"),
        ("it's 1234 5678", ENGLISH, "it's ****5678"),
        ("twelve thirty four fifty six seventy eight", ENGLISH, "****5678"),
        ("one two three four, I think, five six seven eight", ENGLISH, "****, I think, 5678"),
        ("es el uno dos tres cuatro cinco seis siete ocho", SPANISH, "es el ****5678"),
        ("یک دو سه چهار پنج شش هفت هشت", PERSIAN, "****5678"),
        ("۱۲۳۴۵۶۷۸", PERSIAN, "****5678"),
        ("I lost my card", ENGLISH, "I lost my card"),
    ],
)
def test_spoken_digits_keep_only_their_last_four(text: str, read_digits: DigitReader, masked: str) -> None:
    assert mask_spoken_digits(text, read_digits) == masked


def test_caller_text_by_what_the_turn_collects() -> None:
    said = "one two three four five six seven eight"
    assert ANYWHERE.caller_text(said) == said  # at the menu, a number is just words
    assert ACCOUNT.caller_text(said) == "****5678"
    assert PIN.caller_text("four three two one") == WITHHELD
    assert ANYWHERE.caller_text(f"my card is {VISA_TEST_CARD}") == "my card is [card ending 1111]"


def test_keys_of_a_digits_slot_are_masked_others_are_not() -> None:
    def shown(key: str, privacy: CallerPrivacy) -> tuple[str, bool]:
        event = DtmfReceived(digits=key)
        redact_event(event, privacy)
        return event.digits, event.masked

    assert shown("4", ANYWHERE) == ("4", False)
    assert shown("4", ACCOUNT) == ("*", True)
    assert shown("#", ACCOUNT) == ("#", False)  # the terminator says nothing of the number
    assert shown("#", PIN) == ("*", True)


def test_recognised_words_of_a_digits_turn_are_masked_everywhere_in_the_event() -> None:
    said = "one two three four five six seven eight"
    words = [{"word": w, "start": 0.0, "end": 0.1, "confidence": 0.9} for w in ["it's", *said.split()]]
    final = AsrFinal(text=f"it's {said}", confidence=0.9, words=words, alternatives=[said, "pay my bill"])
    redact_event(final, ACCOUNT)
    assert final.text == "it's ****5678" and final.alternatives == ["****5678", "pay my bill"]
    assert [w["word"] for w in final.words] == ["it's", *["*"] * 8]
    parsed = NluParsed(
        text=said, intent="inform", confidence=0.5, entities=[{"entity": "n", "value": 12345678}]
    )
    redact_event(parsed, ACCOUNT)
    assert parsed.text == "****5678" and parsed.entities == [{"entity": "n", "value": "****5678"}]
    partial = AsrPartial(text="one two three four five six")
    redact_event(partial, ACCOUNT)
    assert partial.text == "**3456"
    secret = AsrFinal(text="four three two one", confidence=0.9, words=words, alternatives=["for three"])
    redact_event(secret, PIN)
    assert (secret.text, secret.words, secret.alternatives) == (WITHHELD, [], [])


def test_card_numbers_are_redacted_in_every_event_but_identifiers_stay() -> None:
    card = "4111 1111 1111 1111"
    said = BotSaid(text=f"you said {card}")
    redact_event(said, ANYWHERE)
    assert said.text == "you said [card ending 1111]"
    escalated = Escalated(
        reason="caller_request", queue="cards", record={"transcript": [{"speaker": "Caller", "text": card}]}
    )
    redact_event(escalated, ANYWHERE)
    assert escalated.record == {"transcript": [{"speaker": "Caller", "text": "[card ending 1111]"}]}
    # A 13-digit caller id may pass the Luhn check: it is who called, not a card.
    started = CallStarted(caller_id="4222222222222", language="en", asr_engine="a", nlu_engine="n")
    redact_event(started, ANYWHERE)
    assert luhn_valid(started.caller_id) and started.caller_id == "4222222222222"


def test_log_records_lose_card_numbers_in_message_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("voicebot.test_redact")
    redacting = RedactingFilter(ENGLISH)
    caplog.handler.addFilter(redacting)
    try:
        with caplog.at_level(logging.INFO, logger="voicebot.test_redact"):
            log.info("caller said %s", f"my card is {VISA_TEST_CARD}")
            try:
                raise ValueError(f"cannot parse {VISA_TEST_CARD}")
            except ValueError:
                log.exception("nlu failed")
    finally:
        caplog.handler.removeFilter(redacting)
    assert VISA_TEST_CARD not in caplog.text
    assert "caller said my card is [card ending 1111]" in caplog.text
    assert "ValueError: cannot parse [card ending 1111]" in caplog.text
