"""`voicebot mic` for real: PortAudio through a private PulseAudio server, a recorded caller played
into the virtual microphone, the bot captured from its speaker's monitor; and the echo suppressor,
with the bot's output looped back into the microphone like laptop speakers."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sounddevice as sd

from tests.pulse import PulseError, PulseServer, start_pulse
from voicebot.audio import FRAME_BYTES
from voicebot.audio.codecs import split_frames
from voicebot.audio.vad import Endpointer
from voicebot.audio.wav import load_wav
from voicebot.call import CallSession
from voicebot.config import PROJECT_ROOT, Config, EndpointConfig
from voicebot.engines import Engines
from voicebot.events import read_trace
from voicebot.sessions import SessionRecorder
from voicebot.tester_commands import LiveView, add_commands
from voicebot.transports.mic import EchoSuppressor, MicFrame, frame_rms, run_mic_call

DEMO = PROJECT_ROOT / "prompts" / "demo"
SPEECH_RMS = 32768 * 10 ** (-45 / 20)  # a 20 ms frame louder than -45 dBFS carries sound
WAIT_S = 60  # guards against a hung call only; nothing here depends on how fast things happen


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    try:
        server = start_pulse(tmp_path_factory.mktemp("pulse"))
    except PulseError as exc:
        pytest.fail(f"PulseAudio is needed for the microphone tests and could not start: {exc}")
    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = server.env["PULSE_SERVER"]  # PortAudio's ALSA pulse plugin, in-process
    # PortAudio lists devices once, at import, before this server ran: re-scan (the way
    # python-sounddevice's maintainer gives in its issues #3 and #125).
    sd._terminate()
    sd._initialize()
    yield server
    if saved is None:
        del os.environ["PULSE_SERVER"]
    else:
        os.environ["PULSE_SERVER"] = saved
    server.stop()


class LiveCall:
    """A mic call running in the background, with helpers to wait for what the bot does."""

    def __init__(self, engines: Engines, folder: Path, suppressor: EchoSuppressor | None) -> None:
        self.session = CallSession(engines, caller_id="pulse-test")
        self.recorder = SessionRecorder(folder, session=self.session)
        self.suppressor = suppressor
        self.keys: asyncio.Queue[str] = asyncio.Queue()
        self.frames: list[MicFrame] = []
        self.task: asyncio.Task[None] | None = None

    def on_frame(self, frame: MicFrame) -> None:
        self.frames.append(frame)
        self.recorder.add_frames(frame.heard, frame.bot)

    def start(self) -> None:
        self.task = asyncio.create_task(
            run_mic_call(
                self.session, keys=self.keys, suppressor=self.suppressor, frame_listeners=[self.on_frame]
            )
        )

    def count(self, kind: str) -> int:
        return sum(e.type == kind for e in self.session.events)

    async def until(self, condition: Callable[[], bool]) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not condition():
            assert self.task is not None and not self.task.done(), "the call stopped early"
            assert asyncio.get_running_loop().time() < deadline, "the call hung"
            await asyncio.sleep(0.05)

    async def bot_answered_and_quiet(self, bot_said_before: int) -> None:
        await self.until(lambda: self.count("bot_said") > bot_said_before and not self.session.bot_speaking)

    async def hang_up(self) -> dict[str, Any]:
        self.keys.put_nowait("q")
        assert self.task is not None
        await asyncio.wait_for(self.task, WAIT_S)
        return self.recorder.close()


async def play_caller(pulse: PulseServer, wav: Path) -> None:
    player = await asyncio.create_subprocess_exec(*pulse.play_command(wav), env=pulse.env)
    assert await asyncio.wait_for(player.wait(), WAIT_S) == 0


def sound_ms(pcm: bytes) -> int:
    return 20 * sum(frame_rms(f) > SPEECH_RMS for f in split_frames(pcm))


def test_live_call_through_pulseaudio(engines: Engines, pulse: PulseServer, tmp_path: Path) -> None:
    capture = pulse.capture(tmp_path / "captured.raw")
    call = LiveCall(engines, tmp_path / "session", EchoSuppressor())
    screen = io.StringIO()  # not a terminal: event lines only, no status line
    view = LiveView(call.session, call.suppressor, out=screen)
    call.session.listeners.append(view.on_event)

    async def scenario() -> dict[str, Any]:
        call.start()
        await call.bot_answered_and_quiet(0)  # greeting and menu
        said = call.count("bot_said")
        await play_caller(pulse, DEMO / "01_lost_card.wav")
        await call.until(lambda: call.count("bot_said") > said)
        return await call.hang_up()

    summary = asyncio.run(scenario())
    capture.terminate()
    capture.wait(timeout=10)
    captured = (tmp_path / "captured.raw").read_bytes()
    events = read_trace(tmp_path / "session" / "trace.jsonl")
    kinds = [e["type"] for e in events]
    understood = next(i for i, e in enumerate(events) if e["type"] == "nlu_parsed")
    assert events[understood]["intent"] == "report_lost_card"
    assert "bot_said" in kinds[understood:], "the bot did not answer the caller"
    assert "barge_in" not in kinds
    # The speaker's monitor really carried the bot's voice: seconds of sound, most of what it said.
    bot_sent = load_wav(tmp_path / "session" / "bot.wav")
    assert sound_ms(captured) >= 2000
    assert sound_ms(captured) >= 0.6 * sound_ms(bot_sent)
    # The recording: what the bot heard holds the caller's speech; the summary has the turn.
    heard = load_wav(tmp_path / "session" / "caller.wav")
    assert len(heard) == len(bot_sent) and len(heard) % FRAME_BYTES == 0
    assert sound_ms(heard) >= 1500
    assert summary["turns"][0]["intent"] == "report_lost_card"
    assert summary["call_id"] == call.session.call_id and summary["outcome"] == "abandoned"
    shown = screen.getvalue()
    for line in (
        "Bot:    Thank you for calling",
        "Caller: ",
        "-> report_lost_card",
        "node main_menu ->",
        "turn latency",
    ):
        assert line in shown, shown
    assert "\x1b" not in shown


def test_list_devices_shows_the_pulseaudio_devices(
    pulse: PulseServer, config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["mic", "--list-devices"])
    assert args.handler(args, config) == 0
    assert "pulse" in capsys.readouterr().out


def test_bot_does_not_interrupt_itself_on_its_own_echo(
    engines: Engines, pulse: PulseServer, tmp_path: Path
) -> None:
    echo = pulse.add_echo(gain_db=-15)
    call = LiveCall(engines, tmp_path / "session", EchoSuppressor())

    async def scenario() -> int:
        call.start()
        await call.bot_answered_and_quiet(0)
        said = call.count("bot_said")
        await play_caller(pulse, DEMO / "01_lost_card.wav")
        await call.until(lambda: call.count("bot_said") > said)  # the bot answers: auth, account number
        await asyncio.sleep(1.0)  # a second into the answer: the caller talks over it, louder than the echo
        talked_over_at = call.session.audio_ms
        await play_caller(pulse, DEMO / "02_account_number.wav")
        await call.bot_answered_and_quiet(call.count("bot_said"))
        await call.hang_up()
        return talked_over_at

    try:
        talked_over_at = asyncio.run(scenario())
    finally:
        pulse.remove_echo(echo)
    events = call.session.events
    intents = [getattr(e, "intent", "") for e in events if e.type == "nlu_parsed"]
    assert intents[0] == "report_lost_card"
    barge_ins = [e for e in events if e.type == "barge_in"]
    assert [e.by for e in barge_ins] == ["speech"], "the echo interrupted the bot, or the caller could not"
    assert barge_ins[0].audio_ms > talked_over_at
    # The echo really reached the microphone, and was gated as echo.
    gated_sound_ms = sum(20 for f in call.frames if f.echo_gated and frame_rms(f.raw) > SPEECH_RMS)
    assert gated_sound_ms >= 2000
    estimate = call.suppressor.estimate if call.suppressor else None
    print(f"echo path estimated: {estimate}; {gated_sound_ms} ms of echo gated")


def test_without_suppression_the_echo_interrupts_the_bot(
    engines: Engines, pulse: PulseServer, tmp_path: Path
) -> None:
    """The control for the test above: the same loopback does make the bot barge in on itself."""
    echo = pulse.add_echo(gain_db=-15)
    call = LiveCall(engines, tmp_path / "session", suppressor=None)

    async def scenario() -> None:
        call.start()
        await call.until(lambda: call.count("barge_in") > 0 or call.count("tts_finished") >= 2)
        await call.hang_up()

    try:
        asyncio.run(scenario())
    finally:
        pulse.remove_echo(echo)
    assert call.count("barge_in") > 0


def test_echo_suppressor_gates_echo_and_passes_a_louder_caller() -> None:
    """Offline, with a known echo path (-18 dB, 130 ms, a little reverb) and a caller over the echo."""
    rng = np.random.default_rng(0)
    bot = np.frombuffer(load_wav(DEMO / "04_branch.wav") * 3, np.int16).astype(float)
    caller = np.frombuffer(load_wav(DEMO / "01_lost_card.wav"), np.int16).astype(float)
    response = np.zeros(3200)
    response[0] = 1
    response += rng.normal(0, 0.05, response.size) * np.exp(-np.arange(response.size) / 800)
    delay = 16 * 130
    mic = np.concatenate([np.zeros(delay), np.convolve(bot, response)[: bot.size - delay] * 10 ** (-18 / 20)])
    talk_from = bot.size // 2
    mic[talk_from : talk_from + caller.size] += caller[: bot.size - talk_from]
    mic += rng.normal(0, 30, mic.size)
    mic_pcm = np.clip(mic, -32768, 32767).astype(np.int16).tobytes()
    suppressor = EchoSuppressor()
    endpointer = Endpointer(EndpointConfig())
    starts: list[int] = []
    bot_frames = split_frames(bot.astype(np.int16).tobytes())
    for slot, (played, picked_up) in enumerate(zip(bot_frames, split_frames(mic_pcm), strict=True)):
        event = endpointer.feed(suppressor.process(picked_up, slot))
        suppressor.played(played, slot)
        if event is not None and event.kind == "start":
            starts.append(slot * 20)
    # The endpointer hears nothing in the echo alone, and the caller once they talk over it.
    caller_from_ms = talk_from // 16
    assert starts and all(caller_from_ms <= ms <= caller_from_ms + caller.size // 16 for ms in starts)
    assert suppressor.estimate.delay_ms is not None and 100 <= suppressor.estimate.delay_ms <= 180
    assert -22 <= suppressor.estimate.gain_db <= -15
