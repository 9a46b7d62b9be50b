"""Reads what designers put in nlu_data/ without loading Rasa (fast, for checks)."""

from __future__ import annotations

from pathlib import Path

from voicebot.datafile import load_yaml
from voicebot.errors import DataFileError


def known_intents(language_dir: Path) -> set[str]:
    """The intents defined in a language's Rasa YAML training files."""
    if not language_dir.is_dir():
        raise DataFileError(language_dir, "NLU data directory not found")
    intents: set[str] = set()
    for path in sorted(language_dir.rglob("*.yml")):
        doc = load_yaml(path)
        for item in (doc or {}).get("nlu", []) or []:
            if isinstance(item, dict) and "intent" in item:
                intents.add(str(item["intent"]))
    return intents
