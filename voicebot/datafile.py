"""YAML loading for designers' and testers' files, keeping line numbers for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from voicebot.errors import DataFileError


class LineDict(dict[str, Any]):
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    mapping = LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if str(key) in mapping:
            # YAML would silently keep the second (a second `main_menu:` node replaces the first).
            first = mapping.key_lines[str(key)]
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first at line {first})", key_node.start_mark
            )
        mapping[str(key)] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[str(key)] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parses a YAML file; syntax errors become DataFileError with the file and line."""
    if not path.exists():
        raise DataFileError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read file: {exc}") from exc
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = exc.problem or str(exc)
        raise DataFileError(path, f"invalid YAML: {detail}", mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise DataFileError(path, f"invalid YAML: {exc}") from exc


def require_mapping(value: Any, path: Path, what: str, line: int | None = None) -> LineDict:
    if not isinstance(value, LineDict):
        raise DataFileError(path, f"{what} must be a mapping", line)
    return value


def reject_unknown_keys(mapping: LineDict, known: set[str], path: Path, what: str) -> None:
    """Typos in designers' files fail loudly, at the line of the first unknown key."""
    unknown = sorted(set(mapping) - known)
    if unknown:
        message = f"{what}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})"
        raise DataFileError(path, message, mapping.line_of(unknown[0]))
