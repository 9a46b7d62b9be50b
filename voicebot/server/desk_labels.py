"""The agent desk's words in each UI language: ``labels/<language>.yml`` next to the templates, each
with the language's own name (shown for callers who speak it), its script's direction and the
labels. A label a language does not define is shown in English; a language without a file is
English throughout, its name its code."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.datafile import load_yaml
from voicebot.errors import DataFileError

LABELS_DIR = Path(__file__).parent / "labels"
FALLBACK = "en"
DIRECTIONS = ("ltr", "rtl")


@dataclass(frozen=True)
class LabelCatalog:
    language: str
    name: str  # the language's own name: "Español"
    direction: str = "ltr"  # of its script: ltr | rtl
    labels: dict[str, str] = field(default_factory=dict)


@functools.cache
def catalog(language: str, labels_dir: Path = LABELS_DIR) -> LabelCatalog:
    """One language's file as it is (no fallback); a missing file gives an empty catalog."""
    path = labels_dir / f"{language}.yml"
    if not path.exists():
        return LabelCatalog(language, language)
    doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("labels", {}), dict):
        raise DataFileError(path, "a label file is a mapping with 'name', 'direction' and 'labels'")
    direction = str(doc.get("direction", "ltr"))
    if direction not in DIRECTIONS:
        line = doc.line_of("direction")
        raise DataFileError(path, f"'direction' must be ltr or rtl, not '{direction}'", line)
    labels = {str(key): str(value) for key, value in doc.get("labels", {}).items()}
    return LabelCatalog(language, str(doc.get("name", language)), direction, labels)


def desk_labels(ui_language: str, labels_dir: Path = LABELS_DIR) -> dict[str, str]:
    """Every label in ``ui_language``, English where it has none."""
    return {**catalog(FALLBACK, labels_dir).labels, **catalog(ui_language, labels_dir).labels}


def language_names(languages: Sequence[str], labels_dir: Path = LABELS_DIR) -> dict[str, str]:
    return {language: catalog(language, labels_dir).name for language in languages}


def desk_texts(ui_language: str, languages: Sequence[str], labels_dir: Path = LABELS_DIR) -> dict[str, Any]:
    """What the desk's script needs: its labels, and each served language's name and direction."""
    catalogs = [catalog(language, labels_dir) for language in languages]
    return {
        "ui_language": ui_language,
        "labels": desk_labels(ui_language, labels_dir),
        "languages": {c.language: {"name": c.name, "direction": c.direction} for c in catalogs},
    }
