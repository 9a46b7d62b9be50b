"""A private PulseAudio server for tests of the real PortAudio path (no sound card needed).

Two null sinks: the bot plays into ``bot_out`` (tests capture its monitor with ``parec``), tests play
the caller into ``mic_feed`` with ``paplay``; ``virtual_mic`` (a remap of the feed's monitor) is the
default source, so ``sounddevice``'s default devices are the bot's speaker and the caller's mic.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from voicebot.audio import SAMPLE_RATE

BOT_SINK = "bot_out"
FEED_SINK = "mic_feed"
MIC_SOURCE = "virtual_mic"
CAPTURE_RATE = SAMPLE_RATE  # the call's own rate, so captures compare with its WAVs


class PulseError(RuntimeError):
    pass


@dataclass
class PulseServer:
    runtime_dir: Path
    env: dict[str, str]  # what a client needs to reach this server (and only this one)

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=20)
        if done.returncode:
            raise PulseError(f"pactl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout.strip()

    def play_command(self, wav: Path) -> list[str]:
        """paplay into the microphone feed (run it with this server's env)."""
        return ["paplay", f"--device={FEED_SINK}", str(wav)]

    def capture(self, raw: Path) -> subprocess.Popen[bytes]:
        """parec of everything the bot plays into ``raw`` (16 kHz mono s16le) until terminated. A file,
        not a pipe: parec stalls on a full pipe that nobody reads during the call."""
        command = ["parec", f"--device={BOT_SINK}.monitor", "--format=s16le", f"--rate={CAPTURE_RATE}"]
        with raw.open("wb") as out:
            return subprocess.Popen([*command, "--channels=1", "--raw"], env=self.env, stdout=out)

    def add_echo(self, gain_db: float) -> str:
        """Routes the bot's output back into the microphone (laptop speakers), attenuated."""
        module = self.pactl(
            "load-module",
            "module-loopback",
            f"source={BOT_SINK}.monitor",
            f"sink={FEED_SINK}",
            "latency_msec=60",
        )
        # The loopback's stream into the feed (one loopback at a time); short rows: id sink client driver.
        rows = [line.split() for line in self.pactl("list", "short", "sink-inputs").splitlines()]
        sink_input = next(row[0] for row in rows if row[3] == "module-loopback.c")
        self.pactl("set-sink-input-volume", sink_input, f"{gain_db}dB")
        return module

    def remove_echo(self, module: str) -> None:
        self.pactl("unload-module", module)

    def stop(self) -> None:
        pid_file = self.runtime_dir / "pulse" / "pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)


def start_pulse(runtime_dir: Path) -> PulseServer:
    """Starts a daemon with its own runtime dir and socket; raises PulseError saying what failed."""
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay", "parec") if shutil.which(tool) is None]
    if missing:
        raise PulseError(
            f"{', '.join(missing)} not found: `make setup` installs the Debian packages pulseaudio, "
            "pulseaudio-utils and libasound2-plugins"
        )
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket = runtime_dir / "native"
    # HOME too: the daemon keeps its state and cookie there, not in the real home.
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "HOME": str(runtime_dir),
        "PULSE_SERVER": f"unix:{socket}",
    }
    log = runtime_dir / "pulseaudio.log"
    # As root PulseAudio wants --system; --system=false with a private runtime dir runs it as a user daemon.
    command = [
        "pulseaudio", "--daemonize=yes", "-n", "--exit-idle-time=-1", "--system=false", "--use-pid-file=yes",
        f"--log-target=file:{log}", f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    server = PulseServer(runtime_dir, env)
    if done.returncode:
        details = log.read_text() if log.exists() else done.stderr
        raise PulseError(f"pulseaudio did not start (exit {done.returncode}):\n{details}")
    try:
        server.pactl("load-module", "module-null-sink", f"sink_name={BOT_SINK}")
        server.pactl("load-module", "module-null-sink", f"sink_name={FEED_SINK}")
        server.pactl(
            "load-module", "module-remap-source", f"master={FEED_SINK}.monitor", f"source_name={MIC_SOURCE}"
        )
        server.pactl("set-default-sink", BOT_SINK)
        server.pactl("set-default-source", MIC_SOURCE)
    except PulseError:
        server.stop()
        raise
    return server
