"""Fuzz: generated messages on every port `voicebot serve` listens on, while one good call runs.

``--messages`` generated messages per protocol (10,000 by default): the media WebSocket (a start,
then mutated control messages and audio of odd sizes until one breaks the protocol), the agent
WebSocket (a logged-in desk sending mutated commands), the SIP port (mutated OPTIONS and INVITE
datagrams, and random bytes) and the AudioSocket port (mutated frames after a call UUID). Meanwhile
callers on the media WebSocket have whole conversations with the bot, one after another. Printed
as JSON and a table, and kept in reports/fuzz.json: messages sent per protocol, connections the
server refused or closed, tracebacks in its log (target 0), the good calls' turns answered
(target all) and whether the server stayed up.

``make test`` runs a bounded version (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import struct
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from bench_latency import REPORTS, caller_scripts
from bench_serve_caller import CallerLine, GatewayCall, ServerProcess, gateway_call, publish, running
from prometheus_client.parser import text_string_to_metric_families
from tabulate import tabulate

from voicebot.audio import FRAME_BYTES
from voicebot.config import load_config
from voicebot.console import quiet_console
from voicebot.server.app import storage_path
from voicebot.server.auth import make_account
from voicebot.storage import SqliteStorage

AGENT = ("fuzz_agent", "fuzz-agent-password")
SIP_LINE = r"sip +sip:ivr@[^:\s]+:(\d+)"
AUDIOSOCKET_LINE = r"audiosocket tcp://[^:\s]+:(\d+)"
GARBAGE_SHARE = 0.25  # of the messages on one connection: it ends at its first broken one


# ----- what is sent ------------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of: flipped bytes, a cut, a repeated slice, inserted random bytes."""
    data = bytearray(data)
    how = rng.randrange(4)
    if how == 0 and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1:
        del data[rng.randrange(len(data) + 1) :]
    elif how == 2 and data:
        start = rng.randrange(len(data))
        data[start:start] = data[start : start + rng.randint(1, 200)] * rng.randint(1, 20)
    else:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    return bytes(data)


def garbage_json(rng: random.Random, valid: list[dict[str, Any]]) -> str:
    """Text that is not a valid control message (or is, by chance: then the server takes it)."""
    kinds: list[Callable[[], str]] = [
        lambda: json.dumps(rng.choice(valid))[: rng.randint(0, 40)],
        lambda: "[" * rng.randint(100, 20_000),
        lambda: "9" * rng.randint(100, 6000),
        lambda: json.dumps({"type": rng.choice(["", "x" * 500, "start", "dtmf", "hangup", 7, None])}),
        lambda: json.dumps({"type": "dtmf", "digit": rng.choice(["", "12", "A", 5, None, "é", "\x00"])}),
        lambda: json.dumps([rng.random() for _ in range(rng.randint(0, 50))]),
        lambda: mutate(rng, json.dumps(rng.choice(valid)).encode()).decode("utf-8", "replace"),
        lambda: rng.randbytes(rng.randint(1, 300)).decode("latin-1"),
    ]
    return rng.choice(kinds)()


def odd_audio(rng: random.Random) -> bytes:
    """Binary that is not whole 20 ms frames, or too many of them."""
    size = rng.choice([1, FRAME_BYTES - 1, FRAME_BYTES + 1, FRAME_BYTES * 11, rng.randint(1, 7000)])
    return rng.randbytes(size)


SIP_TEMPLATES = [
    "OPTIONS sip:ivr@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{tag}\r\n"
    "From: <sip:fuzz@{host}>;tag={tag}\r\nTo: <sip:ivr@{host}>\r\nCall-ID: {tag}@fuzz\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    "INVITE sip:ivr@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{tag}\r\n"
    "From: <sip:fuzz@{host}>;tag={tag}\r\nTo: <sip:ivr@{host}>\r\nCall-ID: {tag}@fuzz\r\n"
    "CSeq: 1 INVITE\r\nContact: <sip:fuzz@{host}:{port}>\r\nMax-Forwards: 70\r\n"
    "Content-Type: application/sdp\r\nContent-Length: {length}\r\n\r\n{sdp}",
]
SDP = "v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"


def sip_datagram(rng: random.Random, host: str, port: int) -> bytes:
    if rng.random() < 0.1:
        return rng.randbytes(rng.randint(1, 1500))
    sdp = SDP.format(host=host)
    message = rng.choice(SIP_TEMPLATES).format(
        host=host, port=port, tag=uuid.uuid4().hex[:10], length=len(sdp), sdp=sdp
    )
    return mutate(rng, message.encode())


def audiosocket_frame(rng: random.Random) -> bytes:
    kind = rng.choice([0x00, 0x01, 0x03, 0x10, 0xFF, rng.randrange(256)])
    declared = rng.choice([0, 1, 320, 3200, 65535, rng.randrange(65536)])
    return struct.pack(">BH", kind, declared) + rng.randbytes(min(declared, rng.randint(0, 400)))


# ----- the protocols -----------------------------------------------------------------------------------


async def fuzz_media(session: aiohttp.ClientSession, url: str, rng: random.Random, messages: int) -> int:
    valid = [{"type": "dtmf", "digit": d} for d in "123456789*#"] + [{"type": "start"}]
    sent = 0
    while sent < messages:
        try:
            async with session.ws_connect(url) as ws:
                if rng.random() < 0.9:  # most get past the start, where a call's state can break
                    await ws.send_json({"type": "start", "caller_id": f"fuzz-{sent}"})
                while sent < messages and not ws.closed:
                    sent += 1
                    if rng.random() < GARBAGE_SHARE:
                        if rng.random() < 0.5:
                            await ws.send_bytes(odd_audio(rng))
                        else:
                            await ws.send_str(garbage_json(rng, valid))
                        break
                    await ws.send_bytes(bytes(FRAME_BYTES * rng.randint(1, 10)))
                await ws.close()
        except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError):
            pass  # the server refused or dropped the connection: what fuzzing is for
    return sent


async def fuzz_agent(http: str, rng: random.Random, messages: int) -> int:
    controls = (
        "ready",
        "not_ready",
        "accept",
        "hangup",
        "hold",
        "resume",
        "mute",
        "unmute",
        "transfer_targets",
    )
    valid = [{"type": t} for t in (*controls, "complete_transfer", "cancel_transfer", "request_supervisor")]
    valid.append({"type": "wrap_up", "disposition": "resolved", "notes": ""})
    valid.append({"type": "transfer", "mode": "warm", "queue": "general", "agent": "bob", "note": ""})
    sent = 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        form = await (await session.get(f"{http}/login")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None, "no login form"
        login = {"username": AGENT[0], "password": AGENT[1], "csrf": csrf.group(1)}
        answer = await session.post(f"{http}/login", data=login, allow_redirects=False)
        assert answer.status == 302, f"the fuzz agent could not log in: {answer.status}"
        while sent < messages:
            try:
                async with session.ws_connect(f"{http}/agent/ws") as ws:
                    while sent < messages and not ws.closed:
                        sent += 1
                        if rng.random() < GARBAGE_SHARE:
                            await ws.send_str(garbage_json(rng, valid))
                            break
                        if rng.random() < 0.2:
                            await ws.send_bytes(odd_audio(rng))
                        else:
                            await ws.send_json({"type": "not_ready"})
                    await ws.close()
            except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError):
                pass
    return sent


async def fuzz_sip(port: int, rng: random.Random, messages: int) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    own_port = transport.get_extra_info("sockname")[1]
    try:
        for sent in range(1, messages + 1):
            transport.sendto(sip_datagram(rng, "127.0.0.1", own_port), ("127.0.0.1", port))
            if sent % 50 == 0:
                await asyncio.sleep(0.05)  # under the INVITE rate limit's burst, mostly
    finally:
        transport.close()
    return messages


async def fuzz_audiosocket(port: int, rng: random.Random, messages: int) -> int:
    sent = 0
    while sent < messages:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            if rng.random() < 0.8:
                writer.write(struct.pack(">BH", 0x01, 16) + uuid.uuid4().bytes)
            for _ in range(rng.randint(1, 8)):
                if sent >= messages:
                    break
                sent += 1
                writer.write(audiosocket_frame(rng))
            await writer.drain()
            await asyncio.sleep(0.01)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
    return sent


TRACEBACK = "Traceback (most recent call last)"


def _find_all(text: str, word: str) -> list[int]:
    return [found.start() for found in re.finditer(re.escape(word), text)]


def excerpt(log: str, at: int) -> str:
    before = log[:at].rstrip("\n").rsplit("\n", 1)[-1]
    lines = log[at:].split("\n")
    end = next(
        (i for i, line in enumerate(lines[1:], 1) if line and not line.startswith(" ")), len(lines) - 1
    )
    return "\n".join([before, *lines[max(1, end - 6) : end + 1]])


# ----- the run -----------------------------------------------------------------------------------------


async def good_calls(
    session: aiohttp.ClientSession, url: str, script: list[CallerLine], fuzzing: asyncio.Task[Any]
) -> list[GatewayCall]:
    """Whole conversations with the bot, one after another, for as long as the fuzzing lasts."""
    calls: list[GatewayCall] = []
    while not calls or not fuzzing.done():
        calls.append(await gateway_call(session, url, len(calls), script))
    return calls


def failures_by_line(port: int) -> dict[str, float]:
    """``voicebot_protocol_failures_total`` summed by line: what the server counted and refused."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    by_line: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "voicebot_protocol_failures_total":
                by_line[sample.labels["line"]] = by_line.get(sample.labels["line"], 0.0) + sample.value
    return by_line


async def fuzz(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    http = f"http://127.0.0.1:{server.port}"
    sip_port, audiosocket_port = telephone_ports(server)
    script = caller_scripts(server.server_config, "espeak")[0]
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        fuzzing = asyncio.ensure_future(
            asyncio.gather(
                fuzz_media(session, server.url, random.Random(rng.random()), args.messages),
                fuzz_agent(http, random.Random(rng.random()), args.messages),
                fuzz_sip(sip_port, random.Random(rng.random()), args.messages),
                fuzz_audiosocket(audiosocket_port, random.Random(rng.random()), args.messages),
            )
        )
        calls = await good_calls(session, server.url, script, fuzzing)
        counts = await fuzzing
        fuzz_s = time.monotonic() - started
    log = server.log_path.read_text(errors="replace")
    turns = [t for c in calls for t in c.turns]
    return {
        "messages_per_protocol": dict(zip(("media", "agent", "sip", "audiosocket"), counts, strict=True)),
        "fuzz_s": round(fuzz_s),
        "refused_by_line": await asyncio.to_thread(failures_by_line, server.port),
        "tracebacks": log.count(TRACEBACK),
        # The line before each and its last lines (where it was raised), to fix what it found.
        "traceback_excerpts": [excerpt(log, at) for at in _find_all(log, TRACEBACK)][:5],
        "good_calls": len(calls),
        "good_call_errors": [c.error for c in calls if c.error],
        "good_calls_without_bot_audio": sum(c.sound_frames == 0 for c in calls),
        "good_call_turns": len(turns),
        "good_call_turns_answered": sum(t.heard_t is not None for t in turns),
        "good_call_outcomes": sorted({str((c.hangup or {}).get("outcome")) for c in calls}),
        "server_up": server.exit_code is None,
    }


def fuzz_server(args: argparse.Namespace) -> ServerProcess:
    server = ServerProcess(
        load_config(args.config),
        tag="fuzz",
        settings={
            "telephony.sip.port": 0,
            "telephony.sip.host": "127.0.0.1",
            "telephony.audiosocket.port": 0,
        },
        announce=rf"(?s)({SIP_LINE}.*?{AUDIOSOCKET_LINE})",  # both ports, once the server printed them
    )
    storage = SqliteStorage(storage_path(server.server_config))
    storage.save_agent(make_account(*AGENT, "agent"))
    storage.close()
    return server


def telephone_ports(server: ServerProcess) -> tuple[int, int]:
    """The SIP and AudioSocket ports the system chose, from the lines the server printed."""
    sip, audiosocket = re.search(SIP_LINE, server.announced), re.search(AUDIOSOCKET_LINE, server.announced)
    assert sip is not None and audiosocket is not None, server.announced
    return int(sip.group(1)), int(audiosocket.group(1))


def print_table(report: dict[str, Any]) -> None:
    rows = [[protocol, count] for protocol, count in report["messages_per_protocol"].items()]
    print(tabulate(rows, headers=["protocol", "generated messages"]))
    summary = [
        ("seconds of fuzzing", report["fuzz_s"]),
        ("connections refused or closed, by line", report["refused_by_line"]),
        ("tracebacks in the server log (target 0)", report["tracebacks"]),
        ("good calls meanwhile (failed)", f"{report['good_calls']} ({len(report['good_call_errors'])})"),
        ("good calls: turns answered", f"{report['good_call_turns_answered']} / {report['good_call_turns']}"),
        ("good calls without bot audio (target 0)", report["good_calls_without_bot_audio"]),
        ("server still up", report["server_up"]),
    ]
    print(tabulate(summary, headers=["fuzz", "measured"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="per protocol")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPORTS / "fuzz.json")
    parser.add_argument("--config", type=Path, help="settings file (default: voicebot.yml)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # running() still stops the server
    quiet_console(verbose=False)
    server = fuzz_server(args)
    with running(server):
        report = asyncio.run(fuzz(server, args))
    report["server_exit_code"] = server.exit_code
    publish(report, args.out)
    print_table(report)


if __name__ == "__main__":
    main()
