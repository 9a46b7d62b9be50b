"""SIP turn latency under load: N real SIP phones (Debian's baresip) call `voicebot serve` at once.

Each level starts `voicebot serve` once (a temporary data directory, SIP on a free port, no
AudioSocket) and N headless baresip phones (tests/baresip.py) that dial together. Each caller
waits until the greeting has played (it watches what it hears, live), speaks one request
(espeak-ng, a voice and phrasing of its own, none of them NLU training examples), listens for
``--seconds`` and hangs up.

Turn latency at the caller = the end of the caller's speech in ``sent`` (what the phone encoded,
found by energy) -> the first bot audio in ``heard`` (what it decoded) after it. baresip's sndfile
appends to both files frame by frame as the call runs and closes them together at the hang-up, but
``heard`` begins with the bot's first RTP packet, ~100 ms after ``sent`` begins: a position in
``heard`` is moved by the length difference to put it on ``sent``'s timeline. That is checked
against the clock: while the calls run, both files' sizes are sampled every 10 ms, which gives the
time each sample reached the disk. Per call the report has the start offset both ways
(``heard_starts_late_ms`` / ``heard_starts_late_clock_ms``) and the clock's latency minus the one
from the positions (``align_error_ms``; a packet that never came is missing from ``heard``, not
silence, and would show here).

The server's own figure (``turn_latency_ms`` of the first ``tts_first_audio`` after the request,
from the traces it stores in SQLite) is shown beside it: from the arrival of the caller's last
speech packet to its first audio frame out. The difference splits into "in" (the caller's end of
speech -> that packet's arrival: the phone's packetising, the network, and the VAD's hangover
past the real end) and "out" (its first audio -> the phone's decoder: its pacing and baresip's
jitter buffer), from time.monotonic(), one clock for every process here.

No assertions: writes reports/bench_sip.json and prints a table.
Usage (from the project root): .venv/bin/python scripts/bench_sip.py [--levels 1 5 10] [--seconds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.baresip is imported from the project, not installed

from bench_serve_caller import ServerProcess, tree_cpu_s  # noqa: E402

from tests.baresip import (  # noqa: E402
    SAMPLE_RATE,
    BaresipError,
    BaresipPhone,
    phones_available,
    to_phone_audio,
)
from voicebot.config import load_config  # noqa: E402
from voicebot.tts.espeak_engine import EspeakSynthesizer  # noqa: E402

REPORT = ROOT / "reports" / "bench_sip.json"
FRAME = SAMPLE_RATE // 100  # 10 ms: the resolution of every position below
# Bot audio: a frame whose peak is above this (-54 dBFS; the server sends digital silence while the
# bot is quiet), as scripts/bench_serve_caller.py's NON_SILENT_PEAK.
BOT_PEAK = 64
SPEECH_SHARE = 0.02  # the caller speaks where a frame peaks above this share of the clip's peak
GREETING_QUIET_S = 1.2  # the greeting is over once the phone heard this long of silence after it
GREETING_TIMEOUT_S = 30.0  # then the caller speaks anyway (noted as greeting_heard: false)
ESTABLISH_TIMEOUT_S = 30.0
PROBE_INTERVAL_S = 0.01
# The line `voicebot serve` logs at start-up for its SIP listener: the address callers dial.
SIP_LINE = r"^sip\s+(sip:ivr@\S+:\d+)"


@dataclass(frozen=True)
class Request:
    """What one caller asks, in which espeak-ng voice; none of these is in nlu_data/."""

    text: str
    intent: str  # what the NLU should make of it
    voice: str
    speed: int
    pitch: int


REQUESTS = (
    Request("hi could you tell me when the branch opens on thursday", "branch_hours", "en-us", 150, 45),
    Request("my debit card went missing last night", "report_lost_card", "en-gb", 145, 55),
    Request("how much money have I got in my savings right now", "check_balance", "en-us+f3", 150, 60),
    Request("what are your opening times on a weekday", "branch_hours", "en-gb-scotland", 140, 50),
    Request("I think I left my credit card in a taxi", "report_lost_card", "en-us+m3", 155, 40),
    Request("please tell me the balance of my checking account", "check_balance", "en-gb-x-rp", 150, 50),
)


def synthesise(request: Request) -> np.ndarray:
    """The request as the phone plays it: 8 kHz int16 (aufile takes nothing else)."""
    pcm = b"".join(EspeakSynthesizer(request.voice, request.speed, request.pitch).synthesize(request.text))
    return to_phone_audio((np.frombuffer(pcm, dtype=np.int16), 16000))


def percentile(values: list[float], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))])


# ----- recordings, while they are written ---------------------------------------------------------


def wav_data_offset(path: Path) -> int | None:
    """Where the samples start in a WAV file (the header of one still being written included)."""
    with path.open("rb") as wav:
        head = wav.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at = 12
    while at + 8 <= len(head):
        size = int.from_bytes(head[at + 4 : at + 8], "little")
        if head[at : at + 4] == b"data":
            return at + 8
        at += 8 + size + (size & 1)
    return None


@dataclass
class Growth:
    """One recording as baresip writes it: (clock, samples on disk) at each change of its size."""

    pattern: str  # dump-*-dec.wav (heard) or dump-*-enc.wav (sent)
    path: Path | None = None
    offset: int | None = None
    points: list[tuple[float, int]] = field(default_factory=list)

    def poll(self, folder: Path, now: float) -> None:
        if self.path is None:
            self.path = next(iter(folder.glob(self.pattern)), None)
            if self.path is None:
                return
        if self.offset is None:
            with contextlib.suppress(OSError):
                self.offset = wav_data_offset(self.path)
            if self.offset is None:
                return
        with contextlib.suppress(OSError):
            samples = (self.path.stat().st_size - self.offset) // 2
            if not self.points or samples != self.points[-1][1]:
                self.points.append((now, samples))

    def time_of(self, index: int) -> float | None:
        """When sample ``index`` was on disk (at most one probe interval late)."""
        return next((t for t, n in self.points if n > index), None)

    def origin(self) -> float | None:
        """The clock time of sample 0 if the file grew in real time: the earliest t - n / rate."""
        return min((t - n / SAMPLE_RATE for t, n in self.points if n > 0), default=None)


class Probe(threading.Thread):
    """Samples the size of every phone's two recordings every 10 ms, to put a clock on them."""

    def __init__(self, calls: list[Call]) -> None:
        super().__init__(daemon=True, name="bench-sip-probe")
        self.calls = calls
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(PROBE_INTERVAL_S):
            now = time.monotonic()
            for call in self.calls:
                call.heard_growth.poll(call.folder, now)
                call.sent_growth.poll(call.folder, now)


# ----- one call -----------------------------------------------------------------------------------


@dataclass
class Call:
    """One caller: its phone, what it says, and what happened (clock times are time.monotonic())."""

    index: int
    caller_id: str
    folder: Path
    request: Request
    clip: np.ndarray
    heard_growth: Growth = field(default_factory=lambda: Growth("dump-*-dec.wav"))
    sent_growth: Growth = field(default_factory=lambda: Growth("dump-*-enc.wav"))
    phone: BaresipPhone | None = None
    established: bool = False
    greeting_heard: bool = False
    error: str | None = None


def frame_peaks(samples: np.ndarray) -> np.ndarray:
    usable = samples[: samples.size // FRAME * FRAME].astype(np.int32)
    return np.abs(usable.reshape(-1, FRAME)).max(axis=1) if usable.size else np.zeros(0, dtype=np.int32)


def voiced_span(samples: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """First and one-past-last sample of the frames above ``threshold``."""
    voiced = np.flatnonzero(frame_peaks(samples) > threshold)
    return (int(voiced[0]) * FRAME, (int(voiced[-1]) + 1) * FRAME) if voiced.size else None


def wait_for_greeting(call: Call, stop: threading.Event) -> bool:
    """Reads what the phone hears as it is written, until bot audio was followed by a pause."""
    deadline = time.monotonic() + GREETING_TIMEOUT_S
    growth, read, heard_voice, quiet = call.heard_growth, 0, False, 0
    pending = np.zeros(0, dtype=np.int16)
    while time.monotonic() < deadline and not stop.is_set():
        if growth.path is not None and growth.offset is not None:
            with growth.path.open("rb") as wav:
                wav.seek(growth.offset + 2 * read)
                data = wav.read()
            new = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
            read += new.size
            pending = np.concatenate([pending, new])
            peaks = frame_peaks(pending)
            pending = pending[peaks.size * FRAME :]
            for peak in peaks:
                heard_voice |= bool(peak > BOT_PEAK)
                quiet = 0 if peak > BOT_PEAK else quiet + FRAME
            if heard_voice and quiet >= GREETING_QUIET_S * SAMPLE_RATE:
                return True
        time.sleep(0.05)
    return False


def place_call(call: Call, uri: str, dial_at: float, listen_s: float, stop: threading.Event) -> None:
    """Runs in a thread per caller: dial, let the greeting play, speak, listen, hang up."""
    phone = call.phone
    assert phone is not None
    stop.wait(max(0.0, dial_at - time.monotonic()))  # all callers dial at the same moment
    try:
        phone.dial(uri)
        phone.wait_established(ESTABLISH_TIMEOUT_S)
        call.established = True
        call.greeting_heard = wait_for_greeting(call, stop)
        phone.play((call.clip, SAMPLE_RATE))
        stop.wait(call.clip.size / SAMPLE_RATE + listen_s)
        with contextlib.suppress(BaresipError):  # the bot may have hung up already
            phone.hangup()
        phone.wait_closed(15.0)
    except (BaresipError, OSError) as exc:  # this call failed; the others go on
        call.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def server_view(result: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Adds the server's side of the request: its own turn latency, what it understood, and where
    the caller's figure differs from it (in: caller -> the arrival of their last speech packet,
    out: the server's first audio -> the phone; from time.monotonic(), one clock for every process
    here)."""
    first = next((e for e in events if e["type"] == "tts_first_audio" and e.get("turn_latency_ms")), None)
    no_input = next((e for e in events if e["type"] == "no_input"), None)
    parsed = next((e for e in events if e["type"] == "nlu_parsed"), None)
    ended = next((e for e in events if e["type"] == "speech_ended"), None)
    heard = next((e for e in events if e["type"] == "asr_final"), None)
    if ended and heard:  # queueing for the recogniser shows here when many callers end together
        result["asr_wait_ms"] = round((heard["t"] - ended["t"]) * 1000)
        result["asr_speculative"] = bool(heard.get("speculative"))
    if parsed and first:
        result["reply_wait_ms"] = round((first["t"] - parsed["t"]) * 1000)  # dialogue and TTS
    result.update(
        server_turn_latency_ms=first["turn_latency_ms"] if first else None,
        intent=parsed["intent"] if parsed else None,
        asr_text=heard["text"] if heard else None,
        barge_ins=sum(e["type"] == "barge_in" for e in events),
        outcome=next((e["outcome"] for e in events if e["type"] == "call_ended"), None),
    )
    if no_input is not None and (first is None or no_input["t"] < first["t"]):
        result["answered"] = False  # what it heard was the no-input prompt: the request was lost
        result["reply"] = "no_input"
    if first is not None and result.get("sent_end_t") is not None and result.get("heard_bot_t"):
        server_end_t = first["t"] - first["turn_latency_ms"] / 1000
        result["inbound_ms"] = round((server_end_t - result["sent_end_t"]) * 1000)
        result["outbound_ms"] = round((result["heard_bot_t"] - first["t"]) * 1000)


def measure(call: Call, listen_s: float) -> dict[str, Any]:
    """Turn latency from the phone's two recordings, and the checks that they are in step."""
    result: dict[str, Any] = {
        "caller": call.caller_id,
        "voice": call.request.voice,
        "request": call.request.text,
        "expected_intent": call.request.intent,
        "established": call.established,
        "greeting_heard": call.greeting_heard,
        "error": call.error,
        "answered": False,
    }
    if not call.established or call.phone is None:
        return result
    try:
        recording = call.phone.recordings(timeout=10.0)[-1]
    except (BaresipError, IndexError) as exc:
        result["error"] = f"no recording: {str(exc).splitlines()[0] if str(exc) else 'none'}"
        return result
    heard, sent = recording.heard, recording.sent
    # `heard` begins with the first RTP packet from the bot, `sent` with the phone's first frame,
    # and both close together at the hang-up: so `heard` started this many samples later.
    shift = sent.size - heard.size
    result["heard_starts_late_ms"] = round(shift / SAMPLE_RATE * 1000)
    heard_origin, sent_origin = call.heard_growth.origin(), call.sent_growth.origin()
    if heard_origin is not None and sent_origin is not None:  # the same from the clock
        result["heard_starts_late_clock_ms"] = round((heard_origin - sent_origin) * 1000)
    threshold = SPEECH_SHARE * float(np.abs(call.clip.astype(np.int32)).max())
    clip_span, speech = voiced_span(call.clip, threshold), voiced_span(sent, threshold)
    if speech is None or clip_span is None:
        result["error"] = "the request is not in what the phone sent"
        return result
    # The span found in `sent` must be the clip's own: the same length, to the frame.
    result["speech_found_ms"] = round((speech[1] - speech[0]) / SAMPLE_RATE * 1000)
    result["speech_clip_ms"] = round((clip_span[1] - clip_span[0]) / SAMPLE_RATE * 1000)
    end = speech[1]  # in `sent`; the same moment is end - shift in `heard`
    start = max(0, end - shift)
    loud = np.flatnonzero(frame_peaks(heard[start : start + int(listen_s * SAMPLE_RATE)]) > BOT_PEAK)
    if not loud.size:
        return result
    bot = start + int(loud[0]) * FRAME
    result["answered"] = True
    result["turn_latency_ms"] = round((bot - start) / SAMPLE_RATE * 1000)
    # The same latency from the clock: when the bot's first frame was on disk in `heard` minus when
    # the caller's last voiced sample was in `sent`. Agrees with the above if the shift is right and
    # `heard` has no gaps (a packet that never came is missing from it, not silence).
    heard_t, sent_t = call.heard_growth.time_of(bot), call.sent_growth.time_of(end - 1)
    if heard_t is not None and sent_t is not None:
        result.update(sent_end_t=round(sent_t, 3), heard_bot_t=round(heard_t, 3))
        result["turn_latency_clock_ms"] = round((heard_t - sent_t) * 1000)
        result["align_error_ms"] = result["turn_latency_clock_ms"] - result["turn_latency_ms"]
    return result


# ----- one level ----------------------------------------------------------------------------------


def run_level(
    server: ServerProcess, clips: list[np.ndarray], callers: int, listen_s: float, workdir: Path
) -> dict[str, Any]:
    stop = threading.Event()
    calls = []
    for i in range(callers):  # the requests in turn: voices and phrasings differ between callers
        folder = workdir / f"level{callers}" / f"caller{i}"
        calls.append(
            Call(i, f"bench{callers}x{i}", folder, REQUESTS[i % len(REQUESTS)], clips[i % len(clips)])
        )
    probe = Probe(calls)
    since = time.time()
    cpu_before, started = tree_cpu_s(server.pid), time.monotonic()
    try:
        for call in calls:
            call.phone = BaresipPhone(call.folder, user=call.caller_id, max_call_s=180.0).start()
        probe.start()
        dial_at = time.monotonic() + 0.5
        with ThreadPoolExecutor(max_workers=callers, thread_name_prefix="caller") as pool:
            futures = [pool.submit(place_call, c, server.announced, dial_at, listen_s, stop) for c in calls]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                stop.set()  # Ctrl-C: every caller stops waiting, and a stopped phone fails its waits
                for call in calls:
                    if call.phone is not None:
                        call.phone.stop()
                raise
    finally:
        probe.done.set()
        for call in calls:
            if call.phone is not None:
                call.phone.stop()
    wall = time.monotonic() - started
    server_cpu = tree_cpu_s(server.pid) - cpu_before
    results = [measure(call, listen_s) for call in calls]
    traces = server.caller_traces([c.caller_id for c in calls if c.established], since)
    for result in results:
        server_view(result, traces.get(result["caller"], []))
    return summarise(callers, results, round(100 * server_cpu / wall / 2))


def summarise(callers: int, calls: list[dict[str, Any]], cpu_percent: int) -> dict[str, Any]:
    def values(key: str) -> list[float]:
        return [c[key] for c in calls if c.get(key) is not None]

    latencies = [c["turn_latency_ms"] for c in calls if c["answered"]]
    answered = sum(c["answered"] for c in calls)
    return {
        "callers": callers,
        "calls_answered": sum(c["established"] for c in calls),
        "requests_answered": answered,
        "answered_fraction": round(answered / callers, 2),
        "turn_latency_p50_ms": percentile(latencies, 50),
        "turn_latency_p95_ms": percentile(latencies, 95),
        "turn_latency_max_ms": max(latencies, default=None),
        "server_turn_latency_p50_ms": percentile(values("server_turn_latency_ms"), 50),
        "server_turn_latency_p95_ms": percentile(values("server_turn_latency_ms"), 95),
        "asr_wait_p50_ms": percentile(values("asr_wait_ms"), 50),
        "asr_wait_p95_ms": percentile(values("asr_wait_ms"), 95),
        "reply_wait_p50_ms": percentile(values("reply_wait_ms"), 50),
        "reply_wait_p95_ms": percentile(values("reply_wait_ms"), 95),
        "inbound_p50_ms": percentile(values("inbound_ms"), 50),
        "outbound_p50_ms": percentile(values("outbound_ms"), 50),
        "intent_right": sum(c.get("intent") == c["expected_intent"] for c in calls),
        "greeting_heard": sum(c["greeting_heard"] for c in calls),
        "barge_ins": sum(c.get("barge_ins") or 0 for c in calls),
        "heard_starts_late_max_ms": max(values("heard_starts_late_ms"), default=None),
        "align_error_max_ms": max(map(abs, values("align_error_ms")), default=None),
        "server_cpu_percent_of_2_cores": cpu_percent,
        "failed_calls": [f"{c['caller']}: {c['error']}" for c in calls if c["error"]],
        "calls": calls,
    }


# ----- output -------------------------------------------------------------------------------------

COLUMNS = {
    "callers": "callers", "calls_answered": "calls answered", "requests_answered": "requests answered",
    "turn_latency_p50_ms": "p50 ms", "turn_latency_p95_ms": "p95 ms", "turn_latency_max_ms": "max ms",
    "server_turn_latency_p50_ms": "server p50", "server_turn_latency_p95_ms": "server p95",
    "asr_wait_p95_ms": "ASR wait p95", "reply_wait_p95_ms": "reply p95",
    "inbound_p50_ms": "in p50", "outbound_p50_ms": "out p50", "intent_right": "intent right",
    "heard_starts_late_max_ms": "heard late max", "align_error_max_ms": "align err max",
    "server_cpu_percent_of_2_cores": "server CPU %",
}  # fmt: skip


def print_table(report: dict[str, Any]) -> None:
    rows = []
    for level in report["levels"]:
        shown = {
            **level,
            "requests_answered": f"{level['requests_answered']}/{level['callers']} "
            f"({level['answered_fraction']:.0%})",
            "intent_right": f"{level['intent_right']}/{level['callers']}",
        }
        rows.append(["-" if (v := shown.get(key)) is None else v for key in COLUMNS])
    print("\nSIP turn latency at the caller (end of speech in `sent` -> first bot audio in `heard`)")
    print(tabulate(rows, headers=list(COLUMNS.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 5, 10], help="concurrent calls")
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="how long each caller listens after its request"
    )
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--keep", action="store_true", help="keep the recordings and server log")
    args = parser.parse_args()
    if not phones_available():
        raise SystemExit("baresip is not installed (make setup)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds like Ctrl-C: finally runs
    clips = [synthesise(r) for r in REQUESTS]
    # A temporary data directory, SIP on a port the system picks (the server logs it), no AudioSocket.
    server = ServerProcess(
        load_config(),  # voicebot.yml in the project, else the defaults
        tag="sip",
        settings={"telephony.sip.port": 0, "telephony.sip.host": "127.0.0.1"},
        serve_args=["--no-audiosocket"],
        announce=SIP_LINE,
    )
    failure: BaseException | None = None
    try:
        server.start()
        print(f"server ready in {server.ready_s:.0f} s at {server.announced}", flush=True)
        levels = []
        for callers in args.levels:
            levels.append(run_level(server, clips, callers, args.seconds, server.data_dir / "calls"))
            print(f"{callers} callers: {json.dumps({k: v for k, v in levels[-1].items() if k != 'calls'})}")
            time.sleep(2)  # the last calls' bookkeeping, before the next level dials
    except BaseException as exc:
        failure = exc
        raise
    finally:
        server.stop()  # the phones were stopped by run_level
        if isinstance(failure, Exception):  # not Ctrl-C or SIGTERM: keep what explains it
            print(f"server log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
            print(f"kept {server.data_dir} (recordings, baresip logs, server log)", file=sys.stderr)
        elif not args.keep:
            server.cleanup()
    report = {
        "listen_s": args.seconds,
        "server_ready_s": round(server.ready_s, 1),
        "requests": [asdict(r) for r in REQUESTS],
        "levels": levels,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    print_table(report)


if __name__ == "__main__":
    main()
