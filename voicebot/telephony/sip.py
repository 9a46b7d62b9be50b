"""The SIP user agent (RFC 3261) that answers calls: UDP and TCP, messages parsed by ``sipmessage``.

What it does: INVITE with an SDP offer (G.711) answered 100/180/200 with retransmission of the 200
until the ACK, CANCEL before the answer (487), BYE either way, OPTIONS (trunk pings), re-INVITE
(hold and resume), INFO and RFC 4733 keys, REFER and its NOTIFYs for a blind transfer, digest
authentication of INVITEs. Each answered INVITE becomes an :class:`IncomingCall` for the server,
which runs it as a :class:`~voicebot.telephony.sip_call.SipCall`.

Protection: requests only from ``allowed_peers``; at most ``max_dialogs`` calls and
``max_invites_per_s`` new INVITEs (token bucket), more get 503; at most two TCP connections per
allowed call; a message that does not parse is dropped (UDP) or closes that TCP connection, and
never touches another call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from sipmessage import (
    URI,
    Address,
    AuthChallenge,
    AuthParameters,
    Message,
    Parameters,
    Request,
    Response,
    Via,
)

from voicebot.audio import DTMF_KEYS
from voicebot.config import SipConfig
from voicebot.errors import VoicebotError
from voicebot.telephony import sdp
from voicebot.telephony.rtp_stream import RtpStream, open_rtp_stream

log = logging.getLogger("voicebot.sip")
MAX_MESSAGE_BYTES = 65_535
T1_S = 0.5  # RFC 3261 timers: retransmit after T1, doubling up to T2, give up after 64*T1
T2_S = 4.0
TIMEOUT_S = 64 * T1_S
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REFER"
USER_AGENT = "voicebot"
NONCE_LIFETIME_S = 300
MAX_REMEMBERED_RESPONSES = 2048
BRANCH_MAGIC = "z9hG4bK"
MAX_CALLER_ID = 32
TCP_CONNECTIONS_PER_DIALOG = 2  # more TCP connections than this per allowed call are closed at once
PORT_ZERO_TRIES = 5  # port 0: UDP ports picked until one has its TCP twin free


class Wire:
    """How a message came in, and so how to answer it: a UDP peer, or a TCP connection."""

    transport = "UDP"

    def __init__(self, endpoint: asyncio.DatagramTransport, peer: tuple[str, int]) -> None:
        self.endpoint = endpoint
        self.peer = peer

    def send(self, data: bytes) -> None:
        self.endpoint.sendto(data, self.peer)

    @property
    def reliable(self) -> bool:
        return False


class TcpWire(Wire):
    transport = "TCP"

    def __init__(self, writer: asyncio.StreamWriter, peer: tuple[str, int]) -> None:
        self.writer = writer
        self.peer = peer

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    @property
    def reliable(self) -> bool:
        return True


@dataclass
class Dialog:
    """One call's signalling state, as the user agent answering it keeps it."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_address: Address  # our To, with the tag
    remote_address: Address  # their From
    remote_target: URI  # their Contact: where in-dialog requests go
    route_set: list[Address]
    wire: Wire
    invite: Request
    offer: sdp.AudioOffer
    local_audio: sdp.LocalAudio
    codec: tuple[str, int]
    rtp: RtpStream
    answer_sdp: bytes = b""
    sdp_version: int = 1
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(1 << 16) + 1)
    answered: bool = False
    confirmed: bool = False  # the ACK came
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = "caller_hangup"
    keys: Callable[[str], None] | None = None  # the call's key handler (INFO and RFC 4733)
    hold_changed: Callable[[bool], None] | None = None
    transfer_result: asyncio.Future[int] | None = None
    ack: bytes | None = None  # ours, for a call we placed: sent again if the 200 comes again

    @property
    def telephone_event_pt(self) -> int | None:
        return self.offer.telephone_event_pt

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()


class DialFailed(Exception):
    """A call we placed was not answered: ``result`` is busy, no_answer or failed."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(f"{result}: {reason}")
        self.result = result


DIAL_RESULTS = {
    486: "busy",
    600: "busy",
    408: "no_answer",
    480: "no_answer",
    487: "no_answer",
    603: "no_answer",
}


@dataclass(frozen=True)
class IncomingCall:
    """An answered INVITE, for the server to run as a call."""

    dialog: Dialog
    caller_id: str
    dialled: str


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def caller_id_of(request: Request) -> str:
    """P-Asserted-Identity (a trusted trunk's) before From; the user part, or the display name."""
    for header in ("P-Asserted-Identity", "From"):
        value = request.headers.get(header)
        if not value:
            continue
        try:
            address = Address.parse(value)
        except ValueError:
            continue
        who = address.uri.user or address.name
        if who:
            printable = "".join(ch for ch in who if ch.isprintable())
            return printable[:MAX_CALLER_ID] or "unknown"
    return "unknown"


class SipUserAgent:
    """Listens on UDP and TCP, answers calls and keeps their dialogs (see the module's docstring)."""

    def __init__(self, settings: SipConfig, on_call: Callable[[IncomingCall], None]) -> None:
        self.settings = settings
        self.on_call = on_call
        self.host = settings.advertised_host or settings.host
        self.peers = [ipaddress.ip_network(peer, strict=False) for peer in settings.allowed_peers]
        self.dialogs: dict[str, Dialog] = {}
        self._pending: dict[str, Dialog] = {}  # INVITE branch -> dialog not yet answered
        self._provisional: dict[str, bytes] = {}  # INVITE branch -> its last 1xx, until the final answer
        self._responses: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # for retransmitted requests
        self._client: dict[str, asyncio.Queue[Response]] = {}  # our requests' branches -> their answers
        self._invites = TokenBucket(settings.max_invites_per_s, max(1.0, settings.max_invites_per_s))
        self._secret = secrets.token_bytes(16)
        # Credentials already accepted (nonce, nc, cnonce) -> when: each is good for one call only,
        # so a captured INVITE cannot be replayed. Entries leave when their nonce expires.
        self._used_credentials: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = settings.port
        self.dropped = 0  # messages that did not parse or came from elsewhere, connections refused
        self._connections = 0  # TCP connections open

    # ----- listening ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        agent = self

        class Datagrams(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, peer: tuple[str, int]) -> None:
                assert agent._udp is not None
                agent.received(data, Wire(agent._udp, peer[:2]))

            def error_received(self, exc: Exception) -> None:
                log.debug("SIP UDP error: %s", exc)

        host = self.settings.host
        # Port 0: the system picks a free UDP port, whose TCP twin may be taken; pick again then.
        tries = PORT_ZERO_TRIES if self.settings.port == 0 else 1
        for tried in range(1, tries + 1):
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    Datagrams, local_addr=(host, self.settings.port)
                )
                self.port = self._udp.get_extra_info("sockname")[1]
                self._tcp = await asyncio.start_server(self._tcp_connection, host, self.port)
                break
            except OSError as exc:
                if self._udp is not None:
                    self._udp.close()
                    self._udp = None
                if tried == tries:
                    raise VoicebotError(
                        f"SIP cannot listen on {host}:{self.settings.port}: {exc.strerror}"
                    ) from exc
        log.info("SIP listening on %s:%d (UDP and TCP)", host, self.port)

    async def stop(self) -> None:
        for dialog in list(self.dialogs.values()):
            self.hang_up(dialog, "server_shutdown")
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()

    async def _tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        wire = TcpWire(writer, peer)
        self._connections += 1
        try:
            if (
                not self._allowed(peer[0])
                or self._connections > TCP_CONNECTIONS_PER_DIALOG * self.settings.max_dialogs
            ):
                self.dropped += 1
                return
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_MESSAGE_BYTES:
                    return
                length = _content_length(head)
                if length is None or length > MAX_MESSAGE_BYTES:
                    log.warning("SIP over TCP from %s: bad Content-Length; connection closed", peer[0])
                    return
                body = await reader.readexactly(length) if length else b""
                if not self.received(head + body, wire):
                    return  # on a stream, a message that does not parse leaves us out of step
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._connections -= 1
            writer.close()

    def _allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.peers)

    def received(self, data: bytes, wire: Wire) -> bool:
        """One message; False when it could not be used (dropped, logged)."""
        if not self._allowed(wire.peer[0]):
            self.dropped += 1
            return False
        if data.strip() == b"":
            return True  # CRLF keep-alive (RFC 5626)
        try:
            if len(data) > MAX_MESSAGE_BYTES:
                raise ValueError("message too long")
            message = Message.parse(data)
            if isinstance(message, Request):
                self._request(message, wire)
            else:
                self._response(message)
        except Exception as exc:  # a message we cannot read must not reach any call
            self.dropped += 1
            log.warning("SIP message from %s dropped: %s", wire.peer[0], str(exc)[:120] or type(exc).__name__)
            return False
        return True

    # ----- requests ----------------------------------------------------------------------------

    def _request(self, request: Request, wire: Wire) -> None:
        vias = request.via  # parses: a request without a usable Via cannot be answered
        if not vias:
            raise ValueError("no Via")
        branch = vias[0].parameters.get("branch") or ""
        request.cseq  # noqa: B018 (parses CSeq: raises on a malformed one)
        method = request.method
        if method == "ACK":
            self._ack(request)
            return
        remembered = self._responses.get((branch, method))
        if remembered is None and method == "INVITE":
            remembered = self._provisional.get(branch)  # still being answered: the last 1xx again
        if remembered is not None:
            wire.send(remembered)  # a retransmission: the same answer again
            return
        if method == "INVITE" and not request.to_address.parameters.get("tag"):
            self._invite(request, wire, branch)
        elif method == "CANCEL":
            self._cancel(request, wire, branch)
        elif method == "OPTIONS" and not request.to_address.parameters.get("tag"):
            self._respond(request, wire, 200, "OK", extra={"Allow": ALLOW, "Accept": "application/sdp"})
        elif method in ("INVITE", "BYE", "INFO", "NOTIFY", "OPTIONS"):
            dialog = self.dialogs.get(request.call_id)
            if dialog is None or request.to_address.parameters.get("tag") != dialog.local_tag:
                self._respond(request, wire, 481, "Call/Transaction Does Not Exist")
            else:
                self._in_dialog(dialog, request, wire)
        else:
            self._respond(request, wire, 405, "Method Not Allowed", extra={"Allow": ALLOW})

    def _invite(self, request: Request, wire: Wire, branch: str) -> None:
        # Parsed here, where a malformed header drops the message (see received), not later in the
        # task that answers it.
        request.contact, request.record_route, request.from_address, request.to_address  # noqa: B018
        settings = self.settings
        if len(self.dialogs) + len(self._pending) >= settings.max_dialogs or not self._invites.take():
            self._respond(request, wire, 503, "Service Unavailable", extra={"Retry-After": "5"})
            return
        if settings.digest_users and not self._authenticated(request):
            self._challenge(request, wire)
            return
        try:
            offer = sdp.parse(request.body)
        except sdp.SdpError as exc:
            self._not_acceptable(request, wire, str(exc))
            return
        codec = offer.codec(list(settings.codecs))
        if codec is None or offer.port == 0:
            self._not_acceptable(request, wire, "no codec in common")
            return
        self._provisional[branch] = self._respond(request, wire, 100, "Trying")
        task = asyncio.ensure_future(self._answer(request, wire, branch, offer, codec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, request: Request, wire: Wire, branch: str, offer: sdp.AudioOffer, codec: tuple[str, int]
    ) -> None:
        try:
            contact = request.contact[0].uri if request.contact else request.from_address.uri
            rtp = await open_rtp_stream(self.settings, offer, wire.peer[0])
        except Exception as exc:  # no RTP port free, or an unusable Contact
            log.warning("SIP INVITE from %s refused: %s", wire.peer[0], exc)
            self._provisional.pop(branch, None)
            self._respond(request, wire, 503, "Service Unavailable")
            return
        tag = new_tag()
        dialog = Dialog(
            call_id=request.call_id,
            local_tag=tag,
            remote_tag=request.from_address.parameters.get("tag") or "",
            local_address=_with_tag(request.to_address, tag),
            remote_address=request.from_address,
            remote_target=contact,
            route_set=request.record_route,
            wire=wire,
            invite=request,
            offer=offer,
            local_audio=sdp.LocalAudio(self.host, rtp.port, sdp.new_session_id()),
            codec=codec,
            rtp=rtp,
        )
        self._pending[branch] = dialog
        try:
            if self.settings.answer_delay_ms:
                self._provisional[branch] = self._respond(request, wire, 180, "Ringing", dialog=dialog)
                await asyncio.sleep(self.settings.answer_delay_ms / 1000)
            if branch not in self._pending:  # cancelled while ringing
                rtp.close()
                return
            del self._pending[branch]
            dialog.answer_sdp = self._describe(dialog)
            dialog.answered = True
            self.dialogs[dialog.call_id] = dialog
            ok = self._respond(request, wire, 200, "OK", dialog=dialog, body=dialog.answer_sdp)
            self.on_call(IncomingCall(dialog, caller_id_of(request), request.uri.user or ""))
            await self._retransmit_until_ack(dialog, ok)
        finally:
            self._pending.pop(branch, None)
            self._provisional.pop(branch, None)

    async def _retransmit_until_ack(self, dialog: Dialog, ok: bytes) -> None:
        interval, waited = T1_S, 0.0
        while not dialog.confirmed and not dialog.ended.is_set():
            await asyncio.sleep(interval)
            waited += interval
            if dialog.confirmed or dialog.ended.is_set():
                return
            if waited >= TIMEOUT_S:
                log.warning("SIP call %s: no ACK for the 200; hanging up", dialog.call_id[:40])
                self.hang_up(dialog, "no_ack")
                return
            if not dialog.wire.reliable:
                dialog.wire.send(ok)
            interval = min(interval * 2, T2_S)

    def _describe(self, dialog: Dialog) -> bytes:
        return dialog.local_audio.describe(
            [dialog.codec], dialog.telephone_event_pt, sdp.answer_direction(dialog.offer), dialog.sdp_version
        )

    def _ack(self, request: Request) -> None:
        dialog = self.dialogs.get(request.call_id)
        if dialog is not None:
            dialog.confirmed = True

    def _cancel(self, request: Request, wire: Wire, branch: str) -> None:
        dialog = self._pending.pop(branch, None)
        if dialog is None:
            self._respond(request, wire, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(request, wire, 200, "OK")
        self._respond(dialog.invite, wire, 487, "Request Terminated", dialog=dialog)
        dialog.rtp.close()

    def _in_dialog(self, dialog: Dialog, request: Request, wire: Wire) -> None:
        method = request.method
        if method == "BYE":
            self._respond(request, wire, 200, "OK", dialog=dialog)
            dialog.end("caller_hangup")
            self.forget(dialog)
        elif method == "INVITE":
            self._reinvite(dialog, request, wire)
        elif method == "INFO":
            key = _info_key(request)
            self._respond(request, wire, 200, "OK", dialog=dialog)
            if key is not None and dialog.keys is not None:
                dialog.keys(key)
        elif method == "NOTIFY":
            self._respond(request, wire, 200, "OK", dialog=dialog)
            self._transfer_progress(dialog, request)
        else:
            self._respond(request, wire, 200, "OK", dialog=dialog, extra={"Allow": ALLOW})

    def _reinvite(self, dialog: Dialog, request: Request, wire: Wire) -> None:
        """Hold (sendonly/inactive), resume, or a new media address; a bodiless re-INVITE keeps all."""
        if request.body:
            try:
                offer = sdp.parse(request.body)
            except sdp.SdpError as exc:
                self._not_acceptable(request, wire, str(exc))
                return
            if offer.codec([dialog.codec[0]]) is None:
                self._not_acceptable(request, wire, "the call's codec is gone from the offer")
                return
            held = offer.on_hold
            dialog.offer = offer
            dialog.rtp.retarget(offer)
            dialog.sdp_version += 1
            dialog.answer_sdp = self._describe(dialog)
            if dialog.hold_changed is not None:
                dialog.hold_changed(held)
        if request.contact:
            dialog.remote_target = request.contact[0].uri
        self._respond(request, wire, 200, "OK", dialog=dialog, body=dialog.answer_sdp)

    def _not_acceptable(self, request: Request, wire: Wire, why: str) -> None:
        warning = '399 voicebot "' + why.replace('"', "'")[:80] + '"'
        self._respond(request, wire, 488, "Not Acceptable Here", extra={"Warning": warning})

    def _transfer_progress(self, dialog: Dialog, request: Request) -> None:
        """NOTIFY of a REFER (RFC 3515): a message/sipfrag body with the new call's status line."""
        fragment = request.body.decode("utf-8", "replace").split("\r\n", 1)[0].split()
        if len(fragment) >= 2 and fragment[0] == "SIP/2.0" and fragment[1].isdigit():
            status = int(fragment[1])
            future = dialog.transfer_result
            if status >= 200 and future is not None and not future.done():
                future.set_result(status)

    def _respond(
        self,
        request: Request,
        wire: Wire,
        code: int,
        phrase: str,
        *,
        dialog: Dialog | None = None,
        body: bytes = b"",
        extra: dict[str, str] | None = None,
    ) -> bytes:
        response = Response(code, phrase, body)
        for via in request.headers.getlist("Via"):
            response.headers.add("Via", via)
        to = request.headers["To"]
        if dialog is not None:
            to = str(dialog.local_address) if request.method in ("INVITE", "CANCEL") else to
        elif code > 100 and "tag=" not in to:
            to = str(_with_tag(request.to_address, new_tag()))
        response.headers.add("From", request.headers["From"])
        response.headers.add("To", to)
        response.headers.add("Call-ID", request.call_id)
        response.headers.add("CSeq", request.headers["CSeq"])
        if dialog is not None and request.method == "INVITE" and 100 < code < 300:
            response.headers.add("Contact", f"<{self._contact(dialog.wire)}>")
            for route in request.headers.getlist("Record-Route"):
                response.headers.add("Record-Route", route)
        response.headers.add("Server", USER_AGENT)
        _add_headers_and_body(response, extra)
        data = bytes(response)
        wire.send(data)
        if code >= 200:
            self._remember(request, data)
        return data

    def _remember(self, request: Request, response: bytes) -> None:
        branch = request.via[0].parameters.get("branch") or ""
        self._responses[(branch, request.method)] = response
        while len(self._responses) > MAX_REMEMBERED_RESPONSES:
            self._responses.popitem(last=False)

    @property
    def contact_uri(self) -> str:
        return f"sip:voicebot@{_host(self.host)}:{self.port}"

    def _contact(self, wire: Wire) -> str:
        transport = ";transport=tcp" if wire.transport == "TCP" else ""
        return f"sip:voicebot@{_host(self.host)}:{self.port}{transport}"

    # ----- digest authentication (RFC 2617 / 8760, MD5) -----------------------------------------

    def _nonce(self, issued: int) -> str:
        mac = hmac.new(self._secret, str(issued).encode(), hashlib.sha256).hexdigest()[:16]
        return f"{issued:x}{mac}"

    def _challenge(self, request: Request, wire: Wire) -> None:
        challenge = AuthChallenge(
            "Digest",
            AuthParameters(
                realm=self.settings.realm, nonce=self._nonce(int(time.time())), algorithm="MD5", qop="auth"
            ),
        )
        self._respond(request, wire, 401, "Unauthorized", extra={"WWW-Authenticate": str(challenge)})

    def _authenticated(self, request: Request) -> bool:
        credentials = request.authorization
        if credentials is None or credentials.parameters is None or credentials.scheme.lower() != "digest":
            return False
        p = dict(credentials.parameters.items())
        password = self.settings.digest_users.get(p.get("username", ""))
        nonce = p.get("nonce", "")
        try:
            issued = int(nonce[:-16], 16)
        except ValueError:
            return False
        fresh = hmac.compare_digest(nonce, self._nonce(issued)) and time.time() - issued < NONCE_LIFETIME_S
        if password is None or not fresh or p.get("realm") != self.settings.realm:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{p['username']}:{self.settings.realm}:{password}")
        ha2 = md5(f"{request.method}:{p.get('uri', '')}")
        if p.get("qop") == "auth":
            expected = md5(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}")
        else:
            expected = md5(f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(expected, p.get("response", "")):
            return False
        return self._first_use((nonce, p.get("nc", ""), p.get("cnonce", "")))

    def _first_use(self, credentials: tuple[str, str, str]) -> bool:
        now = time.time()
        used = self._used_credentials
        while used and next(iter(used.values())) < now - NONCE_LIFETIME_S:
            used.popitem(last=False)
        if credentials in used:
            log.warning("SIP digest credentials replayed; refused")
            return False
        used[credentials] = now
        return True

    # ----- our requests in a dialog (BYE, REFER) --------------------------------------------------

    def hang_up(self, dialog: Dialog, reason: str) -> None:
        """Ends the call from our side: BYE once answered (the caller may be gone already)."""
        if dialog.ended.is_set() and dialog.call_id not in self.dialogs:
            return
        dialog.end(reason)
        self.dialogs.pop(dialog.call_id, None)
        dialog.rtp.close()
        if dialog.answered and reason != "caller_hangup":
            self._spawn(self.request(dialog, "BYE"))

    def forget(self, dialog: Dialog) -> None:
        self.dialogs.pop(dialog.call_id, None)
        dialog.rtp.close()

    async def request(
        self, dialog: Dialog, method: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response | None:
        """Sends an in-dialog request and waits for its final response (None: timed out)."""
        dialog.local_cseq += 1
        request = self._outgoing(
            method, dialog.remote_target, dialog, dialog.local_cseq, headers, body, route=dialog.route_set
        )
        return await self._transaction(request, dialog.wire, TIMEOUT_S)

    def _outgoing(
        self,
        method: str,
        target: URI,
        dialog: Dialog | Address,
        cseq: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        route: list[Address] | None = None,
        to: Address | None = None,
        wire: Wire | None = None,
        of: Request | None = None,
    ) -> Request:
        """A request of ours: in a dialog, or (``dialog`` our From address) starting one; ``of``: the
        INVITE whose transaction a CANCEL or a non-2xx ACK belongs to (its Call-ID and branch)."""
        wire = dialog.wire if isinstance(dialog, Dialog) else wire
        assert wire is not None
        request = Request(method, target, body)
        if of is not None:
            request.headers.add("Via", of.headers["Via"])
        else:
            via = Via(
                wire.transport, _host(self.host), self.port, Parameters(branch=new_branch(), rport=None)
            )
            request.headers.add("Via", str(via))
        for hop in route or []:
            request.headers.add("Route", str(hop))
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", str(dialog.local_address if isinstance(dialog, Dialog) else dialog))
        request.headers.add("To", str(dialog.remote_address if isinstance(dialog, Dialog) else to))
        call_id = dialog.call_id if isinstance(dialog, Dialog) else of.call_id if of else None
        request.headers.add("Call-ID", call_id or secrets.token_hex(12) + "@voicebot")
        request.headers.add("CSeq", f"{cseq} {method}")
        request.headers.add("Contact", f"<{self._contact(wire)}>")
        request.headers.add("User-Agent", USER_AGENT)
        _add_headers_and_body(request, headers)
        return request

    async def _transaction(self, request: Request, wire: Wire, final_within_s: float) -> Response | None:
        """Sends ``request``, again at T1, 2*T1 ... T2 until any answer (UDP), then waits for the
        final one up to ``final_within_s``; None when none came."""
        branch = request.via[0].parameters.get("branch") or ""
        answers: asyncio.Queue[Response] = asyncio.Queue()
        self._client[branch] = answers
        data = bytes(request)
        loop = asyncio.get_running_loop()
        deadline, interval, answered = loop.time() + final_within_s, T1_S, False
        try:
            wire.send(data)
            while (remaining := deadline - loop.time()) > 0:
                wait = remaining if answered or wire.reliable else min(interval, remaining)
                try:
                    response = await asyncio.wait_for(answers.get(), wait)
                except asyncio.TimeoutError:
                    if not answered and not wire.reliable:
                        wire.send(data)
                        interval = min(interval * 2, T2_S)
                    continue
                if response.code >= 200:
                    return response
                answered = True  # provisional: no more retransmissions, wait for the final answer
            return None
        finally:
            self._client.pop(branch, None)

    def _response(self, response: Response) -> None:
        vias = response.via
        branch = vias[0].parameters.get("branch") if vias else None
        answers = self._client.get(branch or "")
        if answers is not None:
            answers.put_nowait(response)
        elif response.code < 300 and response.cseq.method == "INVITE":
            dialog = self.dialogs.get(response.call_id)
            if dialog is not None and dialog.ack is not None:
                dialog.wire.send(dialog.ack)  # our ACK was lost: the 200 came again

    # ----- our calls out (callbacks) ----------------------------------------------------------------

    async def dial(
        self, target: str, caller_id: str, ring_timeout_s: float, headers: dict[str, str] | None = None
    ) -> Dialog:
        """Calls ``target`` (a sip: URI, over UDP) and returns the answered dialog with its RTP
        socket; :class:`DialFailed` says why not (busy, no answer, refused, unreachable)."""
        if self._udp is None:
            raise DialFailed("failed", "SIP is not listening")
        uri = URI.parse(target)
        peer = (await asyncio.get_running_loop().getaddrinfo(uri.host, uri.port or 5060))[0][4][:2]
        wire = Wire(self._udp, (peer[0], peer[1]))
        rtp = await open_rtp_stream(self.settings, sdp.AudioOffer(peer[0], 9, (), {}), peer[0])
        local_audio = sdp.LocalAudio(self.host, rtp.port, sdp.new_session_id())
        codecs = sdp.offered_codecs(list(self.settings.codecs))
        body = local_audio.describe(codecs, sdp.TELEPHONE_EVENT_PT, "sendrecv", 1)
        tag = new_tag()
        local = Address(
            URI("sip", _host(self.host), user=caller_id, port=self.port), parameters=Parameters(tag=tag)
        )
        invite = self._outgoing("INVITE", uri, local, 1, headers, body, to=Address(uri), wire=wire)
        try:
            response = await self._transaction(invite, wire, ring_timeout_s)
            if response is None:
                cancel = self._outgoing("CANCEL", uri, local, 1, to=Address(uri), wire=wire, of=invite)
                self._spawn(self._transaction(cancel, wire, TIMEOUT_S))
                raise DialFailed("no_answer", f"no answer within {ring_timeout_s:.0f} s")
            if response.code >= 300:
                wire.send(self._ack_for(invite, response, uri, wire))
                raise DialFailed(
                    DIAL_RESULTS.get(response.code, "failed"), f"{response.code} {response.phrase}"
                )
            answer = sdp.parse(response.body)
            codec = answer.codec([name for name, _ in codecs])
            if codec is None:
                raise DialFailed("failed", "the answer has none of our codecs")
        except BaseException:
            rtp.close()
            raise
        rtp.retarget(answer)
        contact = response.contact[0].uri if response.contact else uri
        dialog = Dialog(
            call_id=invite.call_id,
            local_tag=tag,
            remote_tag=response.to_address.parameters.get("tag") or "",
            local_address=local,
            remote_address=response.to_address,
            remote_target=contact,
            route_set=list(reversed(response.record_route)),
            wire=wire,
            invite=invite,
            offer=answer,
            local_audio=local_audio,
            codec=codec,
            rtp=rtp,
            answered=True,
            confirmed=True,
        )
        dialog.ack = self._ack_for(invite, response, contact, wire, dialog.route_set)
        self.dialogs[dialog.call_id] = dialog
        wire.send(dialog.ack)
        return dialog

    def _ack_for(
        self, invite: Request, response: Response, target: URI, wire: Wire, route: list[Address] | None = None
    ) -> bytes:
        """RFC 3261 17.1.1.3 / 13.2.2.4: a failure's ACK is in the INVITE's transaction (its branch),
        a 2xx's ACK is a request of its own to the callee's Contact."""
        of = invite if response.code >= 300 else None
        ack = self._outgoing("ACK", target, invite.from_address, invite.cseq.sequence, to=response.to_address,
                             route=route, wire=wire, of=of)  # fmt: skip
        if of is None:
            ack.headers.set("Call-ID", invite.call_id)
        return bytes(ack)

    def _spawn(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _add_headers_and_body(message: Request | Response, headers: dict[str, str] | None) -> None:
    """The last headers of a message we send: the caller's extra ones, then the body's (our bodies
    are always SDP)."""
    for name, value in (headers or {}).items():
        message.headers.add(name, value)
    if message.body:
        message.headers.add("Content-Type", "application/sdp")
    message.headers.add("Content-Length", str(len(message.body)))


def _with_tag(address: Address, tag: str) -> Address:
    return Address(address.uri, address.name, address.parameters.replace(tag=tag))


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"content-length", b"l"):
            try:
                length = int(value.strip())
            except ValueError:
                return None
            return length if length >= 0 else None
    return 0


def _info_key(request: Request) -> str | None:
    """SIP INFO keys: application/dtmf-relay (``Signal=5``) or application/dtmf (``5``)."""
    content_type = request.headers.get("Content-Type", "") or ""
    text = request.body.decode("utf-8", "replace").strip()
    if "dtmf-relay" in content_type:
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return None
    elif "application/dtmf" not in content_type:
        return None
    return text if text in DTMF_KEYS else None
