"""Scripted callers must say things the NLU was not trained on, or the scenarios only prove that the
model remembers its training data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voicebot.config import load_config
from voicebot.scenarios import load_scenario

CONFIG = load_config()
ROOT = Path(__file__).resolve().parent.parent
SCENARIO_FILES = sorted(
    [*(ROOT / "tests" / "scenarios").rglob("*.yml"), *(ROOT / "prompts" / "demo").glob("*.yml")]
)


def normalised(text: str) -> str:
    """Case and punctuation do not make a sentence new: "What's my balance?" is "whats my balance"."""
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def training_sentences(language: str, folder: str = "") -> dict[str, str]:
    """Every training example of the language (Rasa's reader strips the entity markup) -> its intent;
    the held-out test set (``folder="test"``) is not training data."""
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(CONFIG.path(CONFIG.nlu.data_dir) / folder / language))
    return {normalised(message.get("text")): message.get("intent") for message in data.intent_examples}


def test_normalising_ignores_case_punctuation_and_spacing() -> None:
    assert normalised("  What's my   BALANCE? ") == normalised("whats my balance")
    assert normalised("no, thanks") != normalised("no thanks at all")


def test_training_sentences_are_read_without_entity_markup() -> None:
    sentences = training_sentences(CONFIG.language)
    assert not any("[" in sentence for sentence in sentences)
    assert len(sentences) > 500


def test_no_scripted_caller_line_is_a_training_example() -> None:
    # Any language's: a Spanish line may be said on an English call (language detection).
    trained = {
        text: intent for language in CONFIG.languages for text, intent in training_sentences(language).items()
    }
    assert SCENARIO_FILES
    found = [
        f"{scenario.path.relative_to(ROOT)}:{turn.line}: {turn.say!r} is a training example of {intent}"
        for scenario in map(load_scenario, SCENARIO_FILES)
        for turn in scenario.turns
        if turn.say and (intent := trained.get(normalised(turn.say)))
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("language", CONFIG.languages)
def test_no_held_out_sentence_is_a_training_example(language: str) -> None:
    trained = training_sentences(language)
    held_out = training_sentences(language, folder="test")
    assert len(held_out) > 100
    leaked = sorted(text for text in held_out if text in trained)
    assert not leaked, f"{language}: held-out sentences in the training data: {leaked}"
