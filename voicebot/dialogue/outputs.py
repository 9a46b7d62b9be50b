"""What the dialogue answers with: words to say, a change of language, a handoff to agents, the end
of the call."""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.handoff.record import HandoffRecord


@dataclass(frozen=True)
class Say:
    text: str
    prompt_id: str
    interruptible: bool = True
    static: bool = True  # no values filled in: can be pre-synthesised and cached
    language: str | None = None  # spoken in this language, not the call's (another's offer)


@dataclass(frozen=True)
class SwitchLanguage:
    """The call goes on in ``language``: what the caller hears and is understood in, from here on."""

    language: str


@dataclass(frozen=True)
class Handoff:
    record: HandoffRecord


@dataclass(frozen=True)
class Hangup:
    outcome: str  # contained | escalated | abandoned


Output = Say | SwitchLanguage | Handoff | Hangup
