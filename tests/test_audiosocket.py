"""Asterisk AudioSocket over real TCP on 127.0.0.1. Asterisk cannot run here, so the test plays it:
the wire format written out by hand (not with the module under test) against the real server with
the real engines: greeting, speech, keys, escalation to the dialplan's queue with the handoff record
over HTTP, hang-ups, malformed input and a fuzz of garbage connections."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import random
import struct
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.test_server import WAIT_S, loud, run, running_server, until
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import resample, split_frames
from voicebot.call import CallSession
from voicebot.engines import Engines
from voicebot.server.commands import add_commands, serve_config
from voicebot.server.external_leg import ExternalTransferLeg
from voicebot.storage import CallRow, SqliteStorage, Storage
from voicebot.telephony.audiosocket import AudioSocketServer
from voicebot.transports.line import protocol_failures
from voicebot.tts.base import Synthesizer
from voicebot.tts.piper_engine import synthesize_all

HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
LINE_RATE = 8000
LINE_FRAME_BYTES = 320  # 20 ms of 8 kHz s16le
MAX_AUDIO_BYTES = 3200  # the largest audio message the bot takes (200 ms)
SILENT_LINE_FRAME = bytes(LINE_FRAME_BYTES)
# Not in nlu_data/ (training or held-out): the NLU must generalise to it.
BRANCH_HOURS_REQUEST = "what are your opening hours on a monday please"


def wire(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


def line_frames(pcm: bytes) -> list[bytes]:
    """16 kHz speech as Asterisk would send it: 8 kHz, 20 ms a message."""
    return split_frames(resample(pcm, SAMPLE_RATE, LINE_RATE), LINE_FRAME_BYTES)


class Asterisk:
    """Our test's Asterisk on one AudioSocket connection: the UUID first, then 20 ms of caller audio
    every 20 ms of its own clock (silence unless told to speak); it counts what the bot sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.call_id = str(uuid.uuid4())
        self.sent = 0  # audio messages sent
        self.heard = 0  # audio messages received
        self.loud = 0
        self.hung_up = False  # the bot sent its hang-up
        self.wrong: list[str] = []  # anything the bot may not send (only 320-byte audio and a hang-up)
        self._speech: deque[bytes] = deque()
        writer.write(wire(UUID, uuid.UUID(self.call_id).bytes))
        self.reading = asyncio.create_task(self._read())
        self.sending = asyncio.create_task(self._send())

    def say(self, pcm: bytes) -> None:
        self._speech.extend(line_frames(pcm))

    def key(self, key: str) -> None:
        self.writer.write(wire(DTMF, key.encode()))

    async def hang_up(self, message: bytes | None = wire(HANGUP)) -> None:
        """Sends ``message`` (None: only the end of the stream) and waits until the bot has closed."""
        self.sending.cancel()
        if message is not None:
            self.writer.write(message)
        self.writer.write_eof()  # half-closed: what the bot sends still comes in until it closes
        await self.ended()

    async def ended(self) -> None:
        """Waits until the bot has closed the connection."""
        await asyncio.wait_for(self.reading, WAIT_S)
        self.sending.cancel()
        self.writer.close()

    async def _read(self) -> None:
        try:
            while True:
                kind, length = struct.unpack(">BH", await self.reader.readexactly(3))
                payload = await self.reader.readexactly(length)
                if kind == AUDIO and length == LINE_FRAME_BYTES:
                    self.heard += 1
                    self.loud += loud(payload)
                elif kind == HANGUP and not length:
                    self.hung_up = True
                else:
                    self.wrong.append(f"type 0x{kind:02x} with {length} bytes")
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the bot closed the connection

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self.reading.done():
            self.writer.write(wire(AUDIO, self._speech.popleft() if self._speech else SILENT_LINE_FRAME))
            self.sent += 1
            next_tick += 0.02
            if next_tick < loop.time() - 0.2:
                next_tick = loop.time()  # after a stall, carry on rather than burst
            await asyncio.sleep(max(0.0, next_tick - loop.time()))


@asynccontextmanager
async def serving(engines: Engines, tmp_path: Path, **audiosocket: Any) -> AsyncIterator[TestServer]:
    """The contact-centre server with the AudioSocket listener on a free port (and no SIP)."""
    telephony = engines.config.telephony
    settings = {"enabled": True, "port": 0, "uuid_timeout_s": 0.5, **audiosocket}
    telephony = telephony.replace(
        sip=telephony.sip.replace(enabled=False), audiosocket=telephony.audiosocket.replace(**settings)
    )
    config = engines.config.replace(telephony=telephony)
    async with running_server(dataclasses.replace(engines, config=config), tmp_path) as server:
        yield server


def audiosocket_of(server: TestServer) -> AudioSocketServer:
    listener = server.voicebot.audiosocket  # type: ignore[attr-defined]
    assert listener is not None
    return listener


def storage_of(server: TestServer) -> Storage:
    return server.voicebot.storage  # type: ignore[attr-defined, no-any-return]


async def connect(server: TestServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", audiosocket_of(server).port)


async def dial(server: TestServer) -> Asterisk:
    return Asterisk(*await connect(server))


def live_session(server: TestServer, call_id: str) -> CallSession | None:
    return next((call.session for call in audiosocket_of(server).calls if call.call_id == call_id), None)


async def stored_end(storage: Storage, call_id: str) -> CallRow:
    return await until(lambda: (row := storage.get_call(call_id)) is not None and row.outcome and row)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), WAIT_S):
            received += chunk
    except ConnectionError:
        pass
    return received


def event_types(storage: Storage, call_id: str) -> list[str]:
    return [event["type"] for event in storage.trace_events(call_id)]


# ----- calls -------------------------------------------------------------------------------------


def test_greeting_is_paced_line_audio_and_a_spoken_request_is_understood(
    engines: Engines, caller_voice: Synthesizer, tmp_path: Path
) -> None:
    speech = synthesize_all(caller_voice, BRANCH_HOURS_REQUEST)

    async def scenario() -> None:
        async with serving(engines, tmp_path) as server:
            line = await dial(server)
            await until(lambda: line.loud > 50)  # a second of the greeting
            # One 8 kHz frame per 20 ms: never ahead of our clock by more than the bot's 0.2 s catch-up
            # and some slack (a bot that did not pace would have sent the whole prompt by now).
            assert line.heard <= line.sent + 25
            assert not line.wrong
            line.say(speech)  # over the prompt: a barge-in
            session = live_session(server, line.call_id)
            assert session is not None
            await until(lambda: any(event.type == "nlu_parsed" for event in session.events))
            await line.hang_up()
            storage = storage_of(server)
            row = await stored_end(storage, line.call_id)
            assert row.caller_id == "unknown" and row.language == "en"
            trace = storage.trace_events(line.call_id)
            parsed = [event for event in trace if event["type"] == "nlu_parsed"]
            assert parsed and parsed[0]["intent"] == "branch_hours", parsed
            assert "barge_in" in event_types(storage, line.call_id)
            assert not line.wrong and not line.hung_up

    run(scenario)


def test_key_0_hangs_up_to_the_dialplan_with_the_handoff_served_to_the_token_only(
    engines: Engines, tmp_path: Path
) -> None:
    transfer_prompt = engines.flow.prompts("en").render("transfer")

    async def scenario() -> str:
        async with serving(engines, tmp_path) as server, aiohttp.ClientSession() as http:
            line = await dial(server)
            await until(lambda: line.loud > 5)
            line.key("0")
            loud_before_transfer = line.loud
            await line.ended()  # the bot hangs up and closes once the transfer prompt has played
            assert line.hung_up and not line.wrong
            assert line.loud - loud_before_transfer > 100  # two seconds and more of the transfer prompt
            storage = storage_of(server)
            row = await stored_end(storage, line.call_id)
            assert (row.outcome, row.end_reason) == ("escalated", "transferred")
            said = [
                event["text"] for event in storage.trace_events(line.call_id) if event["type"] == "bot_said"
            ]
            assert said[-1] == transfer_prompt

            token: str = server.voicebot.handoff_token  # type: ignore[attr-defined]
            url = server.make_url(f"/api/handoffs/{line.call_id}")
            response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
            record = await response.json()
            assert record["call_id"] == line.call_id and record["reason"] == "caller_request"
            assert record["queue"] == "general" and "0" in record["dtmf"]
            wrong = ["Bearer wrong", token, f"Basic {token}", f"Bearer {token}x", "Bearer \u00e9t\u00e9"]
            for headers in [{}, *({"Authorization": value} for value in wrong)]:
                response = await http.get(url, headers=headers)
                assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
            unknown = server.make_url(f"/api/handoffs/{uuid.uuid4()}")
            response = await http.get(unknown, headers={"Authorization": f"Bearer {token}"})
            assert response.status == 404 and "error" in await response.json()
            return token

    token = asyncio.run(scenario())
    token_file = tmp_path / "server" / "handoff-api.token"
    assert token_file.read_text() == token and token_file.stat().st_mode & 0o777 == 0o600

    async def restarted() -> None:
        async with serving(engines, tmp_path) as server:  # the PBX's configured token still holds
            assert server.voicebot.handoff_token == token  # type: ignore[attr-defined]

    run(restarted)


def test_caller_hang_ups_capacity_and_shutdown(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> Asterisk:
        async with serving(engines, tmp_path, max_calls=4) as server:
            storage = storage_of(server)
            lines = [await dial(server) for _ in range(4)]
            by_message, by_closing, by_error, left_on = lines
            await until(lambda: all(line.loud > 5 for line in lines))
            # Over max_calls: hung up at once, so the dialplan goes on; never a call.
            reader, writer = await connect(server)
            assert await closed_by_server(reader) == wire(HANGUP)
            writer.close()
            await by_message.hang_up()
            await by_closing.hang_up(message=None)
            await by_error.hang_up(wire(ERROR, b"\x04"))  # Asterisk's memory error
            ends = {by_message: "caller_hangup", by_closing: "caller_hangup", by_error: "line_error"}
            for line, reason in ends.items():
                row = await stored_end(storage, line.call_id)
                assert (row.outcome, row.end_reason) == ("abandoned", reason)
                assert not line.hung_up and not line.wrong
                types = event_types(storage, line.call_id)
                assert types[0] == "call_started" and types[-1] == "call_ended"
            assert len(storage.calls_since(0)) == 4
        # left_on was still talking when the server stopped: hung up, so the dialplan goes on.
        await left_on.ended()
        return left_on

    left_on = asyncio.run(scenario())
    assert left_on.hung_up and not left_on.wrong
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    row = storage.get_call(left_on.call_id)
    storage.close()
    assert row is not None and (row.outcome, row.end_reason) == ("abandoned", "server_shutdown")


# Sent on a fresh connection: each closes that connection before any call exists.
BAD_OPENINGS = {
    "unknown message type 0x42": wire(0x42, b"x"),
    "audio must be 2-3200 bytes of whole 16-bit samples, got 65535": b"\x10\xff\xff" + bytes(100),
    "the first message must be the call UUID": wire(AUDIO, SILENT_LINE_FRAME),
    "message type 0x01 with a 15-byte payload": wire(UUID, bytes(15)),
    "unknown message type 0x47": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "inside a message header": b"\x01\x00",  # then the connection closes
    "no call UUID within": b"",  # nothing at all, the connection left open
}
# Sent after a good UUID: each ends that call as a protocol error.
BAD_MESSAGES = {
    "audio must be 2-3200 bytes of whole 16-bit samples, got 321": wire(AUDIO, bytes(321)),
    "audio must be 2-3200 bytes of whole 16-bit samples, got 3202": wire(AUDIO, bytes(3202)),
    "DTMF b'A' is not a keypad key": wire(DTMF, b"A"),
    "call UUID sent twice": wire(UUID, bytes(16)),
    "unknown message type 0x02": wire(0x02),
    "message type 0x00 with a 1-byte payload": wire(HANGUP, b"\x00"),
}


def test_malformed_input_closes_that_connection_only(
    engines: Engines, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="voicebot")

    async def scenario() -> None:
        async with serving(engines, tmp_path) as server:
            storage = storage_of(server)
            good = await dial(server)
            await until(lambda: good.loud > 5)
            for reason, data in BAD_OPENINGS.items():
                reader, writer = await connect(server)
                writer.write(data)
                if reason == "inside a message header":
                    writer.write_eof()
                assert await closed_by_server(reader) == b"", reason  # nothing sent back: no call
                writer.close()
            bad_calls = []
            for data in BAD_MESSAGES.values():
                bad = await dial(server)
                await until(lambda bad=bad: bad.heard > 0)  # the call is up
                bad.writer.write(data)
                await bad.ended()
                assert not bad.hung_up  # closed, not hung up: the peer broke the protocol
                bad_calls.append(bad)
            for bad in bad_calls:
                assert (await stored_end(storage, bad.call_id)).end_reason == "protocol_error"
            # Only the good call and the calls that had sent their UUID exist.
            expected = {good.call_id, *(bad.call_id for bad in bad_calls)}
            assert {row.call_id for row in storage.calls_since(0)} == expected
            # The good call was never disturbed: still up and hearing the bot.
            heard_before = good.heard
            await until(lambda: good.heard > heard_before + 10)
            assert not good.reading.done() and not good.hung_up and not good.wrong
            await good.hang_up()

    run(scenario)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    for reason in [*BAD_OPENINGS, *BAD_MESSAGES]:
        assert any(reason in warning and "(from 127.0.0.1:" in warning for warning in warnings), reason


NOT_UUID = [kind for kind in range(256) if kind != UUID]
NOT_CALLER_INPUT = [kind for kind in NOT_UUID if kind not in (AUDIO, DTMF)]


def garbage(rng: random.Random) -> tuple[bytes, bool, bool]:
    """A garbage connection: what it sends, whether that begins with a good UUID (still no call:
    no valid audio or key follows), and whether it then closes its side (else the server must)."""
    choice = rng.random()
    if choice < 0.4:  # random bytes (never a UUID message by chance: that would be a call)
        return bytes([rng.choice(NOT_UUID)]) + rng.randbytes(rng.randint(0, 600)), False, rng.random() < 0.5
    if choice < 0.6:  # a truncated header
        return rng.randbytes(rng.randint(1, 2)), False, True
    if choice < 0.8:  # a huge length, and a part of its payload
        kind = rng.choice([AUDIO, UUID, DTMF, HANGUP, ERROR, rng.randrange(256)])
        header = struct.pack(">BH", kind, rng.randint(MAX_AUDIO_BYTES + 1, 0xFFFF))
        return header + rng.randbytes(rng.randint(0, 2000)), False, True
    if choice < 0.97:  # well-framed messages of random types and lengths
        count = rng.randint(1, 5)
        messages = (wire(rng.choice(NOT_UUID), rng.randbytes(rng.randint(0, 40))) for _ in range(count))
        return b"".join(messages), False, rng.random() < 0.5
    if choice < 0.99:  # a good UUID, then garbage (never audio or a key): breaks, or ends at the close
        rest = bytes([rng.choice(NOT_CALLER_INPUT)]) + rng.randbytes(rng.randint(0, 300))
        return wire(UUID, rng.randbytes(16)) + rest, True, True
    return b"", False, False  # connects and says nothing


def test_a_thousand_garbage_connections_while_a_good_call_completes(engines: Engines, tmp_path: Path) -> None:
    rng = random.Random(20240611)
    connections = [garbage(rng) for _ in range(1000)]

    async def send(semaphore: asyncio.Semaphore, server: TestServer, data: bytes, close: bool) -> None:
        async with semaphore:
            reader, writer = await connect(server)
            try:
                writer.write(data)
                if close:
                    writer.write_eof()
                await writer.drain()
            except ConnectionError:
                pass  # the server closed first
            await closed_by_server(reader)
            writer.close()

    async def scenario() -> None:
        async with serving(engines, tmp_path) as server:
            storage = storage_of(server)
            failed_before = sum(n for (line, _), n in protocol_failures.items() if line == "audiosocket")
            good = await dial(server)
            await until(lambda: good.loud > 5)
            semaphore = asyncio.Semaphore(20)  # + the good call, within max_calls
            await asyncio.gather(*(send(semaphore, server, data, close) for data, _, close in connections))
            # Every garbage connection was closed by the server; the good call is the only one left.
            await until(lambda: [call.call_id for call in audiosocket_of(server).calls] == [good.call_id])
            assert not good.reading.done() and not good.hung_up and not good.wrong
            good.key("0")  # the good call completes: escalated, handed back to the dialplan
            await good.ended()
            assert good.hung_up and not good.wrong
            assert (await stored_end(storage, good.call_id)).end_reason == "transferred"
            assert storage.get_handoff(good.call_id) is not None
            # No garbage became a call, not even what began with a good UUID (no audio or key came):
            # each connection is counted once as a failure, by reason, instead.
            assert sum(with_uuid for _, with_uuid, _ in connections) > 10
            assert [row.call_id for row in storage.calls_since(0)] == [good.call_id]
            failed = sum(n for (line, _), n in protocol_failures.items() if line == "audiosocket")
            assert failed - failed_before == len(connections)

    run(scenario)


# ----- command line ------------------------------------------------------------------------------


def test_no_audiosocket_turns_the_listener_off_for_one_run(engines: Engines) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    config = engines.config.replace(
        telephony=engines.config.telephony.replace(
            audiosocket=engines.config.telephony.audiosocket.replace(enabled=True)
        )
    )
    assert serve_config(parser.parse_args(["serve"]), config).telephony.audiosocket.enabled
    off = serve_config(parser.parse_args(["serve", "--no-audiosocket"]), config)
    assert not off.telephony.audiosocket.enabled
    assert off.telephony.audiosocket.port == config.telephony.audiosocket.port


def test_a_call_that_fails_inside_is_closed_alone(engines: Engines, tmp_path: Path) -> None:
    class BrokenOwner(ExternalTransferLeg):
        def started(self, call_id: str, caller_id: str, language: str, at: float) -> None:
            raise RuntimeError("storage is down")

    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    owners = iter([BrokenOwner(storage, engines), ExternalTransferLeg(storage, engines)])
    settings = engines.config.telephony.audiosocket.replace(port=0, uuid_timeout_s=0.5)
    listener = AudioSocketServer(settings, lambda: engines, lambda _: next(owners))

    async def scenario() -> None:
        await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(wire(UUID, uuid.uuid4().bytes))
            writer.write(wire(AUDIO, SILENT_LINE_FRAME))  # a call from its first audio: stored then
            await closed_by_server(reader)  # the broken call is dropped ...
            writer.close()
            good = Asterisk(*await asyncio.open_connection("127.0.0.1", listener.port))
            await until(lambda: good.loud > 5)  # ... and the next one is served
            await good.hang_up()
        finally:
            await listener.stop()
        assert (await stored_end(storage, good.call_id)).end_reason == "caller_hangup"

    run(scenario)
    storage.close()
