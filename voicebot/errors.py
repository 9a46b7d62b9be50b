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


class AudioFormatError(VoicebotError):
    """Audio that cannot be decoded or has an unsupported layout."""


class ModelNotFoundError(VoicebotError):
    """A model the configuration asks for is not installed."""


class StageFailure(VoicebotError):
    """An engine (ASR, NLU, TTS, backend) failed during a call."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        self.cause = cause
        super().__init__(f"{stage} failed: {cause!r}")
