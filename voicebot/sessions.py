"""Recorded calls ("sessions"): record a live call, replay it through the current models and flow,
and turn it into a scenario, so that real recordings become regression tests.

A session folder holds ``caller.wav`` (16 kHz: what the bot heard, after echo suppression),
``bot.wav`` (what the bot said), both one 20 ms frame per call step so they align with the audio
clock, ``trace.jsonl`` (the call's events) and ``summary.json`` (call id, outcome, duration and the
caller's turns with transcript, intent and confidence).

Keys that were part of a PIN or of an account number are masked in the trace (handoff/redact.py)
and never stored, so replaying such a call or making it a scenario needs them again
(``secret_keys``, one string per masked turn).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.audio.wav import load_wav, write_wav
from voicebot.call import CallSession
from voicebot.config import EndpointConfig
from voicebot.console import understood
from voicebot.engines import Engines
from voicebot.errors import VoicebotError
from voicebot.events import CallEvent, TraceWriter
from voicebot.scenarios import Scenario, load_scenario
from voicebot.transports.simulated import CallerTiming

CALLER_WAV = "caller.wav"
BOT_WAV = "bot.wav"
TRACE = "trace.jsonl"
SUMMARY = "summary.json"
_BYTES_PER_MS = FRAME_BYTES // FRAME_MS
_CUT_MARGIN_MS = 100  # extra caller audio before what the recogniser heard (pre-roll included)


def session_folder(root: Path, call_id: str) -> Path:
    return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{call_id}"


@dataclass
class Turn:
    """One thing the caller did: spoke, keyed digits, or stayed silent (a no-input)."""

    kind: str  # speech | dtmf | silent
    start_ms: int  # speech: when the endpointer heard speech start; dtmf: the first key
    end_ms: int  # speech: when the endpointer closed the utterance; dtmf: the last key
    transcript: str | None = None  # None: the speech was ignored (no recognition ran)
    asr_confidence: float | None = None
    intent: str = ""
    confidence: float | None = None
    keys: str = ""  # masked ('*') where secret
    key_ms: list[int] = field(default_factory=list)
    secret: bool = False  # the keys are masked (a PIN or an account number)
    # Barge-in: when the bot's speech that the caller talked over began (audio clock).
    interrupted_reply_ms: int | None = None

    def describe(self) -> str:
        if self.kind == "dtmf":
            return f"keys {self.keys}"
        if self.kind == "silent":
            return "(silent)"
        intent = f" {understood(self.intent, self.confidence)}" if self.intent else ""
        return f"{self.transcript!r}{intent}"


def caller_turns(events: list[dict[str, Any]]) -> list[Turn]:
    """The caller's turns, read from a call's events (trace dicts) in order."""
    turns: list[Turn] = []
    speech: Turn | None = None
    keys: Turn | None = None  # the key run in progress; the bot speaking ends it
    speaking_since = finished_at = -1
    for event in events:
        kind, at = event["type"], event["audio_ms"]
        if kind == "tts_finished":
            finished_at = at
        elif kind == "bot_said":
            keys = None
            if finished_at != at:  # not one prompt following another without a gap
                speaking_since = at
        elif kind == "speech_started":
            keys = None
            speech = Turn("speech", at, at)
            turns.append(speech)
        elif kind == "speech_ended" and speech is not None:
            speech.end_ms = at
        elif kind == "asr_final" and speech is not None:
            speech.transcript, speech.asr_confidence = event["text"], event["confidence"]
        elif kind == "nlu_parsed" and speech is not None:
            speech.intent, speech.confidence = event["intent"], event["confidence"]
        elif kind == "dtmf":
            secret = bool(event.get("masked"))
            if keys is None or keys.secret != secret:
                keys = Turn("dtmf", at, at, secret=secret)
                turns.append(keys)
            keys.keys += event["digits"]
            keys.key_ms.append(at)
            keys.end_ms = at
        elif kind == "barge_in":
            interrupter = keys if event["by"] == "dtmf" else speech
            if interrupter is not None:
                interrupter.interrupted_reply_ms = speaking_since
        elif kind == "no_input":
            turns.append(Turn("silent", at, at))
    # Speech the call ignored (noise, talk during a prompt that cannot be interrupted) was no turn.
    return [
        t for t in turns if t.kind != "speech" or (t.transcript is not None and (t.transcript or t.intent))
    ]


class TurnTracker:
    """A call listener keeping the events as trace dicts."""

    def __init__(self, session: CallSession) -> None:
        self.session = session
        self.events: list[dict[str, Any]] = []
        session.listeners.append(self)

    def __call__(self, event: CallEvent) -> None:
        self.events.append(event.to_dict())

    def summary(self) -> dict[str, Any]:
        ended = next((e for e in reversed(self.events) if e["type"] == "call_ended"), {})
        escalated = [e for e in self.events if e["type"] == "escalated"]
        return {
            "call_id": self.session.call_id,
            "caller_id": self.session.caller_id,
            "language": self.session.language,
            "outcome": self.session.outcome or "abandoned",
            "end_reason": ended.get("reason", ""),
            "escalation_reason": escalated[-1]["reason"] if escalated else "",
            "duration_ms": self.session.audio_ms,
            "turns": [dataclasses.asdict(t) for t in caller_turns(self.events)],
        }


class SessionRecorder:
    """Records a call into a session folder; attach it before the call starts, close it after."""

    def __init__(self, folder: Path, session: CallSession) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._trace = TraceWriter(folder / TRACE)
        session.listeners.append(self._trace)
        self._turns = TurnTracker(session)
        self._caller = bytearray()
        self._bot = bytearray()
        self._started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def add_frames(self, caller: bytes, bot: bytes) -> None:
        """What the call heard and what the bot said in the same step(s)."""
        self._caller += caller
        self._bot += bot

    def close(self) -> dict[str, Any]:
        self._trace.close()
        write_wav(self.folder / CALLER_WAV, bytes(self._caller))
        write_wav(self.folder / BOT_WAV, bytes(self._bot))
        summary = {"started_at": self._started_at, **self._turns.summary()}
        (self.folder / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        return summary


def load_summary(folder: Path) -> dict[str, Any]:
    path = folder / SUMMARY
    if not path.is_file():
        raise VoicebotError(f"{folder}: not a recorded session (no {SUMMARY})")
    return json.loads(path.read_text(encoding="utf-8"))


def _turns(summary: dict[str, Any]) -> list[Turn]:
    return [Turn(**t) for t in summary["turns"]]


def unmasked_keys(turns: list[Turn], secret_keys: Sequence[str]) -> list[str]:
    """Each DTMF turn's keys, with the keys of masked (secret) turns taken from ``secret_keys``."""
    result: list[str] = []
    secret_index = 0
    for number, turn in enumerate(turns, start=1):
        if turn.kind != "dtmf":
            continue
        if not turn.secret:
            result.append(turn.keys)
            continue
        if not secret_keys:
            raise VoicebotError(
                f"turn {number}: the caller's {len(turn.keys)} keys were a secret (a PIN or an account "
                "number) and are masked in the recording; give them with --secret-keys"
            )
        keys = secret_keys[min(secret_index, len(secret_keys) - 1)]
        secret_index += 1
        if len(keys) != len(turn.keys):
            raise VoicebotError(
                f"turn {number}: the caller keyed {len(turn.keys)} secret keys, --secret-keys gives {keys!r}"
            )
        result.append(keys)
    return result


# ----- replay --------------------------------------------------------------------------------------


async def replay_session(engines: Engines, folder: Path, secret_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Feeds the recorded caller audio (and keys, at their recorded times) into a new call, frame by
    frame from time 0 and unpaced, so it lines up with the original; returns the new summary."""
    summary = load_summary(folder)
    turns = _turns(summary)
    key_at: dict[int, str] = {}
    dtmf_turns = [t for t in turns if t.kind == "dtmf"]
    for turn, keys in zip(dtmf_turns, unmasked_keys(turns, secret_keys), strict=True):
        key_at.update(zip(turn.key_ms, keys, strict=True))
    session = CallSession(engines, caller_id=summary["caller_id"], language=summary["language"])
    tracker = TurnTracker(session)
    await session.start()
    await session.settle()
    for frame in split_frames(load_wav(folder / CALLER_WAV)):
        if session.ended:
            break
        await session.step(frame, key_at.get(session.audio_ms + FRAME_MS))
        await session.settle()  # unpaced: the models' work takes no audio time, as in the simulator
    await session.hangup()  # a no-op when the bot already ended the call
    return tracker.summary()


def compare_summaries(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[list[str]], bool]:
    """Rows (turn, recorded, replayed, what changed) and whether an intent or the outcome changed."""
    old_turns, new_turns = _turns(old), _turns(new)
    rows: list[list[str]] = []
    changed = old["outcome"] != new["outcome"]
    for index in range(max(len(old_turns), len(new_turns))):
        before = old_turns[index] if index < len(old_turns) else None
        after = new_turns[index] if index < len(new_turns) else None
        if before is None or after is None or before.kind != after.kind:
            note = "turn added" if before is None else "turn missing" if after is None else "different turn"
        elif before.intent != after.intent:
            note = "INTENT CHANGED"
        elif before.transcript != after.transcript:
            note = "transcript changed"
        else:
            note = ""
        changed = changed or note not in ("", "transcript changed")
        rows.append(
            [str(index + 1), before.describe() if before else "-", after.describe() if after else "-", note]
        )
    rows.append(
        ["outcome", old["outcome"], new["outcome"], "" if old["outcome"] == new["outcome"] else "CHANGED"]
    )
    return rows, changed


# ----- scenario from a session -----------------------------------------------------------------------


def scenario_from_session(
    folder: Path, endpoint: EndpointConfig, out: Path | None = None, secret_keys: Sequence[str] = ()
) -> Scenario:
    """Writes a scenario YAML (default ``SESSION/scenario.yml``) replaying the recorded caller: speech
    turns as WAVs cut from caller.wav next to it, keys, silences; the recorded intents and outcome
    become its expectations. Returns the scenario as loaded back."""
    summary = load_summary(folder)
    turns = _turns(summary)
    out = out or folder / "scenario.yml"
    out.parent.mkdir(parents=True, exist_ok=True)
    caller = load_wav(folder / CALLER_WAV)
    keys = iter(unmasked_keys(turns, secret_keys))
    # What the recogniser heard of an utterance starts this long before the endpointer's decision.
    heard_before_ms = endpoint.speech_start_window_ms + endpoint.pre_roll_ms + _CUT_MARGIN_MS
    specs: list[dict[str, Any]] = []
    previous_end_ms = 0
    for number, turn in enumerate(turns, start=1):
        spec: dict[str, Any]
        if turn.kind == "silent":
            spec = {"silent": True}
            began_ms = turn.start_ms
        elif turn.kind == "dtmf":
            spec = {"dtmf": next(keys)}
            began_ms = turn.start_ms - CallerTiming().dtmf_interval_ms  # the caller waits before a key
        else:
            began_ms = max(previous_end_ms, turn.start_ms - heard_before_ms, 0)
            wav = out.parent / f"{out.stem}-turn{number:02d}.wav"
            write_wav(wav, caller[began_ms * _BYTES_PER_MS : turn.end_ms * _BYTES_PER_MS])
            spec = {"audio": wav.name}
            if turn.intent:
                spec["expect"] = {"intent": turn.intent}
        if turn.interrupted_reply_ms is not None:
            spec["barge_in"] = max(FRAME_MS, began_ms - turn.interrupted_reply_ms)
        specs.append(spec)
        previous_end_ms = turn.end_ms
    doc: dict[str, Any] = {
        "name": f"recorded call {summary['call_id']}",
        "caller_id": summary["caller_id"],
        "turns": specs,
        "outcome": summary["outcome"],
    }
    if summary["escalation_reason"]:
        doc["reason"] = summary["escalation_reason"]
    header = f"# Made by `voicebot scenarios from-session {folder}` from the recorded call.\n"
    out.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_scenario(out)
