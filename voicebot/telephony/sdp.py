"""SDP offer/answer (RFC 3264) for one audio stream: G.711 at 8 kHz and RFC 4733 telephone-events.

Only what a telephone line needs is read from an offer: the connection address, the audio port,
the payload types with their rtpmap, the direction (hold is ``sendonly`` or ``inactive``) and the
packet time. Anything malformed raises :class:`SdpError`, which the user agent answers with 488.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

STATIC_PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA"}  # RFC 3551: usable without an rtpmap line
CODEC_PAYLOAD_TYPES = {name: pt for pt, name in STATIC_PAYLOAD_TYPES.items()}
TELEPHONE_EVENT_PT = 101  # what we offer; in an answer, the offerer's number is used
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_SDP_BYTES = 8192


class SdpError(ValueError):
    """The session description cannot be used (the reason says why)."""


@dataclass(frozen=True)
class AudioOffer:
    """The audio stream a peer described."""

    address: str
    port: int
    payload_types: tuple[int, ...]
    rtpmap: dict[int, str]  # payload type -> encoding name (upper case), e.g. 101 -> TELEPHONE-EVENT
    direction: str = "sendrecv"
    ptime_ms: int = 20

    @property
    def on_hold(self) -> bool:
        """The peer will not listen to us (RFC 3264 section 8.4: sendonly or inactive)."""
        return self.direction in ("sendonly", "inactive")

    @property
    def telephone_event_pt(self) -> int | None:
        return next((pt for pt in self.payload_types if self.rtpmap.get(pt) == "TELEPHONE-EVENT"), None)

    def codec(self, preferred: list[str]) -> tuple[str, int] | None:
        """The first codec of ours that the peer offers, with its payload type; None: none in common."""
        offered = {self.rtpmap.get(pt, STATIC_PAYLOAD_TYPES.get(pt, "")): pt for pt in self.payload_types}
        return next(((name, offered[name]) for name in preferred if name in offered), None)


def parse(body: bytes) -> AudioOffer:
    if len(body) > MAX_SDP_BYTES:
        raise SdpError("session description too long")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("session description is not UTF-8") from None
    session_address: str | None = None
    media_address: str | None = None
    port: int | None = None
    payload_types: tuple[int, ...] = ()
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    ptime_ms = 20
    in_audio = False
    seen_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            if line:
                raise SdpError(f"not an SDP line: {line[:40]!r}")
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            in_audio = value.startswith("audio ") and not seen_audio
            if in_audio:
                seen_audio = True
                port, payload_types = _media_line(value)
        elif kind == "c" and (in_audio or not seen_audio):
            address = _connection_address(value)
            if in_audio:
                media_address = address
            else:
                session_address = address
        elif kind == "a" and (in_audio or not seen_audio):
            name, _, argument = value.partition(":")
            if name in DIRECTIONS:
                direction = name
            elif name == "rtpmap" and in_audio:
                pt, encoding = _rtpmap(argument)
                rtpmap[pt] = encoding
            elif name == "ptime" and in_audio:
                ptime_ms = _integer(argument, "ptime", 10, 200)
    if port is None:
        raise SdpError("no audio stream offered")
    address = media_address or session_address
    if address is None:
        raise SdpError("no connection address")
    return AudioOffer(address, port, payload_types, rtpmap, direction, ptime_ms)


def _integer(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SdpError(f"{what} is not a number: {text[:20]!r}") from None
    if not low <= value <= high:
        raise SdpError(f"{what} out of range: {value}")
    return value


def _media_line(value: str) -> tuple[int, tuple[int, ...]]:
    fields = value.split()
    if len(fields) < 4 or fields[2] != "RTP/AVP":
        raise SdpError(f"unsupported audio stream: {value[:60]!r}")
    port = _integer(fields[1].split("/")[0], "audio port", 0, 65535)
    return port, tuple(_integer(pt, "payload type", 0, 127) for pt in fields[3:])


def _connection_address(value: str) -> str:
    fields = value.split()
    if len(fields) != 3 or fields[0] != "IN" or fields[1] not in ("IP4", "IP6"):
        raise SdpError(f"unsupported connection line: {value[:60]!r}")
    address = fields[2].split("/")[0]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise SdpError(f"connection address is not an IP address: {address[:40]!r}") from None


def _rtpmap(argument: str) -> tuple[int, str]:
    pt, _, encoding = argument.partition(" ")
    return _integer(pt, "rtpmap payload type", 0, 127), encoding.split("/")[0].strip().upper()


@dataclass(frozen=True)
class LocalAudio:
    """Our side of the stream: where we receive RTP, and the session's identity for the o= line."""

    address: str
    port: int
    session_id: int

    def describe(
        self, codecs: list[tuple[str, int]], telephone_event_pt: int | None, direction: str, version: int
    ) -> bytes:
        ip = "IP6" if ":" in self.address else "IP4"
        pts = [pt for _, pt in codecs] + ([telephone_event_pt] if telephone_event_pt is not None else [])
        lines = [
            "v=0",
            f"o=voicebot {self.session_id} {version} IN {ip} {self.address}",
            "s=voicebot",
            f"c=IN {ip} {self.address}",
            "t=0 0",
            f"m=audio {self.port} RTP/AVP {' '.join(str(pt) for pt in pts)}",
            *(f"a=rtpmap:{pt} {name}/8000" for name, pt in codecs),
        ]
        if telephone_event_pt is not None:
            lines += [
                f"a=rtpmap:{telephone_event_pt} telephone-event/8000",
                f"a=fmtp:{telephone_event_pt} 0-15",
            ]
        lines += ["a=ptime:20", f"a={direction}"]
        return ("\r\n".join(lines) + "\r\n").encode()


def new_session_id() -> int:
    return int(time.time() * 1000) & 0x7FFFFFFF


def answer_direction(offer: AudioOffer) -> str:
    """RFC 3264 section 6.1: the answer mirrors the offer's direction."""
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(offer.direction, offer.direction)


def offered_codecs(preferred: list[str]) -> list[tuple[str, int]]:
    return [(name, CODEC_PAYLOAD_TYPES[name]) for name in preferred]
