"""A headless baresip soft-phone for tests: a real SIP user agent to call the bot, or to be called by it.

`BaresipPhone` writes a minimal baresip config dir, runs `baresip` as a subprocess and drives it over the
`ctrl_tcp` control channel (JSON netstrings: commands in, responses and UA events out). What the phone
sends comes from a WAV file (`aufile`); what it hears and sends is recorded by `sndfile` as
`dump-*-dec.wav` / `dump-*-enc.wav`. SIP messages are printed by baresip's SIP trace (`-s`) and parsed
from its output, so a test can assert on the headers of INVITEs the phone received.

Facts about Debian's baresip 1.0.0 that shaped this (checked between two instances on loopback):

- `aufile` hangs the call up (reason "end of file") when its WAV runs out, so every source WAV is padded
  with silence up to `max_call_s`; it also refuses anything but 8 kHz mono s16, hence `to_phone_audio`.
- `ausrc aufile,PATH` switches the source of a running call (`play()`). The device string and
  sndfile's file names are limited to 127 characters, so a long config dir is reached through a short
  symlink in /tmp.
- `sndcode DIGITS` sends RFC 4733 telephone-events; the far end reports CALL_DTMF_START with the digit.
- `hold` / `resume` send re-INVITEs with `a=sendonly` / `a=sendrecv`. But any re-INVITE that is not
  sendrecv drops sndfile from the receive pipeline for good (audio.c `audio_decoder_set` flushes the rx
  filters), so after a hold `heard` stops growing, on both phones, though audio still flows.
- baresip cannot add headers to an INVITE it sends (`?X-Foo=bar` in the dial URI stays in the
  Request-URI); it only shows the headers it receives (trace). A REFER (`transfer()`) works.
- `net_interface 127.0.0.1` keeps SDP on loopback (`lo` is refused); RTP still binds 0.0.0.0.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import soundfile as sf
import soxr

BARESIP = shutil.which("baresip")
SAMPLE_RATE = 8000  # G.711; aufile refuses any other rate
MODULE_PATH = next(
    (p for p in ("/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules") if Path(p).is_dir()),
    "/usr/lib/baresip/modules",
)
CODECS = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1"}
_MAX_DIR_CHARS = 80  # sndfile: 128-char file names; menu's ausrc: 128-char device strings
_TRACE = re.compile(r"\x1b\[36;1m#\n(UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)\x1b\[;m\n", re.DOTALL)

Transport = Literal["udp", "tcp"]
AudioInput = str | os.PathLike[str] | tuple[np.ndarray, int] | None


class BaresipError(RuntimeError):
    """baresip failed, or what a test waited for did not happen; carries the tail of its log."""


@dataclass(frozen=True)
class SipMessage:
    """One SIP message from baresip's trace, with the headers in order (names as sent)."""

    transport: str
    source: str
    destination: str
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @property
    def method(self) -> str | None:
        """The request method, or None for a response."""
        return None if self.start_line.startswith("SIP/") else self.start_line.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in order (case-insensitive name)."""
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @classmethod
    def parse(cls, transport: str, source: str, destination: str, text: str) -> SipMessage:
        """Parse the text of a trace block (CRLF or LF line ends, folded lines joined)."""
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        lines = head.split("\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
            elif ":" in line:
                name, value = line.split(":", 1)
                headers.append((name.strip(), value.strip()))
        return cls(transport, source, destination, lines[0].strip(), tuple(headers), body)


@dataclass(frozen=True)
class Recording:
    """One call as the phone recorded it: `heard` = decoded from the peer, `sent` = what it encoded."""

    heard: np.ndarray  # int16, mono
    sent: np.ndarray  # int16, mono
    sample_rate: int
    heard_path: Path
    sent_path: Path


@dataclass
class _Events:
    """UA events from ctrl_tcp, with a per-type cursor so each wait returns the next unseen one."""

    items: list[dict[str, Any]] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A free port P with P+1 also free on UDP and TCP (baresip listens for SIP on P and TLS on P+1)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port < 65535 and all(_is_free(host, p) for p in (port, port + 1)):
            return port
    raise BaresipError("no free SIP port pair found")


def _is_free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def to_phone_audio(audio: AudioInput, pad_to_s: float = 0.0) -> np.ndarray:
    """Any WAV (path) or (samples, rate) as 8 kHz mono int16, padded with silence to `pad_to_s` seconds."""
    if audio is None:
        samples = np.zeros(0, dtype=np.int16)
    else:
        if isinstance(audio, tuple):
            data, rate = np.asarray(audio[0]), int(audio[1])
            if data.dtype.kind in "iu":  # integers: scale by their full range
                data = data.astype(np.float64) / float(np.iinfo(data.dtype).max + 1)
        else:
            data, rate = sf.read(os.fspath(audio), dtype="float64", always_2d=True)
        data = np.asarray(data, dtype=np.float64)
        if data.ndim == 2:
            data = data.mean(axis=1)
        if rate != SAMPLE_RATE and data.size:
            data = soxr.resample(data, rate, SAMPLE_RATE)
        samples = np.clip(np.round(data * 32767.0), -32768, 32767).astype(np.int16)
    pad = int(pad_to_s * SAMPLE_RATE) - samples.size
    return np.concatenate([samples, np.zeros(pad, dtype=np.int16)]) if pad > 0 else samples


class BaresipPhone:
    """A real SIP phone (baresip) on 127.0.0.1 for tests: dial or auto-answer, DTMF, hold, recordings.

    Use as a context manager so baresip is always stopped, even when the test fails:

        with BaresipPhone(tmp_path / "caller", audio="caller.wav") as phone:
            phone.dial("sip:ivr@127.0.0.1:5060")
            phone.wait_established()
            phone.send_dtmf("1234#")
            phone.hangup()
            phone.wait_closed()
        heard = phone.recordings()[-1].heard

    `answer=True` makes it answer every INVITE (a PBX or an agent phone); `received_invites()` then gives
    the INVITEs it got with their headers (e.g. `X-...`, `User-to-User`).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        user: str = "tester",
        sip_port: int | None = None,
        answer: bool = False,
        audio: AudioInput = None,
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        max_call_s: float = 120.0,
        lifetime_s: int = 600,
        verbose: bool = False,
        extra_config: Sequence[str] = (),
    ) -> None:
        """Prepare (not start) a phone; `codecs` is the offer/answer order, e.g. ("PCMA", "PCMU")."""
        unknown = [c for c in codecs if c.upper() not in CODECS]
        if unknown or not codecs:
            raise ValueError(f"codecs must be a non-empty sequence of {sorted(CODECS)}, got {codecs!r}")
        self.workdir = Path(workdir).resolve()
        self.user = user
        self.host = "127.0.0.1"
        self._auto_port = sip_port is None
        self.sip_port = sip_port or free_port_pair(self.host)
        self.ctrl_port = _free_tcp_port(self.host)
        self.answer = answer
        self.codecs = tuple(c.upper() for c in codecs)
        self.max_call_s = max_call_s
        self.lifetime_s = lifetime_s
        self.verbose = verbose
        self.extra_config = tuple(extra_config)
        self._initial_audio = audio
        self._link: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._output: list[str] = []
        self._output_lock = threading.Lock()
        self._events = _Events()
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._tokens = itertools.count(1)
        self._sources = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._command_lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- lifecycle

    @property
    def uri(self) -> str:
        """This phone's SIP URI (what the bot dials to reach it)."""
        return f"sip:{self.user}@{self.host}:{self.sip_port}"

    @property
    def log_path(self) -> Path:
        """baresip's stdout and stderr (SIP trace included), for debugging a failed test."""
        return self.workdir / "baresip.log"

    def __enter__(self) -> BaresipPhone:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> BaresipPhone:
        """Write the config dir, start baresip and connect to ctrl_tcp; raises BaresipError on failure.

        Ports picked here can be taken by another process before baresip binds them; then it retries
        with fresh ports (a SIP port given by the caller is kept).
        """
        if BARESIP is None:
            raise BaresipError("baresip is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in itertools.count(1):
            self._write_config()
            self._proc = subprocess.Popen(
                [BARESIP, "-f", str(self._dir), "-s", *(["-v"] * self.verbose), "-t", str(self.lifetime_s)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            self._spawn(self._pump_output)
            try:
                self.wait_for_output("baresip is ready.", timeout)
                if "ctrl_tcp: failed" in self.output:  # baresip runs on without it: never talk to a stranger
                    raise self._error("ctrl_tcp could not listen")
                self._connect(timeout)
                return self
            except BaseException:
                self.stop()
                if attempt >= 3 or "Address already in use" not in self.output:
                    raise
            with self._output_lock:
                self._output.clear()
            if self._auto_port:
                self.sip_port = free_port_pair(self.host)
            self.ctrl_port = _free_tcp_port(self.host)
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 5.0) -> None:
        """Quit baresip (hanging up any call), then terminate/kill it if it lingers; safe to call twice."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError, BaresipError):
                self.command("quit", timeout=1.0)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        for thread in self._threads:
            thread.join(2.0)
        self._threads.clear()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._link is not None:
            with contextlib.suppress(OSError):
                self._link.unlink()
                self._link.parent.rmdir()
            self._link = None

    @property
    def running(self) -> bool:
        """Whether the baresip process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------------------------------- control

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a baresip long command (as typed after '/') over ctrl_tcp and return its output."""
        if self._sock is None:
            raise BaresipError("baresip is not running")
        token = str(next(self._tokens))
        message: dict[str, str] = {"command": name, "token": token}
        if params:
            message["params"] = params
        payload = json.dumps(message).encode()
        with self._command_lock:
            self._sock.sendall(b"%d:%s," % (len(payload), payload))
            deadline = time.monotonic() + timeout
            while True:
                try:
                    response = self._responses.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise self._error(f"no response to {name!r} within {timeout} s") from None
                if response.get("token") == token:
                    break
        if not response.get("ok", False):
            raise self._error(f"{name} {params}: {response.get('data')!r}")
        return str(response.get("data", ""))

    def dial(self, uri: str, transport: Transport | None = None) -> None:
        """Place a call; `transport="tcp"` adds `;transport=tcp` to the URI (UDP is baresip's default)."""
        if transport is not None and ";transport=" not in uri.lower():
            uri = f"{uri};transport={transport}"
        self.command("dial", uri)

    def accept(self) -> None:
        """Answer the ringing incoming call (for a phone made with answer=False)."""
        self.command("accept")

    def hangup(self) -> None:
        """Hang up the current call (BYE, or CANCEL while it is still ringing)."""
        self.command("hangup")

    def hold(self) -> None:
        """Put the current call on hold (re-INVITE with a=sendonly); `heard` stops recording (see top)."""
        self.command("hold")

    def resume(self) -> None:
        """Take the current call off hold (re-INVITE with a=sendrecv)."""
        self.command("resume")

    def transfer(self, uri: str) -> None:
        """Blind-transfer the peer of the current call to `uri` (REFER with Refer-To)."""
        self.command("transfer", uri)

    def send_dtmf(self, digits: str, gap_s: float = 0.25) -> None:
        """Send RFC 4733 telephone-events, one `sndcode` per digit `gap_s` apart, like key presses."""
        for i, digit in enumerate(digits):
            if digit not in "0123456789*#ABCDabcd":
                raise ValueError(f"not a DTMF digit: {digit!r}")
            if i:
                time.sleep(gap_s)
            self.command("sndcode", digit.upper())

    def play(self, audio: AudioInput) -> Path:
        """Switch what the phone sends, mid-call (e.g. silence, then the caller speaks); returns the WAV.

        The audio is padded with silence to `max_call_s`, because aufile hangs up at end of file.
        """
        path = self._write_source(audio, f"src{next(self._sources)}.wav")
        self.command("ausrc", f"aufile,{path}")
        return path

    # -------------------------------------------------------------------------------------------- events

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every UA event so far (dicts from ctrl_tcp: type, class, param, peeruri, direction, id...)."""
        with self._events.cond:
            return list(self._events.items)

    def wait_for_event(
        self, kind: str, timeout: float = 10.0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """The next not yet returned event of this type (e.g. "CALL_ESTABLISHED"), or BaresipError."""
        events = self._events
        deadline = time.monotonic() + timeout
        with events.cond:
            while True:
                start = events.cursors.get(kind, 0)
                for i in range(start, len(events.items)):
                    event = events.items[i]
                    if event.get("type") == kind and (where is None or where(event)):
                        events.cursors[kind] = i + 1
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    seen = [e.get("type") for e in events.items]
                    raise self._error(f"no {kind} event within {timeout} s (events so far: {seen})")
                events.cond.wait(min(remaining, 0.2))

    def wait_established(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the next call to be answered (CALL_ESTABLISHED)."""
        return self.wait_for_event("CALL_ESTABLISHED", timeout)

    def wait_closed(self, timeout: float = 10.0) -> str:
        """Wait for the next call to end; returns baresip's reason (e.g. "Connection reset by peer")."""
        return str(self.wait_for_event("CALL_CLOSED", timeout).get("param", ""))

    @property
    def received_dtmf(self) -> str:
        """The digits received so far as telephone-events (CALL_DTMF_START events), in order."""
        return "".join(str(e.get("param", "")) for e in self.events if e.get("type") == "CALL_DTMF_START")

    def wait_for_dtmf(self, digits: str, timeout: float = 10.0) -> str:
        """Wait until the received digits end with `digits`; returns all received digits."""
        deadline = time.monotonic() + timeout
        with self._events.cond:
            while not self.received_dtmf.endswith(digits):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    raise self._error(
                        f"DTMF {digits!r} not received in {timeout} s (got {self.received_dtmf!r})"
                    )
                self._events.cond.wait(min(remaining, 0.2))
            return self.received_dtmf

    # ----------------------------------------------------------------------------------------------- SIP

    def sip_messages(self) -> list[SipMessage]:
        """Every SIP message baresip sent or received so far, from its trace."""
        text = self.output
        return [SipMessage.parse(*m.groups()) for m in _TRACE.finditer(text)]

    def received_invites(self) -> list[SipMessage]:
        """INVITEs this phone received (re-INVITEs included), with their headers and SDP body."""
        local = f"{self.host}:{self.sip_port}"
        return [m for m in self.sip_messages() if m.method == "INVITE" and m.destination == local]

    def wait_for_invite(self, timeout: float = 10.0, count: int = 1) -> SipMessage:
        """Wait until `count` INVITEs have been received and return the last of them."""
        deadline = time.monotonic() + timeout
        while True:
            invites = self.received_invites()
            if len(invites) >= count:
                return invites[count - 1]
            if time.monotonic() > deadline or not self.running:
                raise self._error(f"{count} INVITE(s) not received within {timeout} s (got {len(invites)})")
            time.sleep(0.05)

    # ---------------------------------------------------------------------------------------- recordings

    def recordings(self, timeout: float = 5.0) -> list[Recording]:
        """The calls recorded so far, oldest first, once their WAV files are closed (i.e. the call ended).

        Files are named by the second the call's audio started: a second call within the same second
        overwrites the first. `heard` ends at the first hold (see the module docstring).
        """
        deadline = time.monotonic() + timeout
        while True:
            decs = sorted(self.workdir.glob("dump-*-dec.wav"))
            pairs = [(d, d.with_name(d.name[: -len("dec.wav")] + "enc.wav")) for d in decs]
            if all(_wav_closed(p) for pair in pairs for p in pair):
                break
            if time.monotonic() > deadline:
                raise self._error(f"recordings not closed within {timeout} s (is the call still up?)")
            time.sleep(0.05)
        result = []
        for dec, enc in pairs:
            heard, rate = sf.read(dec, dtype="int16")
            sent, _ = sf.read(enc, dtype="int16")
            result.append(Recording(_mono(heard), _mono(sent), int(rate), dec, enc))
        return result

    # ------------------------------------------------------------------------------------------- output

    @property
    def output(self) -> str:
        """baresip's output so far (the same text as the log file)."""
        with self._output_lock:
            return "".join(self._output)

    def wait_for_output(self, text: str, timeout: float = 10.0) -> None:
        """Wait until baresip has printed `text` (a plain substring)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise self._error(f"baresip did not print {text!r} within {timeout} s")
            if not self.running and text not in self.output:
                time.sleep(0.1)  # let the pump read the last output
                if text not in self.output:
                    raise self._error(f"baresip exited (rc={self._proc and self._proc.poll()})")
            time.sleep(0.02)

    # ---------------------------------------------------------------------------------------- internals

    @property
    def _dir(self) -> Path:
        """The path baresip is given: a short symlink when the real one is too long for its buffers."""
        return self._link or self.workdir

    def _write_config(self) -> None:
        if len(str(self.workdir)) > _MAX_DIR_CHARS:
            self._link = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp")) / "d"
            self._link.symlink_to(self.workdir, target_is_directory=True)
        source = self._write_source(self._initial_audio, "src0.wav")
        config = [
            f"sip_listen {self.host}:{self.sip_port}",
            "net_interface 127.0.0.1",  # SDP and RTP on 127.0.0.1, not the machine's LAN address
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module sndfile.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {self.host}:{self.ctrl_port}",
            f"audio_source aufile,{source}",
            f"snd_path {self._dir}",
            "statmode_default off",  # no bitrate status line in the log
            "ringback_disabled yes",  # there is no audio player to ring
            "call_max_calls 4",
            *self.extra_config,
        ]
        (self.workdir / "config").write_text("\n".join(config) + "\n")
        codecs = ",".join(CODECS[c] for c in self.codecs)
        answer = ";answermode=auto" if self.answer else ""
        account = f"<sip:{self.user}@{self.host}:{self.sip_port}>;regint=0;audio_codecs={codecs}{answer}"
        (self.workdir / "accounts").write_text(account + "\n")

    def _write_source(self, audio: AudioInput, name: str) -> Path:
        samples = to_phone_audio(audio, pad_to_s=self.max_call_s)
        sf.write(self.workdir / name, samples, SAMPLE_RATE, subtype="PCM_16")
        return self._dir / name

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection((self.host, self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline or not self.running:
                    raise self._error("could not connect to ctrl_tcp") from None
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._spawn(self._pump_ctrl)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name=f"baresip-{self.user}-{target.__name__}")
        thread.start()
        self._threads.append(thread)

    def _pump_output(self) -> None:
        """Copy baresip's output to the log file and keep it in memory for the trace parser."""
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as log:
            for raw in iter(lambda: self._proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                text = raw.decode("utf-8", errors="replace")
                with self._output_lock:
                    self._output.append(text)
                log.write(text)
                log.flush()

    def _pump_ctrl(self) -> None:
        """Split ctrl_tcp's netstrings into command responses and UA events."""
        sock = self._sock
        assert sock is not None
        buffer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while True:
                head, sep, rest = buffer.partition(b":")
                if not sep or not head.isdigit():
                    break
                size = int(head)
                if len(rest) < size + 1:
                    break
                payload, buffer = rest[:size], rest[size + 1 :]
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                if message.get("response"):
                    self._responses.put(message)
                elif message.get("event"):
                    with self._events.cond:
                        self._events.items.append(message)
                        self._events.cond.notify_all()
        with self._events.cond:
            self._events.cond.notify_all()

    def _error(self, message: str) -> BaresipError:
        tail = "\n".join(self.output.splitlines()[-40:])
        return BaresipError(f"{message}\n--- {self.log_path} (tail) ---\n{tail}")


def _mono(samples: np.ndarray) -> np.ndarray:
    return samples if samples.ndim == 1 else samples[:, 0]


def _wav_closed(path: Path) -> bool:
    """Whether sndfile closed the file: its header then counts the samples that are on disk."""
    try:
        info = sf.info(path)
        size = path.stat().st_size
    except (OSError, RuntimeError):
        return False
    return info.frames > 0 and size - info.frames * 2 * info.channels <= 512


def rms(samples: np.ndarray) -> float:
    """Root mean square of int16 samples, as a fraction of full scale."""
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((samples.astype(np.float64) / 32768.0) ** 2)))


def tone_power(samples: np.ndarray, freq: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Share of the signal's energy within ±20 Hz of `freq`: tells which tone a phone heard."""
    if samples.size < sample_rate // 10:
        return 0.0
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    total = float(spectrum.sum())
    return float(spectrum[np.abs(freqs - freq) <= 20.0].sum() / total) if total else 0.0


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> tuple[np.ndarray, int]:
    """A sine tone at 8 kHz, as (samples, rate) for `audio=` / `play()`."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32), SAMPLE_RATE


def phones_available() -> bool:
    """Whether a baresip binary with the needed modules is installed (for pytest skip markers)."""
    return BARESIP is not None and all(
        (Path(MODULE_PATH) / f"{m}.so").exists() for m in ("g711", "aufile", "sndfile", "ctrl_tcp", "menu")
    )


@contextlib.contextmanager
def phone_pair(
    workdir: str | os.PathLike[str],
    caller_audio: AudioInput = None,
    callee_audio: AudioInput = None,
    **kw: Any,
) -> Iterator[tuple[BaresipPhone, BaresipPhone]]:
    """A caller and an auto-answering callee, both started, both stopped at the end (for self-tests)."""
    root = Path(workdir)
    with (
        BaresipPhone(root / "callee", user="callee", answer=True, audio=callee_audio, **kw) as callee,
        BaresipPhone(root / "caller", user="caller", audio=caller_audio, **kw) as caller,
    ):
        yield caller, callee
