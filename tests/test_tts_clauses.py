"""Where the bot's words are cut so that the first of them are heard sooner."""

from __future__ import annotations

import pytest

from voicebot.config import PROJECT_ROOT
from voicebot.dialogue.flow import load_flow
from voicebot.tts.clauses import first_clause, fixed_opening, opening_clause


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        (
            "Our Main Street branch is open 9 AM to 5 PM Monday to Friday, 9 AM to 1 PM on Saturday.",
            ("Our Main Street branch is open 9 AM to 5 PM Monday to Friday,", "9 AM to 1 PM on Saturday."),
        ),
        # The comma of a number is no clause end; a clause of fewer than 3 words is not cut off.
        (
            "Yes, your balance is 1,234 dollars and 5 cents; the card ends in 4 2 1 1.",
            ("Yes, your balance is 1,234 dollars and 5 cents;", "the card ends in 4 2 1 1."),
        ),
        (
            "Your payment of 50 dollars: it went through this morning at nine.",
            ("Your payment of 50 dollars:", "it went through this morning at nine."),
        ),
        # Said alone, a clause cut at a dash ends with a comma.
        (
            "The branch on Main Street \u2014 the one by the station \u2014 is open today.",
            ("The branch on Main Street,", "the one by the station \u2014 is open today."),
        ),
        # Later sentences follow as they are: only the first decides.
        (
            "Done. Your card ending in 1234, the debit card, is now blocked for good.",
            ("Done. Your card ending in 1234, the debit card, is now blocked for good.", ""),
        ),
    ],
)
def test_a_long_first_sentence_is_cut_after_its_first_clause(text: str, cut: tuple[str, str]) -> None:
    assert first_clause(text) == cut


@pytest.mark.parametrize(
    "text",
    [
        "Just to check, you want a new loan.",  # 8 words: short enough to synthesise whole
        "Your checking account balance is 1,234 dollars and 56 cents today.",  # no clause end
        "Well, I can find the nearest branch and its opening hours for you.",  # "Well," is too short
    ],
)
def test_a_short_first_sentence_or_one_without_a_clause_is_not_cut(text: str) -> None:
    assert first_clause(text) == (text, "")


def test_the_opening_clause_is_cut_off_whatever_its_length() -> None:
    assert opening_clause("Done. 50 dollars has been moved.") == ("Done.", "50 dollars has been moved.")
    assert opening_clause("Just to check, you want to pay a bill.") == (
        "Just to check,",
        "you want to pay a bill.",
    )
    assert opening_clause("How can I help you today?") == ("How can I help you today?", "")
    assert opening_clause("no punctuation at all") == ("no punctuation at all", "")


def test_only_openings_without_values_are_fixed() -> None:
    assert fixed_opening("To confirm, transfer {amount} from your {from_account} account.") == "To confirm,"
    assert fixed_opening("Here are your most recent transactions: {transactions}.") == (
        "Here are your most recent transactions:"
    )
    assert fixed_opening("Your {account_type} account balance is {balance}.") is None
    assert fixed_opening("{details}") is None
    assert fixed_opening("Thank you, goodbye.") == "Thank you,"  # a static prompt is cached whole anyway


def test_the_shipped_prompts_have_fixed_openings_that_start_their_texts() -> None:
    prompts = load_flow(PROJECT_ROOT / "prompts").prompts("en")
    openings = {
        prompt_id: opening
        for prompt_id, prompt in prompts.prompts.items()
        if not prompt.is_static and (opening := fixed_opening(prompt.text))
    }
    assert openings == {
        "confirm_intent": "Just to check,",
        "transactions_result": "Here are your most recent transactions:",
        "confirm_transfer": "To confirm,",
        "transfer_done": "Done.",
        "language_offer": "For English,",
    }
    # Filled in, the text still opens with exactly those words, which find the cached audio.
    filled = prompts.render("confirm_intent", {"intent_label": "pay a bill"})
    assert opening_clause(filled) == ("Just to check,", "you want to pay a bill. Is that right?")
