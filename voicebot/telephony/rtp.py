"""RTP (RFC 3550) for one G.711 stream: packets, a jitter buffer, RFC 4733 telephone-events.

The packet header is 12 fixed bytes and RTP libraries on PyPI bring whole WebRTC stacks, so it is
read and written here; G.711 itself comes from ``voicebot.audio.codecs``.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

from voicebot.audio.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

HEADER = struct.Struct("!BBHII")
RTP_VERSION = 2
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz
MAX_PAYLOAD_BYTES = 1500
DTMF_EVENT_KEYS = "0123456789*#"  # RFC 4733 events 0-11; A-D and others are not keypad keys here
SEQ_MODULO = 1 << 16
Payload = TypeVar("Payload")  # what a jitter buffer holds per packet (the SIP call: audio and arrival)

DECODERS = {"PCMU": ulaw_decode, "PCMA": alaw_decode}
ENCODERS = {"PCMU": ulaw_encode, "PCMA": alaw_encode}


class RtpError(ValueError):
    """Not an RTP packet we can use."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < HEADER.size:
            raise RtpError(f"RTP packet too short ({len(data)} bytes)")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError("not RTP version 2")
        offset = HEADER.size + 4 * (first & 0x0F)  # CSRC list
        if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
            if len(data) < offset + 4:
                raise RtpError("truncated RTP header extension")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20:  # padding: the last byte counts it
            if end <= offset or data[-1] == 0 or data[-1] > end - offset:
                raise RtpError("bad RTP padding")
            end -= data[-1]
        if end < offset:
            raise RtpError("truncated RTP packet")
        payload = data[offset:end]
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise RtpError("RTP payload too long")
        return cls(second & 0x7F, sequence, timestamp, ssrc, payload, bool(second & 0x80))

    def __bytes__(self) -> bytes:
        second = (0x80 if self.marker else 0) | self.payload_type
        return HEADER.pack(RTP_VERSION << 6, second, self.sequence, self.timestamp, self.ssrc) + self.payload


class RtpSender:
    """Numbers our packets: random initial sequence, timestamp and SSRC (RFC 3550 section 5.1)."""

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self.ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._marker = True  # the first packet of a talk spurt

    def packet(self, payload: bytes) -> bytes:
        packet = RtpPacket(
            self.payload_type, self._sequence, self._timestamp, self.ssrc, payload, self._marker
        )
        self._marker = False
        self._sequence = (self._sequence + 1) % SEQ_MODULO
        self._timestamp = (self._timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF
        return bytes(packet)

    def skip(self) -> None:
        """20 ms with nothing sent (the caller holds): time moves on, the next packet starts a spurt."""
        self._timestamp = (self._timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF
        self._marker = True


def _ahead(sequence: int, of: int) -> int:
    """How many packets ``sequence`` is after ``of``, modulo 2^16 (negative: before)."""
    diff = (sequence - of) % SEQ_MODULO
    return diff - SEQ_MODULO if diff >= SEQ_MODULO // 2 else diff


class JitterBuffer(Generic[Payload]):
    """Puts one stream's payloads back in order and releases one per 20 ms tick.

    Playout starts once ``depth`` packets are buffered, so a packet overtaken by up to ``depth - 1``
    later ones is still in time. A packet missing at its turn is lost: the last audio is repeated
    once (more repeats would buzz), then silence. A packet older than the last one played is dropped.
    When the buffer runs dry (the sender paused or stalled) it prefills again, which keeps the delay
    at ``depth`` packets instead of letting it grow; a jump of more than ``resync`` packets (a new
    stream) restarts it. More than ``capacity`` packets waiting means playout fell behind: the
    oldest are dropped down to ``depth``.
    """

    def __init__(self, depth: int = 3, capacity: int = 10, resync: int = 100) -> None:
        self.depth = depth
        self.capacity = capacity
        self.resync = resync
        self._packets: dict[int, Payload] = {}
        self._next: int | None = None  # sequence number to play next; None: prefilling
        self._played: int | None = None
        self._last: Payload | None = None  # the last payload played, for one concealment copy
        self.lost = 0
        self.late = 0
        self.skipped = 0  # dropped to catch up when playout fell behind (the buffer overflowed)

    def __len__(self) -> int:
        """Packets waiting to be played."""
        return len(self._packets)

    def push(self, sequence: int, payload: Payload) -> None:
        if self._played is not None:
            ahead = _ahead(sequence, self._played)
            if ahead > self.resync:
                self._packets.clear()
                self._next = self._played = None
            elif ahead <= 0:
                self.late += 1
                return
        self._packets[sequence] = payload
        if len(self._packets) > self.capacity:
            # Playout fell behind the sender (the tick was held up): drop the oldest audio down to the
            # normal depth rather than keep a growing delay.
            while len(self._packets) > self.depth:
                self._packets.pop(self._oldest())
                self.skipped += 1
            self._next = self._oldest()

    def pop(self) -> Payload | None:
        """The next payload in order, a concealment copy of the last one, or None (nothing to play)."""
        if self._next is None:
            if len(self._packets) < self.depth:
                return None
            self._next = self._oldest()
        if not self._packets:
            self._next = None
            return None
        sequence = self._next
        self._next = (sequence + 1) % SEQ_MODULO
        self._played = sequence
        payload = self._packets.pop(sequence, None)
        if payload is None:
            self.lost += 1
            concealment, self._last = self._last, None
            return concealment
        self._last = payload
        return payload

    def _oldest(self) -> int:
        reference = next(iter(self._packets)) if self._played is None else self._played
        return min(self._packets, key=lambda sequence: _ahead(sequence, reference))


@dataclass
class TelephoneEvents:
    """RFC 4733: one key per event; an event's packets share a timestamp, its end is sent 3 times."""

    payload_type: int
    _last_timestamp: int | None = None

    def key(self, packet: RtpPacket) -> str | None:
        if len(packet.payload) < 4 or packet.timestamp == self._last_timestamp:
            return None
        event = packet.payload[0]
        self._last_timestamp = packet.timestamp
        return DTMF_EVENT_KEYS[event] if event < len(DTMF_EVENT_KEYS) else None
