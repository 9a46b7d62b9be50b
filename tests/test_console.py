"""The console: one conversation printer for every command, and no library noise unless `-v`."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from voicebot.config import Config
from voicebot.console import ConversationPrinter
from voicebot.events import (
    BotSaid,
    CallEnded,
    CallEvent,
    DialogueTransition,
    Escalated,
    NluParsed,
    PromptResumed,
    SpeechStarted,
    TtsFirstAudio,
)
from voicebot.nlu.rasa_engine import train

CALLER_LINE = "where is the nearest branch"
# What Python prints for a warning ("...: DeprecationWarning: ...", "UserWarning"), a traceback, and
# the log lines of TensorFlow's C++ core ("I tensorflow/...") and Python loggers ("WARNING rasa...").
NOISE = re.compile(r"Warning|Traceback|\btensorflow/|^(DEBUG|INFO|WARNING) ", re.MULTILINE)

EVENTS: list[CallEvent] = [
    BotSaid(text="How can I help you today?", audio_ms=1800),
    SpeechStarted(audio_ms=2500),  # not part of the conversation: never printed
    NluParsed(
        text="where is the nearest branch",
        intent="branch_location",
        confidence=0.91,
        ranking=[
            {"name": "branch_location", "confidence": 0.91},
            {"name": "branch_hours", "confidence": 0.05},
        ],
        audio_ms=4200,
    ),
    DialogueTransition(from_node="main_menu", to_node="branch_location", trigger="branch_location"),
    TtsFirstAudio(synth_ms=120.4, turn_latency_ms=830.2, audio_ms=4300),
    Escalated(reason="caller_request", queue="general", record={"summary": "caller wanted help"}),
    CallEnded(outcome="escalated", reason="bot_hangup", audio_ms=9000),
]


def printed(printer_options: dict[str, bool]) -> list[str]:
    screen = io.StringIO()
    show = ConversationPrinter(screen, **printer_options)
    for event in EVENTS:
        show(event)
    return screen.getvalue().splitlines()


def test_printer_shows_the_conversation_on_the_audio_clock() -> None:
    assert printed({}) == [
        "[   1.8s] Bot:    How can I help you today?",
        "[   4.2s]         -> branch_location 0.91",
        "[   0.0s]         [escalated: caller_request -> queue general]",
        "[   9.0s]         [call ended: escalated (bot_hangup)]",
    ]


def test_printer_detail_adds_runner_ups_nodes_handoff_and_latency_and_the_clock_can_go() -> None:
    assert printed({"detail": True, "clock": False}) == [
        "Bot:    How can I help you today?",
        "        -> branch_location 0.91",
        "           (then branch_hours 0.05)",
        "        node main_menu -> branch_location (branch_location)",
        "        turn latency 830 ms (tts 120 ms)",
        "        [escalated: caller_request -> queue general]",
        "        handoff: caller wanted help",
        "        [call ended: escalated (bot_hangup)]",
    ]


@pytest.fixture(scope="module")
def nlu_model(config: Config) -> None:
    """`voicebot chat` loads the project's trained model; train it if the data changed."""
    train(config.language, config.path(config.nlu.data_dir), config.path(config.nlu.models_dir))


def chat(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicebot.cli", *options, "chat"],
        input=f"{CALLER_LINE}\n",  # then end of input: the caller hangs up
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.usefixtures("nlu_model")
def test_chat_prints_the_conversation_and_no_library_noise() -> None:
    done = chat()
    assert done.returncode == 0, done.stderr
    assert not NOISE.search(done.stdout + done.stderr), done.stdout + done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    understood = next(i for i, line in enumerate(lines) if "-> branch_location" in line)
    answer = [line for line in lines[understood:] if line.startswith("Bot:")]
    assert answer and "Main Street" in answer[0], done.stdout  # the demo bank's nearest branch
    assert lines[-1].endswith("[call ended: contained (caller_hangup)]")


@pytest.mark.usefixtures("nlu_model")
def test_chat_verbose_still_chats() -> None:
    """`-v` lets the libraries print what they like; the conversation is still there."""
    done = chat("-v")
    assert done.returncode == 0, done.stderr
    assert "-> branch_location" in done.stdout


def test_printer_says_when_a_prompt_plays_on_after_a_false_interruption() -> None:
    screen = io.StringIO()
    ConversationPrinter(screen)(
        PromptResumed(resumed_at_ms=1200, heard_ms=1800, reason="backchannel", audio_ms=5000)
    )

    assert screen.getvalue().splitlines() == [
        "[   5.0s]         [not an interruption (backchannel): the prompt goes on from 1200 ms]"
    ]
