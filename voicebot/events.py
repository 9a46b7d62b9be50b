"""Typed call events: every stage emits these; together they form the call trace.

Each event carries two clocks: ``t`` (``time.monotonic()`` seconds, for wall-clock latency) and
``audio_ms`` (position on the call's audio clock, which advances 20 ms per frame and is the clock
the dialogue's timers run on, so paced and unpaced simulated calls behave the same).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar


@dataclass(kw_only=True)
class CallEvent:
    """Base of all trace events."""

    type: ClassVar[str] = "event"
    call_id: str = ""
    audio_ms: int = 0
    t: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"type": self.type, **data}


@dataclass(kw_only=True)
class CallStarted(CallEvent):
    type: ClassVar[str] = "call_started"
    caller_id: str
    language: str
    asr_engine: str
    nlu_engine: str


@dataclass(kw_only=True)
class SpeechStarted(CallEvent):
    type: ClassVar[str] = "speech_started"
    during_prompt: bool = False


@dataclass(kw_only=True)
class SpeechEnded(CallEvent):
    type: ClassVar[str] = "speech_ended"
    speech_ms: int
    # silence | max_length | hangup, or end_of_turn (the end-of-turn model) | digits (all expected
    # digits heard)
    reason: str = "silence"
    pause_ms: int = 0  # the caller's trailing silence when the turn was judged over
    turn_complete: float | None = None  # the end-of-turn model's probability at that pause


@dataclass(kw_only=True)
class AsrPartial(CallEvent):
    type: ClassVar[str] = "asr_partial"
    text: str


@dataclass(kw_only=True)
class AsrFinal(CallEvent):
    type: ClassVar[str] = "asr_final"
    text: str
    confidence: float
    words: list[dict[str, Any]] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    engine: str = ""
    compute_ms: float = 0.0
    audio_duration_ms: int = 0
    speculative: bool = False  # recognised during the trailing silence, before the endpoint fired


@dataclass(kw_only=True)
class NluParsed(CallEvent):
    type: ClassVar[str] = "nlu_parsed"
    text: str
    intent: str
    confidence: float
    ranking: list[dict[str, Any]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    compute_ms: float = 0.0
    # The text is not the recogniser's best but a hypothesis from its n-best list that the NLU
    # understood where it did not understand the best.
    from_n_best: bool = False


@dataclass(kw_only=True)
class DtmfReceived(CallEvent):
    type: ClassVar[str] = "dtmf"
    digits: str  # "*" when masked
    # Part of a PIN or of a digits slot's value (an account number): shown as "*" (handoff/redact.py).
    masked: bool = False


@dataclass(kw_only=True)
class DialogueTransition(CallEvent):
    type: ClassVar[str] = "dialogue_transition"
    from_node: str
    to_node: str
    trigger: str  # intent name, dtmf, no_input, no_match, confirm, ...
    decision: str = ""  # accept | confirm | reject | global | slot | ...


@dataclass(kw_only=True)
class NoInput(CallEvent):
    type: ClassVar[str] = "no_input"
    node: str
    count: int


@dataclass(kw_only=True)
class NoMatch(CallEvent):
    type: ClassVar[str] = "no_match"
    node: str
    count: int
    reason: str  # low_confidence | out_of_scope | unexpected_intent | empty


@dataclass(kw_only=True)
class BotSaid(CallEvent):
    type: ClassVar[str] = "bot_said"
    text: str
    prompt_id: str = ""
    interruptible: bool = True


@dataclass(kw_only=True)
class TtsStarted(CallEvent):
    type: ClassVar[str] = "tts_started"
    text: str
    cached: bool = False


@dataclass(kw_only=True)
class TtsFirstAudio(CallEvent):
    type: ClassVar[str] = "tts_first_audio"
    synth_ms: float
    # The answer to a speech turn: the caller's last speech frame reached the server -> the answer's
    # first audio frame left it (the time a frame waited at the server counts; see CallSession).
    turn_latency_ms: float | None = None
    # The answer to a key press, timed from when the key was taken: not a speech turn, so kept out
    # of the turn-latency figures.
    key_latency_ms: float | None = None


@dataclass(kw_only=True)
class TtsFinished(CallEvent):
    type: ClassVar[str] = "tts_finished"
    played_ms: int
    total_ms: int
    interrupted: bool = False


@dataclass(kw_only=True)
class BargeIn(CallEvent):
    type: ClassVar[str] = "barge_in"
    by: str  # speech | dtmf
    heard_ms: int
    prompt_ms: int
    # Speech only pauses the prompt until the caller's words are recognised: a PromptResumed follows
    # when they were no interruption (noise, a cough, "uh-huh"), else the prompt's TtsFinished.
    paused: bool = False


@dataclass(kw_only=True)
class PromptResumed(CallEvent):
    """A false interruption: the prompt paused by a barge-in plays on."""

    type: ClassVar[str] = "prompt_resumed"
    resumed_at_ms: int  # where in the prompt it plays on (backed up to the start of a phrase)
    heard_ms: int  # where it was paused
    reason: str  # empty | low_confidence | backchannel | nothing_heard


@dataclass(kw_only=True)
class LanguageChanged(CallEvent):
    type: ClassVar[str] = "language_changed"
    language: str
    previous: str
    trigger: str  # dtmf:7 | spoken | detected


@dataclass(kw_only=True)
class Escalated(CallEvent):
    type: ClassVar[str] = "escalated"
    reason: str
    queue: str
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class StageError(CallEvent):
    type: ClassVar[str] = "stage_error"
    stage: str
    error: str


@dataclass(kw_only=True)
class CallEnded(CallEvent):
    type: ClassVar[str] = "call_ended"
    outcome: str  # contained | escalated | abandoned
    reason: str = ""
    duration_ms: int = 0


@dataclass(kw_only=True)
class IdentificationFailed(CallEvent):
    """The account and PIN (the flow's auth slots) did not match."""

    type: ClassVar[str] = "identification_failed"
    account: str  # the account as given, its last 4 characters only
    attempt: int  # in this call
    reason: str  # the prompt the caller heard: auth_failed, ...


@dataclass(kw_only=True)
class IdentificationLocked(CallEvent):
    """The account's identification is locked (voicebot/dialogue/lockout.py): the caller goes to an agent."""

    type: ClassVar[str] = "identification_locked"
    account: str  # its last 4 characters only
    retry_after_s: int  # until the lockout ends
    # failures: this call's failed attempt found the account's limit reached | locked: it was locked
    # already, so this attempt was refused unchecked
    cause: str


@dataclass(kw_only=True)
class AgentLegSpeech(CallEvent):
    """A line of the talk after the bot, recognised live: the caller, an agent or a supervisor who
    joined (redacted like the bot's transcript)."""

    type: ClassVar[str] = "agent_leg_speech"
    speaker: str  # "Caller", or the username of the agent or supervisor
    text: str


@dataclass(kw_only=True)
class AgentLegAction(CallEvent):
    """What an agent or supervisor did with the call: accepted, hold, resume, mute, unmute,
    transfer (cold), consult, consult_cancelled, transfer_completed, monitor, whisper, barge,
    left, hangup."""

    type: ClassVar[str] = "agent_leg_action"
    action: str
    by: str  # the agent's or supervisor's username
    target: str = ""  # a transfer's queue or agent


class TraceWriter:
    """Writes events as JSON lines; usable as an event listener."""

    def __init__(self, target: Path | IO[str]) -> None:
        if isinstance(target, Path):
            target.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = target.open("w", encoding="utf-8")
            self._owned = True
        else:
            self._file = target
            self._owned = False

    def __call__(self, event: CallEvent) -> None:
        self._file.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._owned:
            self._file.close()


def read_trace(path: Path) -> list[dict[str, Any]]:
    """Reads a JSON-lines trace back as a list of dicts."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
