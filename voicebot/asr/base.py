"""The recognizer interface shared by all ASR engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RecognitionHints:
    """What the dialogue expects next, so an engine can bias or restrict recognition.

    ``grammar`` is a closed list of phrases (engines that support grammars restrict to it, plus
    "[unk]"); ``phrases`` are soft hints (prompt/hotword biasing) for open-vocabulary engines.
    ``digits`` says a digit string is expected: how many digits (0: any number), so that pauses
    between digit groups do not end the caller's turn. ``languages``: the caller may speak any of
    these (the call's own first); an engine that can identify the language does, and transcribes
    in it when the probability is ``language_threshold`` or more, else in the call's own
    (Transcript.language says which it heard, Transcript.text_language which the text is in).
    """

    phrases: tuple[str, ...] = ()
    grammar: tuple[str, ...] | None = None
    digits: int | None = None
    languages: tuple[str, ...] = ()
    language_threshold: float = 0.0


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float
    words: tuple[Word, ...] = ()
    alternatives: tuple[str, ...] = field(default_factory=tuple)
    # When asked to identify the language (RecognitionHints.languages): the one heard and the
    # probability the model gives it among those asked about; None when not asked or not able.
    language: str | None = None
    language_probability: float = 0.0
    text_language: str | None = None


class RecognizerStream(Protocol):
    """One utterance-in-progress; created per utterance, fed 16 kHz s16le frames."""

    def accept(self, pcm: bytes) -> str | None:
        """Feeds audio; returns a new partial transcript when it changed, else None."""

    def peek(self) -> Transcript | None:
        """Transcribes the audio so far without ending the utterance, so work can start while the
        endpointer still waits for silence; None where that is not possible or not worth it."""

    def finish(self) -> Transcript:
        """Ends the utterance and returns the final transcript."""


class Recognizer(Protocol):
    """An ASR engine loaded once and shared by all calls (streams are per call)."""

    name: str
    language: str

    def open_stream(self, hints: RecognitionHints | None = None) -> RecognizerStream: ...
