"""The end-of-turn decision at a pause: is the caller done, or only drawing breath?

Silence alone must wait long (a pause mid-sentence looks like the end of one), so it either cuts
callers off or answers slowly. The decision here weighs three things, each cheap by the time the
pause is a few hundred ms long: the Smart Turn model's probability that the audio so far is a
complete turn; whether the NLU understood the speculative transcript as a request; and what the
dialogue expects (while a caller reads an account number, a pause between digit groups ends the
turn only when all the digits were heard, since a digit group sounds complete on its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from voicebot.config import EndpointConfig


class CompletionModel(Protocol):
    """A model of whether a turn is complete, from its audio (16 kHz s16le, ending at the pause)."""

    name: str

    def complete(self, pcm: bytes) -> float: ...


@dataclass(frozen=True)
class Pause:
    """What is known about the caller's current pause."""

    silence_ms: int
    complete: float | None = None  # the model's probability; None while it runs, or with no model
    digits_expected: int | None = None  # a digit string is expected: this many digits (0: any)
    digits_heard: int | None = None  # digits in the speculative transcript; None until it is ready
    # The NLU's confidence in the speculative transcript's intent; None until it is ready, and for
    # a parse that understood nothing (out of scope, fallback).
    understood: float | None = None


def silence_needed_ms(
    config: EndpointConfig, model: CompletionModel | None, digits_expected: int | None
) -> int:
    """The pause after which the turn ends whatever else is known."""
    if model is None or config.end_of_turn == "silence":
        return config.end_silence_ms
    if digits_expected is not None:
        return config.digits_pause_ms
    return config.turn_max_silence_ms


def turn_is_over(config: EndpointConfig, model: CompletionModel | None, pause: Pause) -> bool:
    if pause.silence_ms >= silence_needed_ms(config, model, pause.digits_expected):
        return True
    if model is None or config.end_of_turn == "silence" or pause.silence_ms < config.turn_check_ms:
        return False
    if pause.digits_expected is not None:
        if pause.digits_heard is None:
            return False  # wait for the transcript: it says whether digits are being read
        if pause.digits_heard:
            # A partial digit string: more is coming. A complete one (known length) is done.
            return bool(pause.digits_expected) and pause.digits_heard >= pause.digits_expected
        # No digits at all ("I don't know it", "agent"): an ordinary turn.
    # Very sure words end the turn at a longer pause without the model: on flat or unusual prosody
    # it calls complete requests unfinished (measured with scripts/bench_eot.py, see README).
    sure = pause.understood is not None and pause.understood >= config.turn_sure_confidence
    if sure and pause.silence_ms >= config.turn_sure_silence_ms:
        return True
    if pause.complete is None:
        return False
    if pause.complete >= config.turn_complete_threshold:
        return True  # the model alone is sure
    # Understood words and a model that does not object: measured, the model alone cuts callers off
    # at pauses that sound final ("my card | was stolen"), and the NLU alone ends turns on a
    # confidently parsed first half ("I want to transfer | fifty dollars").
    understood = pause.understood is not None and pause.understood >= config.turn_understood_confidence
    return understood and pause.complete >= config.turn_understood_threshold
