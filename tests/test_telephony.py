"""The telephone line's parts without a call: SDP, RTP, the jitter buffer, keys, and the SIP user
agent's answers to hand-written requests over a real UDP socket (no engines: fast)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sipmessage import Message, Request, Response

from voicebot.config import SipConfig
from voicebot.errors import VoicebotError
from voicebot.telephony import sdp
from voicebot.telephony.rtp import JitterBuffer, RtpError, RtpPacket, RtpSender, TelephoneEvents
from voicebot.telephony.sip import IncomingCall, SipUserAgent, caller_id_of

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
)


def offer(port: int = 40000, direction: str = "sendrecv") -> bytes:
    return OFFER.format(port=port, direction=direction).encode()


# ----- SDP ------------------------------------------------------------------------------------------


def test_sdp_offer_is_read_and_answered_with_our_preferred_codec() -> None:
    parsed = sdp.parse(offer())
    assert (parsed.address, parsed.port, parsed.direction) == ("127.0.0.1", 40000, "sendrecv")
    assert parsed.codec(["PCMU", "PCMA"]) == ("PCMU", 0)
    assert parsed.codec(["PCMA"]) == ("PCMA", 8)
    assert parsed.telephone_event_pt == 101
    answer = sdp.LocalAudio("127.0.0.1", 20002, 7).describe([("PCMU", 0)], 101, "sendrecv", 1).decode()
    again = sdp.parse(answer.encode())
    assert (again.port, again.payload_types, again.telephone_event_pt) == (20002, (0, 101), 101)


def test_sdp_hold_is_mirrored() -> None:
    held = sdp.parse(offer(direction="sendonly"))
    assert held.on_hold and sdp.answer_direction(held) == "recvonly"
    assert sdp.parse(offer(direction="inactive")).on_hold
    assert not sdp.parse(offer(direction="recvonly")).on_hold


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe garbage",
        b"v=0\r\nm=video 4000 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\n",
        b"v=0\r\nc=IN IP4 not-an-address\r\nm=audio 4000 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 99999 RTP/AVP 0\r\n",
        b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
        b"this is not sdp",
    ],
)
def test_sdp_that_cannot_be_used_is_an_sdp_error(body: bytes) -> None:
    with pytest.raises(sdp.SdpError):
        sdp.parse(body)


# ----- RTP ------------------------------------------------------------------------------------------


def test_rtp_packets_round_trip_and_count_on() -> None:
    sender = RtpSender(0)
    first, second = (
        RtpPacket.parse(sender.packet(b"\x01" * 160)),
        RtpPacket.parse(sender.packet(b"\x02" * 160)),
    )
    assert first.marker and not second.marker
    assert (second.sequence - first.sequence) % 65536 == 1
    assert (second.timestamp - first.timestamp) % (1 << 32) == 160
    assert second.payload == b"\x02" * 160 and second.ssrc == first.ssrc


def test_rtp_header_extension_csrc_and_padding_are_skipped() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 0x01, 0x00, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2])
    packet = RtpPacket.parse(header + b"CSRC" + b"\xbe\xde\x00\x01" + b"EXTN" + b"audio" + b"\x00\x00\x03")
    assert packet.payload == b"audio"


@pytest.mark.parametrize(
    "data", [b"", b"\x80\x00", bytes([0x40]) + bytes(11), bytes([0xA0, 0, 0, 1]) + bytes(8) + b"\x09"]
)
def test_rtp_that_is_not_rtp_is_refused(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_jitter_buffer_reorders_and_conceals_one_lost_packet() -> None:
    buffer = JitterBuffer(depth=3)
    arrivals = [0, 2, 1, 3, 5, 6, 7, 8]  # 1 overtaken by 2; 4 never comes
    played = []
    for sequence in arrivals:
        buffer.push(sequence, bytes([sequence]))
        played.append(buffer.pop())
    played += [buffer.pop() for _ in range(4)]
    assert played[:2] == [None, None]  # prefilling
    assert played[2:] == [
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x03",
        b"\x03",
        b"\x05",
        b"\x06",
        b"\x07",
        b"\x08",
        None,
    ]
    assert (buffer.lost, buffer.late) == (1, 0)
    buffer.push(4, b"\x04")  # too late now
    assert buffer.late == 1


def test_jitter_buffer_follows_sequence_wrap_and_a_new_stream() -> None:
    buffer = JitterBuffer(depth=2)
    out = []
    for sequence in (65534, 65535, 0, 1):
        buffer.push(sequence, sequence.to_bytes(2, "big"))
        out.append(buffer.pop())
    assert out == [None, b"\xff\xfe", b"\xff\xff", b"\x00\x00"]
    buffer.push(30000, b"new")  # a jump: the buffer starts again
    buffer.push(30001, b"new2")
    assert buffer.pop() == b"new"


def test_telephone_events_give_one_key_per_event() -> None:
    events = TelephoneEvents(101)

    def packet(event: int, timestamp: int, end: bool = False) -> RtpPacket:
        return RtpPacket(101, 1, timestamp, 9, bytes([event, 0x80 if end else 0, 0, 160]))

    keys = [events.key(packet(5, 1000)), events.key(packet(5, 1000)), events.key(packet(5, 1000, end=True))]
    keys += [events.key(packet(11, 2000)), events.key(packet(15, 3000))]
    assert keys == ["5", None, None, "#", None]


# ----- SIP headers ------------------------------------------------------------------------------


def request(text: str) -> Request:
    message = Message.parse(text.replace("\n", "\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_caller_id_prefers_the_asserted_identity() -> None:
    base = 'INVITE sip:100@127.0.0.1 SIP/2.0\nFrom: "Jane" <sip:+15550100@trunk>;tag=1\n{}\n\n'
    assert caller_id_of(request(base.format("P-Asserted-Identity: <sip:+15550199@trunk>"))) == "+15550199"
    assert caller_id_of(request(base.format("X-Other: 1"))) == "+15550100"
    anonymous = 'INVITE sip:100@h SIP/2.0\nFrom: "Anna" <sip:h>;tag=1\n\n'
    assert caller_id_of(request(anonymous)) == "Anna"


# ----- the user agent over UDP ------------------------------------------------------------------------


class Peer:
    """A hand-written SIP peer on a real UDP socket."""

    def __init__(self, agent: SipUserAgent) -> None:
        self.agent = agent
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]
        self.cseq = 0

    def send(self, method: str, *, call_id: str = "c1", branch: str = "z9hG4bKa1", body: bytes = b"",
             to_tag: str = "", extra: str = "", cseq: int | None = None) -> None:  # fmt: skip
        self.cseq += 1
        to = f"<sip:100@127.0.0.1>{';tag=' + to_tag if to_tag else ''}"
        head = (
            f"{method} sip:100@127.0.0.1:{self.agent.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch}\r\n"
            f"From: <sip:caller@127.0.0.1>;tag=abc\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq or self.cseq} {method}\r\nContact: <sip:caller@127.0.0.1:{self.port}>\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.socket.sendto(head.encode() + body, ("127.0.0.1", self.agent.port))

    async def response(self, timeout: float = 5.0) -> Response:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.socket, 65535), timeout)
        message = Message.parse(data)
        assert isinstance(message, Response)
        return message

    async def final(self) -> Response:
        while (response := await self.response()).code < 200:
            pass
        return response

    def close(self) -> None:
        self.socket.close()


@asynccontextmanager
async def user_agent(**settings: object) -> AsyncIterator[tuple[SipUserAgent, list[IncomingCall]]]:
    calls: list[IncomingCall] = []
    agent = SipUserAgent(SipConfig(port=0, rtp_port_min=31000, rtp_port_max=31999, **settings), calls.append)
    await agent.start()
    try:
        yield agent, calls
    finally:
        await agent.stop()


def run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


def test_options_invite_ack_bye() -> None:
    async def scenario() -> None:
        async with user_agent() as (agent, calls):
            peer = Peer(agent)
            peer.send("OPTIONS", branch="z9hG4bKo1")
            options = await peer.final()
            assert options.code == 200 and "INVITE" in (options.headers.get("Allow") or "")
            peer.send("INVITE", body=offer(peer.port))
            assert (await peer.response()).code == 100
            ok = await peer.final()
            assert ok.code == 200 and ok.headers.get("Content-Type") == "application/sdp"
            answer = sdp.parse(ok.body)
            assert answer.codec(["PCMU"]) == ("PCMU", 0) and 31000 <= answer.port <= 31999
            assert len(calls) == 1 and calls[0].dialled == "100" and calls[0].caller_id == "caller"
            tag = ok.to_address.parameters.get("tag")
            peer.send("INVITE", body=offer(peer.port))  # a retransmission: the same answer, no new call
            assert (await peer.final()).to_address.parameters.get("tag") == tag and len(calls) == 1
            peer.send("ACK", branch="z9hG4bKack", to_tag=tag or "")
            peer.send("BYE", branch="z9hG4bKb1", to_tag=tag or "")
            assert (await peer.final()).code == 200
            assert calls[0].dialog.ended.is_set() and calls[0].dialog.end_reason == "caller_hangup"
            peer.send("BYE", branch="z9hG4bKb2", to_tag=tag or "")
            assert (await peer.final()).code == 481
            peer.send("REGISTER", branch="z9hG4bKr1")
            assert (await peer.final()).code == 405
            peer.close()

    run(scenario())


def test_invites_that_cannot_be_served_get_clear_answers() -> None:
    async def scenario() -> None:
        async with user_agent(codecs=["PCMU"], max_dialogs=1) as (agent, calls):
            peer = Peer(agent)
            peer.send("INVITE", branch="z9hG4bK1", call_id="bad", body=b"not sdp")
            assert (await peer.final()).code == 488
            only_pcma = offer(peer.port).replace(b" 8 0 101", b" 8 101")
            peer.send("INVITE", branch="z9hG4bK2", call_id="pcma", body=only_pcma)
            refused = await peer.final()
            assert refused.code == 488 and "codec" in (refused.headers.get("Warning") or "")
            peer.send("INVITE", branch="z9hG4bK3", call_id="one", body=offer(peer.port))
            assert (await peer.final()).code == 200
            peer.send("INVITE", branch="z9hG4bK4", call_id="two", body=offer(peer.port))
            busy = await peer.final()
            assert busy.code == 503 and busy.headers.get("Retry-After")
            assert len(calls) == 1
            peer.close()

    run(scenario())


def test_cancel_before_the_answer() -> None:
    async def scenario() -> None:
        async with user_agent(answer_delay_ms=2000) as (agent, calls):
            peer = Peer(agent)
            peer.send("INVITE", branch="z9hG4bKc1", body=offer(peer.port))
            assert [(await peer.response()).code for _ in range(2)] == [100, 180]
            peer.send("INVITE", branch="z9hG4bKc1", body=offer(peer.port), cseq=peer.cseq)  # retransmitted
            assert (await peer.response()).code == 180  # the last answer again, not a second call
            peer.send("CANCEL", branch="z9hG4bKc1", cseq=peer.cseq)
            codes = sorted([(await peer.response()).code, (await peer.response()).code])
            assert codes == [200, 487]
            await asyncio.sleep(2.2)  # past the ring: the cancelled call is never answered
            assert calls == [] and agent.dialogs == {}
            peer.close()

    run(scenario())


def test_peers_not_allowed_and_garbage_are_dropped() -> None:
    async def scenario() -> None:
        async with user_agent(allowed_peers=["10.0.0.0/8"]) as (agent, _calls):
            peer = Peer(agent)
            peer.send("OPTIONS")
            with pytest.raises(asyncio.TimeoutError):
                await peer.response(timeout=0.5)
            assert agent.dropped == 1
        async with user_agent() as (agent, calls):
            peer = Peer(agent)
            for garbage in (
                b"\x00\xff" * 40,
                b"INVITE\r\n\r\n",
                b"SIP/2.0 abc\r\n\r\n",
                b"A B SIP/2.0\r\nVia\r\n\r\n",
            ):
                peer.socket.sendto(garbage, ("127.0.0.1", agent.port))
            # Found by scripts/fuzz_protocols.py: a header that parses only when the call is answered.
            peer.send(
                "INVITE",
                branch="z9hG4bKrr",
                call_id="rr",
                body=offer(peer.port),
                extra="Record-Route: <<\r\n",
            )
            peer.send("OPTIONS", branch="z9hG4bKafter")
            assert (await peer.final()).code == 200  # still answering
            assert agent.dropped == 5 and calls == [] and agent.dialogs == {}
            peer.close()

    run(scenario())


def test_digest_authentication_of_invites() -> None:
    async def scenario() -> None:
        async with user_agent(digest_users={"trunk": "s3cret"}) as (agent, calls):
            peer = Peer(agent)
            peer.send("INVITE", branch="z9hG4bKd1", body=offer(peer.port))
            challenge = await peer.final()
            assert challenge.code == 401 and challenge.www_authenticate is not None
            params = dict(challenge.www_authenticate.parameters.items())
            uri = f"sip:100@127.0.0.1:{agent.port}"

            def md5(text: str) -> str:
                return hashlib.md5(text.encode()).hexdigest()

            def authorization(password: str) -> str:
                ha1, ha2 = md5(f"trunk:{params['realm']}:{password}"), md5(f"INVITE:{uri}")
                response = md5(f"{ha1}:{params['nonce']}:00000001:xyz:auth:{ha2}")
                return (
                    f'Authorization: Digest username="trunk", realm="{params["realm"]}", '
                    f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", qop=auth, '
                    f'nc=00000001, cnonce="xyz", algorithm=MD5\r\n'
                )

            peer.send("INVITE", branch="z9hG4bKd2", body=offer(peer.port), extra=authorization("wrong"))
            assert (await peer.final()).code == 401 and calls == []
            peer.send("INVITE", branch="z9hG4bKd3", body=offer(peer.port), extra=authorization("s3cret"))
            assert (await peer.final()).code == 200 and len(calls) == 1
            # The same credentials again (a captured INVITE replayed as a new call): refused.
            peer.send("INVITE", call_id="c2", branch="z9hG4bKd4", body=offer(peer.port),
                      extra=authorization("s3cret"))  # fmt: skip
            assert (await peer.final()).code == 401 and len(calls) == 1
            peer.close()

    run(scenario())


def test_tcp_garbage_closes_that_connection_and_connections_are_capped() -> None:
    async def scenario() -> None:
        async with user_agent(max_dialogs=1) as (agent, _calls):
            connections = [await asyncio.open_connection("127.0.0.1", agent.port) for _ in range(3)]
            (reader, writer), second, (third_reader, _) = connections
            assert await asyncio.wait_for(third_reader.read(), 5) == b""  # over the cap: closed at once
            writer.write(b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nContent-Length: nonsense\r\n\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the stream is out of step: closed
            _, good = second
            via = f"SIP/2.0/TCP 127.0.0.1:{good.get_extra_info('sockname')[1]};branch=z9hG4bKt1"
            good.write(
                f"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\n"
                "To: <sip:100@b>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".encode()
            )
            response = Message.parse(await asyncio.wait_for(second[0].readuntil(b"\r\n\r\n"), 5))
            assert isinstance(response, Response) and response.code == 200
            for _, w in connections:
                w.close()

    run(scenario())


def test_a_sip_port_in_use_is_a_clear_error() -> None:
    async def scenario() -> None:
        async with user_agent() as (agent, _calls):
            second = SipUserAgent(SipConfig(port=agent.port), lambda call: None)
            with pytest.raises(VoicebotError, match=f"SIP cannot listen on 127.0.0.1:{agent.port}"):
                await second.start()

    run(scenario())
