"""Errors that reach users: each says what is wrong and, for data files, where."""

from __future__ import annotations

from pathlib import Path


class VoicebotError(Exception):
    """Base class for errors shown to users without a traceback."""


class DataFileError(VoicebotError):
    """A designer's or tester's file (flow, prompts, scenario, NLU data) is malformed."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {message}")


class DataFileErrors(VoicebotError):
    """Every problem found in one file, reported together so that one edit can fix them all."""

    def __init__(self, problems: list[DataFileError]) -> None:
        self.problems = problems
        lines = [str(problem) for problem in problems]
        super().__init__(lines[0] if len(lines) == 1 else "\n".join([f"{len(lines)} problems:", *lines]))


class AudioFormatError(VoicebotError):
    """Audio that cannot be decoded or has an unsupported layout."""


class ModelNotFoundError(VoicebotError):
    """A model the configuration asks for is not installed."""
