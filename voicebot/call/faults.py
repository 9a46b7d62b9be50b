"""Injected faults: make one stage fail on one caller turn, to test that the caller is told and escalated."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    stage: str  # asr | nlu | tts | dialogue
    turn: int = 1


class InjectedFault(RuntimeError):
    pass


def check_faults(faults: tuple[Fault, ...], stage: str, turn: int) -> None:
    """Raises the injected fault planned for this stage and caller turn, if any."""
    for fault in faults:
        if fault.stage == stage and fault.turn == turn:
            raise InjectedFault(f"injected {stage} fault on turn {turn}")
