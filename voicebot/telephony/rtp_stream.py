"""One call's RTP socket: bound to a port of the configured range, talking only to the negotiated peer."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import cast

from voicebot.config import SipConfig
from voicebot.telephony.rtp import RtpError, RtpPacket
from voicebot.telephony.sdp import AudioOffer

log = logging.getLogger("voicebot.sip")
PORT_TRIES = 50


class RtpStream(asyncio.DatagramProtocol):
    """Packets go to :attr:`on_packet` only from the negotiated peer: the host its SDP names or the
    host that signalled the call. The first such packet latches its source, from then on the only
    one accepted and where we send (symmetric RTP: a phone behind NAT, or one whose SDP names an
    address it does not send from, is still heard). Everything else, and what is not RTP, is
    dropped and counted."""

    def __init__(self, offer: AudioOffer, signalling_host: str) -> None:
        self.remote = (offer.address, offer.port)
        self.hosts = {offer.address, signalling_host}
        self.latched = False
        self.on_packet: Callable[[RtpPacket], None] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.received = 0
        self.rejected = 0
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, peer: tuple[str, int]) -> None:
        peer = peer[:2]
        if peer != self.remote and (self.latched or peer[0] not in self.hosts):
            self.rejected += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.rejected += 1
            return
        self.received += 1
        self.remote, self.latched = peer, True
        if self.on_packet is not None:
            self.on_packet(packet)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP error: %s", exc)  # e.g. ICMP port unreachable while the peer is not yet up

    def retarget(self, offer: AudioOffer) -> None:
        """A re-INVITE may move the peer's media: latch again."""
        self.remote = (offer.address, offer.port)
        self.hosts.add(offer.address)
        self.latched = False

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, self.remote)
            self.sent += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_rtp_stream(settings: SipConfig, offer: AudioOffer, signalling_host: str) -> RtpStream:
    """Binds an even port in ``rtp_port_min``-``rtp_port_max`` (RTCP's odd one beside it stays free)."""
    loop = asyncio.get_running_loop()
    low, high = settings.rtp_port_min + settings.rtp_port_min % 2, settings.rtp_port_max
    ports = list(range(low, high + 1, 2))
    for port in random.sample(ports, min(PORT_TRIES, len(ports))):
        try:
            _, stream = await loop.create_datagram_endpoint(
                lambda: RtpStream(offer, signalling_host), local_addr=(settings.host, port)
            )
        except OSError:
            continue
        return stream
    raise OSError(f"no free RTP port in {settings.rtp_port_min}-{settings.rtp_port_max}")
