"""SIP calls through the real server with a real SIP phone (Debian's baresip) on loopback.

The phone dials the bot, speaks (an espeak-ng voice, not the bot's own), keys DTMF, holds, hangs up,
and records what it hears; the checks read the call's trace and that recording."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import numpy as np
import pytest

from tests.baresip import BaresipPhone, free_port_pair, phones_available, rms, tone, tone_power
from tests.test_server import LOUD, WAIT_S, call, escalate, open_desk, run, running_server, until
from tests.test_telephony import Peer, offer
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import int16_from_pcm, resample, ulaw_encode
from voicebot.config import Config
from voicebot.engines import Engines
from voicebot.events import AsrFinal, BotSaid, CallEvent, NluParsed
from voicebot.handoff.record import HandoffRecord
from voicebot.storage import Storage
from voicebot.telephony import sdp
from voicebot.telephony.rtp import RtpPacket, RtpSender
from voicebot.telephony.sip_call import SipCall
from voicebot.transports.line import protocol_failures
from voicebot.tts.espeak_engine import EspeakSynthesizer

pytestmark = pytest.mark.skipif(not phones_available(), reason="baresip is not installed (make setup)")
T = TypeVar("T")
# Not in nlu_data/ (training or held-out): the NLU must generalise to it.
BALANCE_REQUEST = "hello I wanted to find out what is left in my account"
AGENT_TONE_HZ = SAMPLE_RATE / (2 * np.pi * 3)  # tests.test_server.LOUD: sin(n / 3) at 16 kHz


def speech(text: str) -> tuple[np.ndarray, int]:
    pcm = b"".join(EspeakSynthesizer(voice="en-us", speed=150, pitch=40).synthesize(text))
    return int16_from_pcm(pcm), SAMPLE_RATE


async def blocking(function: Callable[..., T], *args: object) -> T:
    """The phone's calls block (they wait on baresip): keep the server's loop running meanwhile."""
    return await asyncio.to_thread(function, *args)


def the_call(server: object) -> SipCall | None:
    calls = server.voicebot.sip_calls  # type: ignore[attr-defined]
    return next(iter(calls), None)


def with_sip(engines: Engines, **changes: object) -> Config:
    """The test settings with ``telephony.sip`` changed."""
    config = engines.config
    return config.replace(telephony=config.telephony.replace(sip=config.telephony.sip.replace(**changes)))


async def answered_call(
    phone: BaresipPhone, server: object, transport: str | None = None, number: str = "100"
) -> SipCall:
    """The phone dials the bot and waits for the greeting to be over; returns the bot's side."""
    await blocking(phone.dial, f"sip:{number}@127.0.0.1:{server.voicebot.sip.port}", transport)  # type: ignore[attr-defined]
    await blocking(phone.wait_established)
    call = await until(lambda: the_call(server))
    await until(lambda: prompt_done(call))
    return call


def said(call: SipCall, prompt_id: str) -> bool:
    assert call.session is not None
    return any(isinstance(e, BotSaid) and e.prompt_id == prompt_id for e in call.session.events)


async def until_said(call: SipCall, *prompt_ids: str) -> str:
    """Waits until the bot says one of the prompts; a timeout fails with what the call heard and said."""
    try:
        return await until(lambda: next((p for p in prompt_ids if said(call, p)), None))
    except asyncio.TimeoutError:
        assert call.session is not None
        story = [
            f"{e.type}: {getattr(e, 'prompt_id', '') or getattr(e, 'intent', '')} {getattr(e, 'text', '')}"
            for e in call.session.events
            if isinstance(e, (BotSaid, NluParsed, AsrFinal))
        ]
        raise AssertionError(
            f"the bot never said {prompt_ids}; the call went:\n" + "\n".join(story)
        ) from None


def prompt_done(call: SipCall) -> bool:
    """The bot has spoken and is listening."""
    session = call.session
    return (
        session is not None
        and any(isinstance(e, BotSaid) for e in session.events)
        and not session.bot_speaking
    )


def events(call: SipCall, kind: type[CallEvent]) -> list[CallEvent]:
    assert call.session is not None
    return [e for e in call.session.events if isinstance(e, kind)]


async def ask_for_the_balance(phone: BaresipPhone, call: SipCall) -> None:
    """Says the request; when the bot is not sure enough to go on without asking, keys 1 (yes).
    (Short spoken answers are what espeak-ng voices on the phone band are worst recognised at:
    issue 8; here the line is under test, not the recogniser.)"""
    await blocking(phone.play, speech(BALANCE_REQUEST))
    if await until_said(call, "ask_account_number", "confirm_intent") == "confirm_intent":
        await blocking(phone.send_dtmf, "1")
        await until_said(call, "ask_account_number")


async def ended(storage: Storage, call_id: str) -> tuple[str, str]:
    row = await until(lambda: (r := storage.get_call(call_id)) is not None and r.outcome and r)
    return row.outcome, row.end_reason  # type: ignore[union-attr, return-value]


def test_sip_caller_is_understood_authenticated_and_bridged_to_an_agent(
    engines: Engines, tmp_path: Path
) -> None:
    """UDP, PCMU: greeting heard, a spoken request, keyed account and PIN, 0 to an agent in the
    built-in contact centre, audio both ways, the agent hangs up (the bot's side sends BYE)."""

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            storage = server.voicebot.storage
            desk_session, desk = await open_desk(server, "alice")
            with BaresipPhone(tmp_path / "caller", user="+15550142") as phone:
                call = await answered_call(phone, server)
                assert call.dialog.codec == ("PCMU", 0) and call.dialog.wire.transport == "UDP"
                await ask_for_the_balance(phone, call)
                assert "check_balance" in [e.intent for e in events(call, NluParsed)]  # type: ignore[attr-defined]
                await blocking(phone.send_dtmf, "12345678#")
                await until_said(call, "ask_pin")
                await blocking(phone.send_dtmf, "4321#")
                await until_said(call, "balance_result")
                await blocking(phone.send_dtmf, "0")
                offer_message = await until(desk.offer)
                pop = offer_message["pop"]
                assert pop["caller_id"] == "+15550142" and pop["auth_level"] == "authenticated"
                await desk.ws.send_json({"type": "accept", "call_id": offer_message["call_id"]})
                await until(lambda: desk.state == "talking")
                # The caller speaks: the agent hears it. The agent's tone reaches the phone.
                loud_before = desk.loud_frames
                await blocking(phone.play, speech("yes I am still here"))
                for _ in range(100):
                    await desk.ws.send_bytes(LOUD)
                    await asyncio.sleep(0.02)
                await until(lambda: desk.loud_frames > loud_before + 10)
                await desk.ws.send_json({"type": "hangup"})
                assert "peer" in (await blocking(phone.wait_closed)).lower()
                call_id = call.session.call_id  # type: ignore[union-attr]
                assert await ended(storage, call_id) == ("escalated", "answered")
                heard = (await blocking(phone.recordings))[-1].heard
            # What the phone heard: the greeting in its first seconds, the agent's tone at the end.
            assert rms(heard[: 3 * 8000]) > 0.02  # -34 dBFS: speech, not line noise
            assert tone_power(heard[-4 * 8000 :], AGENT_TONE_HZ, 8000) > 0.5
            await desk_session.close()

    run(scenario)


def test_sip_over_tcp_with_pcma_hold_and_caller_hangup(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            with BaresipPhone(tmp_path / "caller", codecs=("PCMA",)) as phone:
                call = await answered_call(phone, server, "tcp")
                assert call.dialog.codec == ("PCMA", 8) and call.dialog.wire.transport == "TCP"
                await until(lambda: call.dialog.rtp.sent > 50)
                await blocking(phone.hold)
                await until(lambda: call._held)
                sent_on_hold = call.dialog.rtp.sent
                await asyncio.sleep(1.0)
                assert call.dialog.rtp.sent == sent_on_hold  # nothing is sent to a caller who holds
                await blocking(phone.resume)
                await until(lambda: call.dialog.rtp.sent > sent_on_hold + 20)
                await blocking(phone.hangup)
                await blocking(phone.wait_closed)
                call_id = call.session.call_id  # type: ignore[union-attr]
                assert await ended(server.voicebot.storage, call_id) == ("abandoned", "caller_hangup")
                assert server.voicebot.sip.dialogs == {}

    run(scenario)


def test_the_dialled_number_chooses_where_the_call_starts(engines: Engines, tmp_path: Path) -> None:
    """telephony.numbers: the card line's number starts at the lost-card task, the main number at
    the flow's start (the main menu)."""
    numbers = {"200": {"start": "report_lost_card"}}
    config = engines.config.replace(telephony=engines.config.telephony.replace(numbers=numbers))

    async def scenario() -> None:
        async with running_server(engines, tmp_path, config=config) as server:
            with BaresipPhone(tmp_path / "caller") as phone:
                call = await answered_call(phone, server, number="200")
                await until_said(call, "ask_account_number")
                assert not said(call, "main_menu")
                await blocking(phone.hangup)

    run(scenario)


def test_a_caller_who_sends_no_rtp_is_hung_up(engines: Engines, tmp_path: Path) -> None:
    """... and is no call (answered, but no RTP came): not stored, counted as a failed connection."""
    config = with_sip(engines, no_rtp_timeout_s=1.0)

    async def scenario() -> None:
        async with running_server(engines, tmp_path, config=config) as server:
            failed_before = protocol_failures["sip", "no_media"]
            peer = Peer(server.voicebot.sip)
            peer.send("INVITE", body=offer(peer.port))
            ok = await peer.final()
            assert ok.code == 200
            peer.send("ACK", branch="z9hG4bKack", to_tag=ok.to_address.parameters.get("tag") or "")
            call = await until(lambda: the_call(server))
            while await _next_request(peer) != "BYE":
                pass
            await until(lambda: not server.voicebot.sip_calls)
            assert call.end_reason == "no_rtp" and not call.is_call
            assert server.voicebot.storage.calls_since(0) == []
            assert protocol_failures["sip", "no_media"] == failed_before + 1
            peer.close()

    run(scenario)


async def _next_request(peer: Peer) -> str:
    """The method of the next request the bot sends the peer (skipping RTP and responses)."""
    loop = asyncio.get_running_loop()
    while True:
        data = await asyncio.wait_for(loop.sock_recv(peer.socket, 65535), WAIT_S)
        first = data.split(b"\r\n", 1)[0].decode("latin-1")
        if first.endswith("SIP/2.0"):
            return first.split()[0]


def fuzzed_datagram(rng: random.Random, port: int) -> bytes:
    """A SIP request broken one way or another: flipped bytes, cut short, lying lengths, garbage."""
    method = rng.choice(["INVITE", "OPTIONS", "BYE", "CANCEL", "ACK", "INFO", "REGISTER", "X" * 300])
    message = (
        f"{method} sip:100@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{rng.random()}\r\n"
        f"From: <sip:f@x>;tag={rng.random()}\r\nTo: <sip:100@x>\r\nCall-ID: fuzz{rng.random()}\r\n"
        f"CSeq: {rng.randint(-5, 1 << 40)} {method}\r\nContent-Length: {rng.randint(-10, 99999)}\r\n\r\n"
    ).encode() + offer(rng.randint(0, 70000))
    kind = rng.random()
    if kind < 0.4:
        data = bytearray(message)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind < 0.6:
        return message[: rng.randrange(len(message))]
    if kind < 0.8:
        lines = message.split(b"\r\n")
        rng.shuffle(lines)
        return b"\r\n".join(lines)
    return rng.randbytes(rng.randint(0, 1400))


def test_fuzzed_sip_and_rtp_do_not_disturb_a_good_call(engines: Engines, tmp_path: Path) -> None:
    """10,000 broken SIP datagrams at the SIP port and 10,000 stray RTP packets at the call's RTP
    port while a good call runs: the good call goes on and is understood afterwards."""

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            agent = server.voicebot.sip
            with BaresipPhone(tmp_path / "caller") as phone:
                call = await answered_call(phone, server)
                rng = random.Random(7)
                fuzzer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                fuzzer.setblocking(False)
                rtp_target = ("127.0.0.1", call.dialog.rtp.port)
                for i in range(10_000):
                    fuzzer.sendto(fuzzed_datagram(rng, agent.port), ("127.0.0.1", agent.port))
                    fuzzer.sendto(rng.randbytes(rng.randint(0, 300)), rtp_target)
                    if i % 200 == 0:
                        await asyncio.sleep(
                            0.01
                        )  # let the server read: a flood beyond the socket buffer tests the kernel
                fuzzer.close()
                await until(lambda: agent.dropped > 1000)
                assert call.dialog.rtp.rejected > 1000
                await ask_for_the_balance(phone, call)
                assert not call.dialog.ended.is_set()
                await blocking(phone.hangup)
                await blocking(phone.wait_closed)
            # Still answering.
            peer = Peer(agent)
            peer.send("OPTIONS", branch="z9hG4bKafterfuzz")
            assert (await peer.final()).code == 200
            peer.close()

    run(scenario)


def test_transfer_mode_refers_the_caller_to_the_pbx_with_the_context(
    engines: Engines, tmp_path: Path
) -> None:
    """escalation: transfer: key 0 makes the bot REFER the caller's phone to the PBX (a second
    baresip that answers), with the handoff in X-Voicebot-* and User-to-User; the full record is
    served by id over HTTP."""

    async def scenario() -> None:
        with BaresipPhone(tmp_path / "pbx", user="queue", answer=True) as pbx:
            config = with_sip(engines, escalation="transfer", transfer_uri=pbx.uri)
            async with running_server(engines, tmp_path, config=config) as server:
                with BaresipPhone(tmp_path / "caller", user="+15550177") as phone:
                    call = await answered_call(phone, server)
                    await blocking(phone.send_dtmf, "0")
                    invite = await blocking(pbx.wait_for_invite, WAIT_S)
                    await blocking(pbx.wait_established, WAIT_S)
                    refer = next(m for m in phone.sip_messages() if m.method == "REFER")
                    call_id = call.session.call_id  # type: ignore[union-attr]
                    assert refer.header("X-Voicebot-Id") == call_id
                    assert refer.header("X-Voicebot-Reason") == "caller_request"
                    uui = (refer.header("User-to-User") or "").split(";")[0]
                    assert json.loads(bytes.fromhex(uui))["id"] == call_id
                    assert "queue@" in invite.start_line and f"handoff={call_id}" in invite.start_line
                    outcome = await ended(server.voicebot.storage, call_id)
                    assert outcome == ("escalated", "transferred")
                    token = server.voicebot.handoff_token
                    async with aiohttp.ClientSession() as http:
                        url = server.make_url(f"/api/handoffs/{call_id}")
                        record = await (
                            await http.get(url, headers={"Authorization": f"Bearer {token}"})
                        ).json()
                    assert record["caller_id"] == "+15550177" and record["reason"] == "caller_request"
                    await blocking(phone.hangup)

    run(scenario)


class ImpairedRtpCaller:
    """A caller whose network loses and reorders packets: SIP by hand (:class:`Peer`), RTP on its
    own socket; every 20 ms one packet of the script (silence, then speech), of which ``loss`` are
    dropped and ``reorder`` swapped with the next. It keeps every packet the bot sends."""

    def __init__(self, peer: Peer, audio: bytes, loss: float, reorder: float, seed: int = 5) -> None:
        self.peer = peer
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)
        self.port = self.rtp.getsockname()[1]
        self.frames = [audio[i : i + 320] for i in range(0, len(audio) - 319, 320)]
        self.loss, self.reorder, self.rng = loss, reorder, random.Random(seed)
        self.received: list[RtpPacket] = []
        self.dropped = self.swapped = 0

    async def send(self, bot: tuple[str, int]) -> None:
        sender = RtpSender(0)
        held: bytes | None = None
        for frame in self.frames:
            packet = sender.packet(ulaw_encode(frame))
            if self.rng.random() < self.loss:
                self.dropped += 1
            elif held is None and self.rng.random() < self.reorder:
                held = packet  # sent after the next one
                self.swapped += 1
            else:
                self.rtp.sendto(packet, bot)
                if held is not None:
                    self.rtp.sendto(held, bot)
                    held = None
            await asyncio.sleep(0.02)

    async def receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.received.append(RtpPacket.parse(await loop.sock_recv(self.rtp, 2048)))


def test_lost_and_reordered_rtp_still_makes_a_call(engines: Engines, tmp_path: Path) -> None:
    """5 % of the caller's packets lost and 5 % reordered: the request is still understood, and
    the bot's own stream has no gap at all (every sequence number and timestamp in order)."""

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            peer = Peer(server.voicebot.sip)
            pcm = speech(BALANCE_REQUEST)[0].tobytes()
            silence = bytes(320 * 250)  # 5 s of 8 kHz: the greeting plays
            caller = ImpairedRtpCaller(
                peer, silence + resample(pcm, SAMPLE_RATE, 8000) + silence * 2, 0.05, 0.05
            )
            peer.send("INVITE", body=offer(caller.port).replace(b" 8 0 101", b" 0 101"))
            ok = await peer.final()
            peer.send("ACK", branch="z9hG4bKack", to_tag=ok.to_address.parameters.get("tag") or "")
            answer = sdp.parse(ok.body)
            receiving = asyncio.create_task(caller.receive())
            await caller.send(("127.0.0.1", answer.port))
            call = await until(lambda: the_call(server))
            await until_said(call, "ask_account_number", "confirm_intent")
            assert "check_balance" in [e.intent for e in events(call, NluParsed)]  # type: ignore[attr-defined]
            assert call._jitter.lost >= caller.dropped // 2 and caller.dropped > 10 and caller.swapped > 10
            peer.send("BYE", branch="z9hG4bKbye", to_tag=ok.to_address.parameters.get("tag") or "")
            receiving.cancel()
            bot = caller.received
            assert len(bot) > 500 and {len(p.payload) for p in bot} == {160}
            assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(bot))
            assert all((b.timestamp - a.timestamp) % (1 << 32) == 160 for a, b in itertools.pairwise(bot))
            peer.close()

    run(scenario)


def test_sipvicious_scans_find_only_what_is_meant_to_be_found(engines: Engines, tmp_path: Path) -> None:
    """The SIP auditing tools against the port: svmap sees a SIP device, extension enumeration by
    REGISTER finds nothing (the bot is no registrar), a digest-cracking run gets no answer to work
    with; the server answers normally afterwards."""
    tools = Path(sys.executable).parent

    async def scan(tool: str, *args: str) -> str:
        command = [str(tools / f"sipvicious_{tool}"), *args]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
        return done.stdout + done.stderr

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            port = f"-p{server.voicebot.sip.port}"
            assert "voicebot" in await scan("svmap", port, "127.0.0.1")
            assert "found nothing" in await scan("svwar", port, "-e100-120", "127.0.0.1")
            assert "found nothing" in await scan("svcrack", port, "-u100", "-r1000-1010", "127.0.0.1")
            peer = Peer(server.voicebot.sip)
            peer.send("OPTIONS", branch="z9hG4bKafterscan")
            assert (await peer.final()).code == 200
            peer.close()

    run(scenario)


def test_a_callback_is_dialled_out_for_the_agent_who_accepts_it(engines: Engines, tmp_path: Path) -> None:
    """A queued caller presses 1 for a callback; when an agent is ready the callback is offered
    with the screen pop, and on accept the bot dials the caller's phone (a baresip that answers)
    and bridges the two; the result is stored."""

    async def scenario() -> None:
        callee_tone = tone(440.0, 60.0)
        with BaresipPhone(tmp_path / "callee", user="+15550123", answer=True, audio=callee_tone) as callee:
            config = with_sip(engines, callback_uri=f"sip:{{caller_id}}@127.0.0.1:{callee.sip_port}")
            async with running_server(engines, tmp_path, config=config) as server:
                desk_session, desk = await open_desk(server, "alice", ready=False)
                async with aiohttp.ClientSession() as session:
                    caller = await call(session, server, caller_id="+15550123")
                    await escalate(caller)
                    await caller.ws.send_json({"type": "dtmf", "digit": "1"})
                    await caller.wait_for("callback_scheduled")
                    await caller.wait_for("hangup")
                await desk.ws.send_json({"type": "ready"})
                offer_message = await until(desk.offer)
                assert offer_message["pop"]["caller_id"] == "+15550123"
                await desk.ws.send_json({"type": "accept", "call_id": offer_message["call_id"]})
                await blocking(callee.wait_established, WAIT_S)
                loud_before = desk.loud_frames
                for _ in range(100):
                    await desk.ws.send_bytes(LOUD)
                    await asyncio.sleep(0.02)
                await until(lambda: desk.loud_frames > loud_before + 10)  # the callee's tone
                await desk.ws.send_json({"type": "hangup"})
                await blocking(callee.wait_closed, WAIT_S)
                heard = (await blocking(callee.recordings))[-1].heard
                database = sqlite3.connect(tmp_path / "voicebot.sqlite")
                rows = await until(
                    lambda: database.execute("SELECT status, result FROM callbacks").fetchall() or None
                )
                assert rows == [("done", "answered")]
                database.close()
                await desk_session.close()
        assert tone_power(heard[-3 * 8000 :], AGENT_TONE_HZ, 8000) > 0.5  # the agent reached the callee

    run(scenario)


def test_a_callback_nobody_answers_is_stored_as_such_and_the_agent_moves_on(
    engines: Engines, tmp_path: Path
) -> None:
    nobody = free_port_pair()  # nothing listens there
    config = with_sip(engines, callback_uri=f"sip:{{caller_id}}@127.0.0.1:{nobody}", ring_timeout_s=2.0)

    async def scenario() -> None:
        async with running_server(engines, tmp_path, config=config) as server:
            record = HandoffRecord("c0ffee", "caller_request", "general", "+15550124", "en", "none")
            server.voicebot.storage.add_callback(record, 0.0)
            desk_session, desk = await open_desk(server, "alice", ready=False)
            await desk.ws.send_json({"type": "ready"})  # offered the callback at once
            offer_message = await until(desk.offer)
            await desk.ws.send_json({"type": "accept", "call_id": offer_message["call_id"]})
            await until(lambda: desk.state == "wrap_up")  # the agent is told the call did not happen
            database = sqlite3.connect(tmp_path / "voicebot.sqlite")
            assert database.execute("SELECT status, result FROM callbacks").fetchall() == [
                ("done", "no_answer")
            ]
            database.close()
            await desk_session.close()

    run(scenario)


def test_transfer_by_invite_bridges_the_caller_to_the_pbx_with_the_context_headers(
    engines: Engines, tmp_path: Path
) -> None:
    """transfer_method: invite (B2BUA): the bot calls the PBX (a baresip that answers) with the
    context in its INVITE's headers and bridges the caller to it; the PBX hangs up, the caller gets BYE."""

    async def scenario() -> None:
        with BaresipPhone(tmp_path / "pbx", user="queue", answer=True, audio=tone(440.0, 60.0)) as pbx:
            config = with_sip(engines, escalation="transfer", transfer_uri=pbx.uri, transfer_method="invite")
            async with running_server(engines, tmp_path, config=config) as server:
                with BaresipPhone(tmp_path / "caller", user="+15550178") as phone:
                    call = await answered_call(phone, server)
                    await blocking(phone.send_dtmf, "0")
                    invite = await blocking(pbx.wait_for_invite, WAIT_S)
                    await blocking(pbx.wait_established, WAIT_S)
                    call_id = call.session.call_id  # type: ignore[union-attr]
                    assert invite.header("X-Voicebot-Id") == call_id
                    assert invite.header("X-Voicebot-Reason") == "caller_request"
                    uui = (invite.header("User-to-User") or "").split(";")[0]
                    assert json.loads(bytes.fromhex(uui))["queue"] == "general"
                    await asyncio.sleep(3.0)  # the PBX's tone reaches the caller through the bridge
                    await blocking(pbx.hangup)
                    await blocking(phone.wait_closed, WAIT_S)
                    assert await ended(server.voicebot.storage, call_id) == ("escalated", "transferred")
                    heard = (await blocking(phone.recordings))[-1].heard
        assert tone_power(heard[-2 * 8000 :], 440.0, 8000) > 0.5

    run(scenario)


@pytest.mark.parametrize("method", ["refer", "invite"])
def test_a_failed_transfer_leaves_the_caller_waiting_in_the_built_in_queue(
    engines: Engines, tmp_path: Path, method: str
) -> None:
    """The PBX rejects the transferred call (busy): the caller is not cut off but told, and queued
    for the built-in contact centre's agents."""

    async def scenario() -> None:
        with BaresipPhone(tmp_path / "pbx", user="queue") as pbx:
            config = with_sip(engines, escalation="transfer", transfer_uri=pbx.uri, transfer_method=method)
            async with running_server(engines, tmp_path, config=config) as server:
                with BaresipPhone(tmp_path / "caller", user="+15550179") as phone:
                    call = await answered_call(phone, server)
                    call_id = call.session.call_id  # type: ignore[union-attr]
                    await blocking(phone.send_dtmf, "0")
                    await blocking(pbx.wait_for_invite, WAIT_S)
                    await blocking(pbx.hangup)  # rejects the ringing call
                    center = server.voicebot.center
                    await until(lambda: call_id in center.callers)
                    assert call.owner.result == "transfer_failed"  # type: ignore[attr-defined]
                    await asyncio.sleep(2.0)
                    assert not call.caller_gone and call_id in center.callers  # still waiting
                    await blocking(phone.hangup)
                    assert await ended(server.voicebot.storage, call_id) == ("escalated", "abandoned")

    run(scenario)
