"""The terminal face of a call: the one conversation printer every command uses, and keeping
third-party warnings and log lines off the console unless asked for (`voicebot -v`)."""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any

from voicebot.events import CallEvent

# Rasa and the libraries it loads log warnings about their own set-up (TensorFlow through absl);
# ours are all under "voicebot".
_THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "rasa", "matplotlib")
_INDENT = " " * 8  # annotations line up under what the caller and the bot said


def quiet_console(verbose: bool) -> None:
    """Unless ``verbose``, routes Python warnings into logging and drops them, and lowers third-party
    loggers to errors. Call it before Rasa (TensorFlow) is imported: TensorFlow reads its C++ log
    level from the environment once, at import."""
    if verbose:
        return
    # Set, not defaulted: Rasa itself sets "2" (which still lets TensorFlow warn), and child
    # processes of a process that loaded Rasa inherit that.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # Filters alone do not hold: importing Sanic (under Rasa) installs its own "once" filter for
    # DeprecationWarning. Captured warnings go to the "py.warnings" logger, whatever the filters say.
    logging.captureWarnings(True)
    for name in ("py.warnings", *_THIRD_PARTY_LOGGERS):
        logging.getLogger(name).setLevel(logging.ERROR)


def understood(intent: str, confidence: float) -> str:
    """What the NLU made of the caller's words, as the printer and the replay table show it."""
    return f"-> {intent} {confidence:.2f}"


def _main_line(data: dict[str, Any]) -> str | None:
    kind = data["type"]
    if kind == "bot_said":
        return f"Bot:    {data['text']}"
    if kind == "asr_final" and data["text"]:
        return f"Caller: {data['text']}  (asr {data['confidence']:.2f})"
    if kind == "nlu_parsed":
        return _INDENT + understood(data["intent"], data["confidence"])
    if kind == "dtmf":
        return f"Caller: (key {data['digits']})"
    if kind == "barge_in":
        return f"{_INDENT}[caller interrupted after {data['heard_ms']} of {data['prompt_ms']} ms]"
    if kind == "prompt_resumed":
        resumed_at = data["resumed_at_ms"]
        return f"{_INDENT}[not an interruption ({data['reason']}): the prompt goes on from {resumed_at} ms]"
    if kind in ("no_input", "no_match"):
        return f"{_INDENT}[{kind} {data['count']} at {data['node']}]"
    if kind == "escalated":
        return f"{_INDENT}[escalated: {data['reason']} -> queue {data['queue']}]"
    if kind == "stage_error":
        return f"{_INDENT}[error in {data['stage']}: {data['error']}]"
    if kind == "call_ended":
        return f"{_INDENT}[call ended: {data['outcome']} ({data['reason']})]"
    return None


def _detail_line(data: dict[str, Any]) -> str | None:
    """What testers and designers watch besides the conversation: runner-up intents, where the
    dialogue went, what the agent will see, how long the bot took to answer."""
    kind = data["type"]
    if kind == "nlu_parsed" and len(data["ranking"]) > 1:
        others = ", ".join(f"{r['name']} {r['confidence']:.2f}" for r in data["ranking"][1:4])
        return f"{_INDENT}   (then {others})"
    if kind == "dialogue_transition":
        return f"{_INDENT}node {data['from_node']} -> {data['to_node']} ({data['trigger']})"
    if kind == "escalated" and data["record"].get("summary"):
        return f"{_INDENT}handoff: {data['record']['summary']}"
    if kind == "tts_first_audio" and data["turn_latency_ms"] is not None:
        return f"{_INDENT}turn latency {data['turn_latency_ms']:.0f} ms (tts {data['synth_ms']:.0f} ms)"
    if kind == "tts_first_audio" and data.get("key_latency_ms") is not None:
        return f"{_INDENT}answered the key in {data['key_latency_ms']:.0f} ms (tts {data['synth_ms']:.0f} ms)"
    return None


class ConversationPrinter:
    """An event listener printing a call as it happens: what each side said, what the bot understood,
    where it went. ``detail`` adds the lines of `_detail_line`; ``clock`` prefixes each line with the
    event's audio-clock position (a text chat has no audio clock)."""

    def __init__(self, stream: IO[str] | None = None, *, detail: bool = False, clock: bool = True) -> None:
        self._stream = stream
        self._detail = detail
        self._clock = clock

    def __call__(self, event: CallEvent) -> None:
        data = event.to_dict()
        lines = [_main_line(data), _detail_line(data) if self._detail else None]
        prefix = f"[{event.audio_ms / 1000:6.1f}s] " if self._clock else ""
        for line in lines:
            if line is not None:
                # Looked up per line, not stored: pytest and callers may swap sys.stdout meanwhile.
                print(prefix + line, file=self._stream or sys.stdout, flush=True)
