"""Testers' commands: a live call through the microphone (`voicebot mic`), replaying a recorded call
(`voicebot replay`) and making a scenario from one (`voicebot scenarios from-session`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from voicebot.audio import FRAME_MS
from voicebot.config import Config
from voicebot.console import ConversationPrinter
from voicebot.events import AsrFinal, AsrPartial, CallEvent, SpeechStarted

if TYPE_CHECKING:  # the transport loads PortAudio: only `voicebot mic` imports it
    from voicebot.call import CallSession
    from voicebot.transports.mic import EchoSuppressor, MicFrame

_METER_WIDTH = 20
_METER_FLOOR_DB = -60.0
_REDRAW_EVERY_FRAMES = 5  # 10 status line updates a second


class _EventStream:
    """Where event lines go: wipes the live status line first, so lines scroll above it."""

    def __init__(self, out: IO[str], view: LiveView) -> None:
        self._out = out
        self._view = view

    def write(self, text: str) -> int:
        self._view.clear_status()
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()


class LiveView:
    """The terminal during a live call: scrolling event lines, and (on a terminal) a status line with
    the input level, VAD state, echo gating and the partial transcript."""

    def __init__(
        self, session: CallSession, suppressor: EchoSuppressor | None, out: IO[str] | None = None
    ) -> None:
        self._session = session
        self._suppressor = suppressor
        self._out = out or sys.stdout
        self._stream = _EventStream(self._out, self)
        self._print_conversation = ConversationPrinter(self._stream, detail=True)
        self._status_shown = False
        self._live = self._out.isatty()
        self._partial = ""
        self._frames = 0

    def clear_status(self) -> None:
        if self._status_shown:
            self._out.write("\r\x1b[2K")
            self._status_shown = False

    def on_event(self, event: CallEvent) -> None:
        self._print_conversation(event)
        if isinstance(event, AsrPartial):
            self._partial = event.text
        elif isinstance(event, AsrFinal | SpeechStarted):
            self._partial = ""

    def on_frame(self, frame: MicFrame) -> None:
        self._frames += 1
        if not self._live or self._frames % _REDRAW_EVERY_FRAMES:
            return
        level = frame.level_db
        filled = round(_METER_WIDTH * min(1.0, max(0.0, 1 - level / _METER_FLOOR_DB)))
        vad = "SPEECH" if self._session.in_speech else "quiet "
        bot = "bot talking" if self._session.bot_speaking else "bot quiet  "
        echo = ""
        if self._suppressor is not None:
            estimate = self._suppressor.estimate
            delay = "?" if estimate.delay_ms is None else f"{estimate.delay_ms}"
            state = "GATED" if frame.echo_gated else "open "
            echo = f" echo {state} {estimate.gain_db:+.0f} dB @{delay} ms"
        meter = "#" * filled + "." * (_METER_WIDTH - filled)
        status = f"mic [{meter}] {level:4.0f} dB {vad} {bot}{echo} | {self._partial}"
        width = os.get_terminal_size(self._out.fileno()).columns
        self._out.write("\r\x1b[2K" + status[: width - 1])
        self._out.flush()
        self._status_shown = True


@contextlib.contextmanager
def keyboard(keys: asyncio.Queue[str]) -> Iterator[None]:
    """Single key presses (cbreak mode) into ``keys`` while stdin is a terminal; else no keyboard."""
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def read_keys() -> None:
        for key in os.read(fd, 32).decode(errors="ignore"):
            keys.put_nowait(key)

    tty.setcbreak(fd)
    loop.add_reader(fd, read_keys)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_mic(args: argparse.Namespace, config: Config) -> int:
    from voicebot.call import CallSession
    from voicebot.engines import load_engines
    from voicebot.sessions import SessionRecorder, session_folder
    from voicebot.transports.mic import HANGUP_KEY, EchoSuppressor, check_devices, list_devices, run_mic_call

    if args.list_devices:
        print(list_devices())
        return 0
    check_devices(args.input, args.output)  # before the engines' seconds of loading
    engines = load_engines(config)
    session = CallSession(engines, caller_id=args.caller_id, on_handoff=engines.call_store.save_handoff)
    sessions_dir = Path(args.sessions_dir) if args.sessions_dir else config.path(config.sessions_dir)
    folder = session_folder(sessions_dir, session.call_id)
    recorder = SessionRecorder(folder, session)
    suppressor = None if args.no_echo_suppression else EchoSuppressor(margin_db=args.echo_margin_db)
    view = LiveView(session, suppressor)
    session.listeners.append(view.on_event)

    async def call() -> None:
        keys: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # hang up cleanly, keeping the recording
            loop.add_signal_handler(signum, keys.put_nowait, HANGUP_KEY)
        if sys.stdin.isatty():
            print("Speak after the bot. Digit keys send DTMF, q hangs up.")
        with keyboard(keys):
            await run_mic_call(
                session,
                input_device=args.input,
                output_device=args.output,
                keys=keys,
                suppressor=suppressor,
                frame_listeners=[view.on_frame, lambda f: recorder.add_frames(f.heard, f.bot)],
            )

    try:
        asyncio.run(call())
    finally:
        view.clear_status()
        summary = recorder.close()
    if suppressor is not None:
        estimate = suppressor.estimate
        delay = "delay unknown" if estimate.delay_ms is None else f"delay {estimate.delay_ms} ms"
        gated_ms = suppressor.gated_frames * FRAME_MS
        print(f"echo path {estimate.gain_db:+.1f} dB, {delay}; {gated_ms} ms of echo gated")
    print(f"outcome: {summary['outcome']}; session recorded in {folder}")
    return 0


def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    from tabulate import tabulate

    from voicebot.engines import load_engines
    from voicebot.sessions import compare_summaries, load_summary, replay_session

    folder = Path(args.session)
    recorded = load_summary(folder)
    engines = load_engines(config)
    replayed = asyncio.run(replay_session(engines, folder, args.secret_keys))
    rows, changed = compare_summaries(recorded, replayed)
    print(tabulate(rows, headers=["turn", "recorded", "replayed", "change"]))
    print("intents or outcome changed" if changed else "no intent or outcome changed")
    return 1 if changed else 0


def cmd_from_session(args: argparse.Namespace, config: Config) -> int:
    from voicebot.sessions import scenario_from_session

    scenario = scenario_from_session(
        Path(args.session), config.endpoint, Path(args.out) if args.out else None, args.secret_keys
    )
    print(
        f"wrote {scenario.path} ({len(scenario.turns)} turns); "
        f"run it with: voicebot scenarios run {scenario.path}"
    )
    return 0


def _secret_keys_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-keys",
        type=lambda text: text.split(","),
        default=[],
        help="the keys of masked (PIN) turns, comma-separated in order, e.g. 4321 (the last one repeats)",
    )


def add_commands(subparsers: Any) -> None:
    """Registers `voicebot mic` and `voicebot replay`."""
    mic = subparsers.add_parser("mic", help="a live call through the microphone and speakers, recorded")
    mic.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    mic.add_argument("--input", help="input device (index or name part; default: the system's)")
    mic.add_argument("--output", help="output device (index or name part; default: the system's)")
    mic.add_argument("--caller-id", default="mic")
    mic.add_argument(
        "--sessions-dir", help="where recordings go (default: sessions_dir in the settings, sessions/)"
    )
    mic.add_argument("--no-echo-suppression", action="store_true", help="for a headset")
    mic.add_argument(
        "--echo-margin-db", type=float, default=10.0, help="how much louder than the echo a caller must be"
    )
    mic.set_defaults(handler=cmd_mic)

    replay = subparsers.add_parser(
        "replay", help="re-run a recorded call through the current models and flow"
    )
    replay.add_argument("session", help="a session folder (sessions/<time>-<call id>)")
    _secret_keys_option(replay)
    replay.set_defaults(handler=cmd_replay)


def add_from_session(scenario_subcommands: Any) -> None:
    """Registers `voicebot scenarios from-session`."""
    parser = scenario_subcommands.add_parser("from-session", help="make a scenario from a recorded call")
    parser.add_argument("session", help="a session folder (sessions/<time>-<call id>)")
    parser.add_argument("--out", help="scenario file to write (default: SESSION/scenario.yml)")
    _secret_keys_option(parser)
    parser.set_defaults(handler=cmd_from_session)
