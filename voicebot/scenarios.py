"""Scripted callers: YAML scenarios played through the full audio pipeline.

```yaml
name: lost card, caller identifies with digits
noise_db: 15            # optional: white noise at this SNR on the caller's audio
telephone: true         # optional: 8 kHz G.711 mu-law channel
language: es            # optional: the call starts in it (as a gateway's start message asks);
                        # the test's caller voice speaks the scenario's language
fault: {stage: nlu, turn: 2}   # optional: make one engine fail on one turn
turns:
  - say: "I think I lost my debit card"   # synthesised with Piper, or  audio: path.wav (any rate)
    expect: {intent: report_lost_card}    # also: node, prompt, barge_in, resumed, transcript,
                                          # language (the call's language after this turn)
  - dtmf: "12345678#"
  - silent: true                           # say nothing (no-input)
  - say: "yes"
    barge_in: true                         # start talking over the bot's reply (or a delay in ms)
outcome: contained      # or escalated (with optional reason), abandoned
```

``resumed: true`` expects a false interruption: the bot's prompt, paused by the barge-in, plays on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.audio.degrade import add_noise, telephone_channel
from voicebot.audio.wav import load_wav
from voicebot.call import CallSession, Fault
from voicebot.datafile import LineDict, load_yaml, reject_unknown_keys, require_mapping
from voicebot.engines import Engines
from voicebot.errors import AudioFormatError, DataFileError
from voicebot.events import CallEvent
from voicebot.transports.simulated import CallerTurn, run_simulated_call
from voicebot.tts.base import Synthesizer

TURN_KEYS = {"say", "audio", "dtmf", "silent", "hangup", "barge_in", "expect"}
EXPECT_KEYS = {"intent", "node", "prompt", "barge_in", "resumed", "transcript", "language"}
OUTCOMES = ("contained", "escalated", "abandoned")
DEFAULT_BARGE_IN_MS = 1200


@dataclass(frozen=True)
class ScenarioTurn:
    line: int
    say: str | None = None
    audio: Path | None = None
    dtmf: str = ""
    silent: bool = False
    hangup: bool = False
    barge_in_ms: int | None = None
    expect: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    turns: tuple[ScenarioTurn, ...]
    outcome: str | None = None
    reason: str | None = None
    noise_db: float | None = None
    telephone: bool = False
    fault: Fault | None = None
    caller_id: str = "+15550100"
    language: str | None = None  # None: the default language


@dataclass
class TurnResult:
    transcript: str = ""
    intent: str = ""
    confidence: float | None = None
    failure: str = ""


@dataclass
class ScenarioResult:
    name: str
    path: str
    passed: bool
    turns: list[TurnResult]
    outcome: str
    reason: str
    failures: list[str]
    call_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "passed": self.passed,
            "outcome": self.outcome,
            "reason": self.reason,
            "failures": self.failures,
            "call_id": self.call_id,
            "turns": [t.__dict__ for t in self.turns],
        }


def _turn(raw: Any, path: Path, line: int) -> ScenarioTurn:
    spec = require_mapping(raw, path, "a turn", line)
    reject_unknown_keys(spec, TURN_KEYS, path, "turn")
    actions = [k for k in ("say", "audio", "dtmf", "silent", "hangup") if spec.get(k)]
    if len(actions) != 1:
        raise DataFileError(
            path, "each turn needs exactly one of say, audio, dtmf, silent, hangup", spec.line
        )
    expect = require_mapping(spec.get("expect", LineDict()), path, "expect", spec.line_of("expect"))
    reject_unknown_keys(expect, EXPECT_KEYS, path, "expect")
    audio = spec.get("audio")
    dtmf = str(spec.get("dtmf", "") or "")
    if dtmf and not re.fullmatch(r"[0-9*#]+", dtmf):
        raise DataFileError(path, f"dtmf '{dtmf}' may only hold 0-9, * and #", spec.line_of("dtmf"))
    barge_in = spec.get("barge_in")
    barge_in_ms = DEFAULT_BARGE_IN_MS if barge_in is True else int(barge_in) if barge_in else None
    return ScenarioTurn(
        line=spec.line,
        say=str(spec["say"]) if spec.get("say") else None,
        audio=(path.parent / str(audio)) if audio else None,
        dtmf=dtmf,
        silent=bool(spec.get("silent")),
        hangup=bool(spec.get("hangup")),
        barge_in_ms=barge_in_ms,
        expect=dict(expect),
    )


def load_scenario(path: Path) -> Scenario:
    doc = require_mapping(load_yaml(path), path, "a scenario")
    turns_raw = doc.get("turns")
    if not isinstance(turns_raw, list) or not turns_raw:
        raise DataFileError(path, "'turns' must be a non-empty list", doc.line_of("turns"))
    turns = tuple(_turn(t, path, getattr(t, "line", doc.line_of("turns"))) for t in turns_raw)
    outcome = doc.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise DataFileError(path, f"outcome must be one of {', '.join(OUTCOMES)}", doc.line_of("outcome"))
    fault = None
    if doc.get("fault") is not None:
        spec = require_mapping(doc["fault"], path, "fault", doc.line_of("fault"))
        fault = Fault(stage=str(spec.get("stage")), turn=int(spec.get("turn", 1)))
    for turn in turns:
        if turn.audio is not None and not turn.audio.exists():
            raise DataFileError(path, f"audio file {turn.audio} not found", turn.line)
    return Scenario(
        path=path,
        name=str(doc.get("name", path.stem)),
        turns=turns,
        outcome=outcome,
        reason=doc.get("reason"),
        noise_db=doc.get("noise_db"),
        telephone=bool(doc.get("telephone", False)),
        fault=fault,
        caller_id=str(doc.get("caller_id", "+15550100")),
        language=str(doc["language"]) if doc.get("language") else None,
    )


def load_scenarios(directory: Path) -> list[Scenario]:
    paths = sorted(directory.glob("*.yml"))
    if not paths:
        raise DataFileError(directory, "no *.yml scenarios found")
    return [load_scenario(p) for p in paths]


def caller_audio(turn: ScenarioTurn, voice: Synthesizer, noise_db: float | None, telephone: bool) -> bytes:
    if turn.say:
        pcm = b"".join(voice.synthesize(turn.say))
    elif turn.audio:
        try:
            pcm = load_wav(turn.audio)
        except AudioFormatError as exc:
            raise DataFileError(turn.audio, str(exc)) from exc
    else:
        return b""
    if telephone:
        pcm = telephone_channel(pcm)
    if noise_db is not None:
        pcm = add_noise(pcm, noise_db)
    return pcm


async def run_scenario(
    engines: Engines,
    scenario: Scenario,
    caller_voice: Synthesizer,
    *,
    noise_db: float | None = None,
    telephone: bool = False,
    paced: bool = False,
    listeners: list[Callable[[CallEvent], None]] | None = None,
) -> ScenarioResult:
    noise = noise_db if noise_db is not None else scenario.noise_db
    phone = telephone or scenario.telephone
    turns = [
        CallerTurn(
            audio=await asyncio.to_thread(caller_audio, t, caller_voice, noise, phone),
            dtmf=t.dtmf,
            silent=t.silent,
            hangup=t.hangup,
            barge_in_ms=t.barge_in_ms,
        )
        for t in scenario.turns
    ]
    session = CallSession(
        engines,
        caller_id=scenario.caller_id,
        language=scenario.language,
        faults=(scenario.fault,) if scenario.fault else (),
        listeners=listeners,
        on_handoff=engines.call_store.save_handoff,
    )
    call = await run_simulated_call(session, turns, paced=paced)
    return judge(
        scenario, session.events, call.turn_starts_ms, session.outcome or "abandoned", session.call_id
    )


def judge(
    scenario: Scenario, events: list[CallEvent], turn_starts: list[int], outcome: str, call_id: str
) -> ScenarioResult:
    """Compares what happened in each turn's window of the trace with the expectations."""
    failures: list[str] = []
    results: list[TurnResult] = []
    language = next((getattr(e, "language", "") for e in events if e.type == "call_started"), "")
    for index, turn in enumerate(scenario.turns):
        if index >= len(turn_starts):
            results.append(TurnResult(failure="the call ended before this turn"))
            failures.append(f"turn {index + 1} (line {turn.line}): the call ended before this turn")
            continue
        end = turn_starts[index + 1] if index + 1 < len(turn_starts) else None
        window = [e for e in events if e.audio_ms >= turn_starts[index] and (end is None or e.audio_ms < end)]
        result = _turn_result(window)
        switches = [getattr(e, "language", "") for e in window if e.type == "language_changed"]
        language = switches[-1] if switches else language
        problem = _check_turn(turn.expect, window, result)
        if not problem and "language" in turn.expect and language != turn.expect["language"]:
            problem = f"the call went on in {language or '-'}, expected {turn.expect['language']}"
        if problem:
            result.failure = problem
            failures.append(f"turn {index + 1} (line {turn.line}): {problem}")
        results.append(result)
    escalations = [e for e in events if e.type == "escalated"]
    reason = getattr(escalations[-1], "reason", "") if escalations else ""
    if scenario.outcome and outcome != scenario.outcome:
        failures.append(f"outcome {outcome} (reason {reason or '-'}), expected {scenario.outcome}")
    if scenario.reason and reason != scenario.reason:
        failures.append(f"escalation reason {reason or '-'}, expected {scenario.reason}")
    return ScenarioResult(
        name=scenario.name,
        path=str(scenario.path),
        passed=not failures,
        turns=results,
        outcome=outcome,
        reason=reason,
        failures=failures,
        call_id=call_id,
    )


def _turn_result(window: list[CallEvent]) -> TurnResult:
    result = TurnResult()
    asr = next((e for e in window if e.type == "asr_final"), None)
    nlu = next((e for e in window if e.type == "nlu_parsed"), None)
    if asr is not None:
        result.transcript = getattr(asr, "text", "")
    if nlu is not None:
        result.intent = getattr(nlu, "intent", "")
        result.confidence = getattr(nlu, "confidence", None)
    return result


def _check_turn(expect: dict[str, Any], window: list[CallEvent], result: TurnResult) -> str:
    if "intent" in expect and result.intent != expect["intent"]:
        return f"intent {result.intent or '-'} ({result.transcript!r}), expected {expect['intent']}"
    if "node" in expect:
        nodes = [getattr(e, "to_node", "") for e in window if e.type == "dialogue_transition"]
        if expect["node"] not in nodes:
            return f"did not reach node {expect['node']} (went to {', '.join(nodes) or 'nowhere'})"
    if "prompt" in expect:
        said = [getattr(e, "prompt_id", "") for e in window if e.type == "bot_said"]
        if expect["prompt"] not in said:
            return f"bot did not say prompt {expect['prompt']} (said {', '.join(said) or 'nothing'})"
    if "barge_in" in expect:
        barged = any(e.type == "barge_in" for e in window)
        if barged != bool(expect["barge_in"]):
            return f"barge-in {'happened' if barged else 'did not happen'}, expected {expect['barge_in']}"
    if "resumed" in expect:
        resumed = any(e.type == "prompt_resumed" for e in window)
        if resumed != bool(expect["resumed"]):
            return f"prompt {'resumed' if resumed else 'did not resume'}, expected {expect['resumed']}"
    if "transcript" in expect and str(expect["transcript"]).lower() not in result.transcript.lower():
        return f"transcript {result.transcript!r} lacks {expect['transcript']!r}"
    return ""
