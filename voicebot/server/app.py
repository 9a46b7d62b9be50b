"""The aiohttp application: pages, the media and agent WebSockets, the dashboard API, metrics, reload."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from voicebot.config import Config, ServerConfig
from voicebot.dialogue.actions import ActionContext
from voicebot.engines import Engines, reload_engines
from voicebot.handoff.record import HandoffRecord
from voicebot.server.agent_figures import agent_figures
from voicebot.server.alerts import AlertCollector, queue_alerts
from voicebot.server.auth import (
    SESSION_COOKIE,
    LoginLimiter,
    SessionStore,
    SignedTokens,
    WebSession,
    check_password,
    same_secret,
)
from voicebot.server.call_records import RecordKeeper
from voicebot.server.callbacks import CallbackDialer
from voicebot.server.caller_leg import CallerLeg
from voicebot.server.contact_center import AgentDesk, ContactCenter
from voicebot.server.desk_labels import catalog, desk_texts, language_names
from voicebot.server.external_leg import ExternalTransferLeg, ReferTransferLeg
from voicebot.server.history import caller_history
from voicebot.server.kpis import KpiCollector, compute_kpis, erlang_c_forecast
from voicebot.server.loop_lag import LoopLagMonitor
from voicebot.server.media_door import MediaDoor
from voicebot.server.pbx_bridge import PbxBridgeLeg
from voicebot.storage import SqliteStorage, Storage
from voicebot.telephony.audiosocket import AudioSocketServer
from voicebot.telephony.sip import IncomingCall, SipUserAgent
from voicebot.telephony.sip_call import SipCall
from voicebot.transports.line import CallOwner, LiveCall, ProtocolViolation, protocol_failures
from voicebot.transports.websocket import (
    WS_MAX_MSG_SIZE,
    CappedWebSocketResponse,
    MediaCall,
    audio_frames,
    parse_control,
)

log = logging.getLogger("voicebot.server")
STATIC = Path(__file__).parent / "static"
# Pages are Jinja2 templates, escaped on output; a value a page needs but is not given is an error.
PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("voicebot.server", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
LOGIN_CSRF_COOKIE = "voicebot_login_csrf"
DEFAULT_WINDOW_S = 3600
SHUTDOWN_WAIT_TICKS = 100  # of 50 ms: how long a stop waits for the media calls to record their end
# Every response but a WebSocket's: no framing, no sniffing, no referrer, and a policy that lets pages
# load only this server's own scripts, styles and images and talk only to it (scripts are files in
# static/, none inline; the desk's texts are a JSON data block, which is not run).
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'{sockets}; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def content_security_policy(request: web.Request) -> str:
    # connect-src 'self' covers same-origin WebSockets only in newer browsers: name them too.
    host = request.host
    sockets = f" ws://{host} wss://{host}" if PLAIN_HOST.fullmatch(host) else ""
    return CONTENT_SECURITY_POLICY.format(sockets=sockets)


def render_page(name: str, **values: Any) -> str:
    return PAGES.get_template(name).render(**values)


def storage_path(config: Config) -> Path:
    return config.path(config.data_dir) / "voicebot.sqlite"


def admin_token_path(config: Config) -> Path:
    return config.path(config.data_dir) / "server" / "admin.token"


def media_token_key_path(config: Config) -> Path:
    return config.path(config.data_dir) / "server" / "media-token.key"


def handoff_token_path(config: Config) -> Path:
    return config.path(config.data_dir) / "server" / "handoff-api.token"


def write_private(path: Path, text: str) -> None:
    """Writes a file only this user may read (0600, also when it was there before)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def lasting_token(path: Path) -> str:
    """The token kept in ``path``, made the first time: a PBX configured with it stays valid across
    restarts (delete the file to change it)."""
    token = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    if not token:
        token = secrets.token_urlsafe(32)
        write_private(path, token)
    return token


class VoicebotServer:
    def __init__(self, engines: Engines, settings: ServerConfig, storage: Storage | None = None) -> None:
        self.config = engines.config
        self.engines = engines
        self.settings = settings
        self.storage: Storage = storage or SqliteStorage(storage_path(self.config))
        retention = settings.call_retention_days
        # Calls' traces as they happen, crash recovery, retention.
        self.records = RecordKeeper(
            self.storage, retention_s=None if retention is None else retention * 86400
        )
        self.center = ContactCenter(self.storage, settings.offer_timeout_s, pop_extras=self._pop_extras)
        self.sessions = SessionStore(
            self.storage, settings.session_idle_timeout_s, settings.session_lifetime_s
        )
        self.limiter = LoginLimiter()
        self.admin_token = secrets.token_urlsafe(32)
        self.handoff_token = lasting_token(handoff_token_path(self.config))
        # Its key is kept, so that a softphone page loaded before a restart can still call.
        media_tokens = SignedTokens(lasting_token(media_token_key_path(self.config)), "media")
        self.media_door = MediaDoor(settings, media_tokens)
        self.reloads = 0
        self._reload_lock = asyncio.Lock()
        self.media_calls: set[MediaCall] = set()
        self.loop_lag = LoopLagMonitor()
        audiosocket = self.config.telephony.audiosocket
        self.audiosocket = (
            AudioSocketServer(
                audiosocket, lambda: self.engines, lambda engines: ExternalTransferLeg(self.storage, engines)
            )
            if audiosocket.enabled
            else None
        )
        self.sip: SipUserAgent | None = None
        self.sip_calls: set[SipCall] = set()
        self._call_tasks: set[asyncio.Task[None]] = set()
        self._dialer: asyncio.Task[None] | None = None  # callbacks dialled out over SIP

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._security_headers], client_max_size=64 * 1024)
        app.router.add_get("/", self.softphone_page)
        app.router.add_get("/media", self.media)
        app.router.add_get("/media/token", self.media_token)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self._require("agent", self.logout))
        app.router.add_get("/agent", self._require("agent", self.agent_page))
        app.router.add_get("/agent/ws", self._require("agent", self.agent_socket))
        app.router.add_get("/supervisor/ws", self._require("supervisor", self.supervisor_socket))
        app.router.add_get("/dashboard", self._require("supervisor", self._page("dashboard.html")))
        app.router.add_get("/api/dashboard", self._require("supervisor", self.dashboard_data))
        app.router.add_get("/api/handoffs/{call_id}", self.handoff_record)
        app.router.add_post("/admin/reload", self.reload)
        app.router.add_static("/static", STATIC)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _: web.Application) -> None:
        # Private: only this user (the one who runs `voicebot reload`) may read it.
        write_private(admin_token_path(self.config), self.admin_token)
        purged = self.sessions.purge()  # the sessions that expired while the server was down
        if purged:
            log.info("deleted %d expired web sessions", purged)
        self.records.start()  # first: it closes what a killed run left open
        self.center.start()
        self.loop_lag.start()
        if self.audiosocket is not None:
            await self.audiosocket.start()
        sip = self.config.telephony.sip
        if sip.enabled:
            self.sip = SipUserAgent(sip, self._sip_call)
            await self.sip.start()
            if sip.callback_uri:
                dialer = CallbackDialer(self.center, self.storage, lambda: self.engines, self.sip, sip)
                self._dialer = asyncio.create_task(dialer.run_forever())

    async def _on_shutdown(self, _: web.Application) -> None:
        if self.audiosocket is not None:
            await self.audiosocket.stop()  # its calls hung up and recorded before storage closes
        # Closing the sockets lets each call finish its bookkeeping before storage closes.
        desks = [*self.center.desks.values(), *self.center.supervisors.values()]
        sockets = [call.ws for call in self.media_calls] + [desk.ws for desk in desks]
        for ws in sockets:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        for _ in range(SHUTDOWN_WAIT_TICKS):  # the media calls' handlers finish their bookkeeping
            if not self.media_calls:
                break
            await asyncio.sleep(0.05)
        if self._dialer is not None:
            self._dialer.cancel()
        if self.sip is not None:
            await self.sip.stop()
            await asyncio.gather(*self._call_tasks, return_exceptions=True)

    async def _on_cleanup(self, _: web.Application) -> None:
        self.loop_lag.stop()
        await self.center.stop()
        await self.records.stop()
        self.storage.close()

    @web.middleware
    async def _security_headers(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The security headers on every response, errors (401, 403, 404, 429, redirects, 500) included."""
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # an error or redirect is a response too
            exc.headers.update(SECURITY_HEADERS)
            exc.headers["Content-Security-Policy"] = content_security_policy(request)
            raise
        except Exception:  # what aiohttp would answer, with the headers
            log.exception("error handling %s %s", request.method, request.path)
            response = web.HTTPInternalServerError()
        if not isinstance(response, web.WebSocketResponse) and not response.prepared:
            response.headers.update(SECURITY_HEADERS)
            response.headers["Content-Security-Policy"] = content_security_policy(request)
        return response

    # ----- auth ----------------------------------------------------------------------------------

    def web_session(self, request: web.Request) -> WebSession | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def _require(
        self, role: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = self.web_session(request)
            if session is None:
                if request.method == "GET" and request.path in ("/agent", "/dashboard"):
                    raise web.HTTPFound(f"/login?next={request.path}")
                raise web.HTTPUnauthorized(text="log in first")
            if not session.has_role(role):
                raise web.HTTPForbidden(text=f"needs role {role}")
            if request.method == "POST" and not self._csrf_ok(request, session):
                raise web.HTTPForbidden(text="missing or wrong CSRF token")
            if request.headers.get("Upgrade", "").lower() == "websocket" and not self._same_origin(request):
                raise web.HTTPForbidden(text="cross-origin WebSocket")
            request["web_session"] = session
            return await handler(request)

        return guarded

    @staticmethod
    def _csrf_ok(request: web.Request, session: WebSession) -> bool:
        return same_secret(request.headers.get("X-CSRF-Token", ""), session.csrf_token)

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    def _set_cookie(self, response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
        # Secure is set whenever the page came over TLS; plain http is only for loopback development.
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
            max_age=int(self.settings.session_lifetime_s),
        )

    async def login_form(self, request: web.Request) -> web.Response:
        token = secrets.token_urlsafe(32)
        response = web.Response(text=render_page("login.html", csrf=token), content_type="text/html")
        self._set_cookie(response, request, LOGIN_CSRF_COOKIE, token)
        return response

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie_token or not same_secret(str(form.get("csrf", "")), cookie_token):
            raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the login page")
        address = request.remote or "?"
        wait_s = self.limiter.wait_s(address, username, time.time())
        if wait_s > 0:
            raise web.HTTPTooManyRequests(
                text="too many failed logins; try again later",
                headers={"Retry-After": str(math.ceil(wait_s))},
            )
        # Counted before the check (taken back on success): parallel guesses cannot all slip through
        # while the hash runs, in a thread (tens of ms: calls keep flowing); unknown names are hashed too.
        self.limiter.failed(address, username, time.time())
        account = self.storage.get_agent(username)
        valid = await asyncio.to_thread(check_password, account, password)
        if account is None or not valid:
            log.warning("failed login for %r from %s", username[:64], address)
            raise web.HTTPUnauthorized(text="wrong username or password")
        self.limiter.succeeded(address, username)
        session = self.sessions.create(account)
        target = str(request.query.get("next", ""))
        if target not in ("/agent", "/dashboard"):
            target = "/dashboard" if session.has_role("supervisor") else "/agent"
        response = web.HTTPFound(target)
        self._set_cookie(response, request, SESSION_COOKIE, session.token)
        response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.end(request["web_session"].token)
        response = web.json_response({"ok": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def _page(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def page(request: web.Request) -> web.Response:
            session: WebSession | None = request.get("web_session")
            html = render_page(
                name,
                csrf=session.csrf_token if session else "",
                username=session.username if session else "",
            )
            return web.Response(text=html, content_type="text/html")

        return page

    async def agent_page(self, request: web.Request) -> web.Response:
        """The desk in the agent's UI language (its labels, its script's direction), with their skills."""
        session: WebSession = request["web_session"]
        account = self.storage.get_agent(session.username)
        ui_language = account.ui_language if account is not None else "en"
        texts = desk_texts(ui_language, self.config.languages)
        texts["time_zone"] = account.time_zone if account is not None else None
        html = render_page(
            "agent.html",
            csrf=session.csrf_token,
            username=session.username,
            page_language=ui_language,
            page_direction=catalog(ui_language).direction,
            labels=texts["labels"],
            desk_texts=texts,
            speaks=", ".join(language_names(account.languages).values()) if account is not None else "",
            queues=", ".join(account.queues) if account is not None else "",
        )
        return web.Response(text=html, content_type="text/html")

    # ----- media (callers) -------------------------------------------------------------------------

    async def softphone_page(self, request: web.Request) -> web.Response:
        """The caller softphone, with a media token good for ``media_token_ttl_s``."""
        if not self.settings.softphone:
            raise web.HTTPNotFound(text="no softphone here (server.softphone is off)")
        html = render_page(
            "softphone.html",
            languages=list(self.engines.languages),  # served now: a caller may choose one
            default_language=self.config.language,
            media_token=self.media_door.softphone_token(),
            media_token_ttl_s=int(self.settings.media_token_ttl_s),
        )
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def media_token(self, request: web.Request) -> web.Response:
        """A fresh softphone token, for a page open longer than its token lasts (same-origin only: the
        answer has no CORS headers, so another site's page cannot read it)."""
        if not self.settings.softphone:
            raise web.HTTPNotFound(text="no softphone here (server.softphone is off)")
        body = {"token": self.media_door.softphone_token(), "ttl_s": int(self.settings.media_token_ttl_s)}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def media(self, request: web.Request) -> web.WebSocketResponse:
        """A caller's connection, once the door lets it in (otherwise 403 or 503, before the upgrade)."""
        with self.media_door.admit(request):
            return await self._media_call(request)

    async def _media_call(self, request: web.Request) -> web.WebSocketResponse:
        ws = CappedWebSocketResponse(max_msg_size=WS_MAX_MSG_SIZE, heartbeat=20)
        await ws.prepare(request)
        engines = self.engines  # a reload during the call leaves both sides of it on these
        call = MediaCall(ws, engines, self._queue_leg(engines))
        self.media_calls.add(call)
        try:
            await call.run()
        except Exception:  # one broken call must not take the server down
            log.exception("media call failed")
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        finally:
            self.media_calls.discard(call)
        return ws

    @property
    def live_calls(self) -> int:
        """Calls up now on every line: media WebSocket, SIP and AudioSocket."""
        audiosocket = len(self.audiosocket.calls) if self.audiosocket is not None else 0
        return len(self.media_calls) + len(self.sip_calls) + audiosocket

    def _queue_leg(self, engines: Engines) -> CallerLeg:
        """The built-in contact centre's side of a call: its records, then the queue and an agent."""
        return CallerLeg(self.center, self.storage, engines, int(self.settings.announce_interval_s * 1000))

    def _sip_call(self, incoming: IncomingCall) -> None:
        assert self.sip is not None
        engines = self.engines
        leg: CallOwner
        settings = self.config.telephony.sip
        queue = self._queue_leg(engines)
        if settings.escalation == "contact_center":
            leg = queue
        elif settings.transfer_method == "invite":
            leg = PbxBridgeLeg(queue, engines, self.sip, settings)  # we call the PBX and bridge
        else:
            assert settings.transfer_uri is not None
            leg = ReferTransferLeg(queue, self.sip, incoming.dialog, settings.transfer_uri)
        call = SipCall(engines, leg, incoming, self.sip)
        self.sip_calls.add(call)
        task = asyncio.create_task(self._run_call(call, self.sip_calls))
        self._call_tasks.add(task)
        task.add_done_callback(self._call_tasks.discard)

    @staticmethod
    async def _run_call(call: LiveCall, calls: set[Any]) -> None:
        try:
            await call.run()
        except Exception:  # one broken call must not take the server down
            log.exception("%s failed", type(call).__name__)
        finally:
            calls.discard(call)

    # ----- agent desk ----------------------------------------------------------------------------

    def _pop_extras(self, record: HandoffRecord) -> dict[str, Any]:
        """What the screen pop shows besides the record: the caller's earlier contacts, and for an
        authenticated caller the backend's view of them (the actions plugin's customer panel)."""
        history = caller_history(
            self.storage,
            call_id=record.call_id,
            caller_id=record.caller_id,
            account_key=record.account_key,
            now=time.time(),
        )
        context = ActionContext(
            slots={}, caller_id=record.caller_id, account=record.account, language=record.language
        )
        panel = self.engines.actions.customer_panel(context)
        return {"history": history, "customer": panel.to_dict() if panel is not None else None}

    def transfer_targets(self, username: str) -> dict[str, Any]:
        """Where an agent may transfer a call: the flow's queues and the other agents signed in."""
        flow = self.engines.flow
        queues = sorted({flow.default_queue, *flow.queues.values()})
        agents = [
            {"username": seat["username"], "state": seat["state"], "languages": seat["languages"]}
            for seat in self.center.snapshot()["agents"]
            if seat["username"] != username
        ]
        return {"type": "transfer_targets", "queues": queues, "agents": agents}

    async def agent_socket(self, request: web.Request) -> web.WebSocketResponse:
        async def opened(desk: AgentDesk) -> None:
            await self.center.desk_connected(desk)
            await desk.send({"type": "settings", "wrap_up_limit_s": self.settings.wrap_up_limit_s})

        return await self._desk_socket(
            request, opened, self.center.talking, self._desk_command, self.center.desk_disconnected
        )

    async def supervisor_socket(self, request: web.Request) -> web.WebSocketResponse:
        """A supervisor's live view: the calls and agents as they change, and the call they monitor,
        whisper to or barged into (its audio both ways, its live transcript)."""
        return await self._desk_socket(
            request,
            self.center.supervisor_connected,
            lambda username: self.center.supervising(username) is not None,
            self._supervisor_command,
            self.center.supervisor_disconnected,
        )

    async def _desk_socket(
        self,
        request: web.Request,
        opened: Callable[[AgentDesk], Awaitable[None]],
        on_a_call: Callable[[str], bool],
        command: Callable[[AgentDesk, dict[str, Any]], Awaitable[None]],
        closed: Callable[[AgentDesk], Awaitable[None]],
    ) -> web.WebSocketResponse:
        """An agent's or supervisor's desk connection: commands as JSON, their microphone's audio
        taken while they are ``on_a_call``; its session kept seen while it is open."""
        session: WebSession = request["web_session"]
        ws = CappedWebSocketResponse(max_msg_size=WS_MAX_MSG_SIZE, heartbeat=20)
        await ws.prepare(request)
        desk = AgentDesk(session.username, ws)
        await opened(desk)
        keeper = asyncio.create_task(self._keep_session_seen(session, ws))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    if on_a_call(desk.username):
                        desk.inbound.extend(audio_frames(msg.data))
                elif msg.type == WSMsgType.TEXT:
                    await command(desk, parse_control(msg.data))
                else:
                    break
        except ProtocolViolation as exc:
            log.warning("%s's desk closed: %s", desk.username, exc)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=str(exc).encode()[:120])
        finally:
            keeper.cancel()
            await closed(desk)
        return ws

    async def _keep_session_seen(self, session: WebSession, ws: web.WebSocketResponse) -> None:
        """An open desk is an agent at work: its session stays seen while it is open (it does not
        idle out), and the desk closes once the session has ended (a logout elsewhere, its lifetime)."""
        while not ws.closed:
            await asyncio.sleep(self.sessions.touch_interval_s)
            if self.sessions.get(session.token) is None:
                # Said in a message: a close code given here can lose the race with aiohttp's own close.
                await ws.send_json({"type": "signed_out"})  # the page goes to the login
                await ws.close(message=b"signed out")

    async def _desk_command(self, desk: AgentDesk, message: dict[str, Any]) -> None:
        kind, name, center = message["type"], desk.username, self.center
        try:
            if kind in ("ready", "not_ready"):
                await center.set_ready(name, kind == "ready")
            elif kind == "accept":
                await center.accept(name, str(message.get("call_id", "")))
            elif kind in ("hold", "resume"):
                await center.hold(name, kind == "hold")
            elif kind in ("mute", "unmute"):
                await center.mute(name, kind == "mute")
            elif kind == "hangup":
                await center.agent_hangup(name)
            elif kind == "transfer_targets":
                await desk.send(self.transfer_targets(name))
            elif kind == "transfer":
                queue = str(message["queue"]) if message.get("queue") else None
                if queue is not None and queue not in self.transfer_targets(name)["queues"]:
                    raise ValueError(f"there is no queue '{queue[:40]}'")
                await center.transfer(
                    name,
                    mode=str(message.get("mode", "")),
                    note=str(message.get("note", "")),
                    queue=queue,
                    agent=str(message["agent"]) if message.get("agent") else None,
                )
            elif kind == "complete_transfer":
                await center.complete_transfer(name)
            elif kind == "cancel_transfer":
                await center.cancel_transfer(name)
            elif kind == "request_supervisor":
                await center.request_supervisor(name)
            elif kind == "wrap_up":
                disposition, notes = str(message.get("disposition", "")), str(message.get("notes", ""))
                await center.wrap_up(name, disposition, notes)
            else:
                raise ProtocolViolation(f"unknown message type '{kind[:32]}'")
        except (ValueError, KeyError) as exc:  # a stale click (offer gone, call over): tell, don't close
            await desk.send({"type": "error", "message": str(exc)})

    async def _supervisor_command(self, desk: AgentDesk, message: dict[str, Any]) -> None:
        kind = message["type"]
        try:
            if kind in ("monitor", "whisper", "barge"):
                await self.center.supervise(desk.username, str(message.get("call_id", "")), kind)
            elif kind == "leave":
                await self.center.supervisor_leaves(desk.username)
            else:
                raise ProtocolViolation(f"unknown message type '{kind[:32]}'")
        except (ValueError, KeyError) as exc:
            await desk.send({"type": "error", "message": str(exc)})

    # ----- dashboard, metrics, reload --------------------------------------------------------------

    def _window_s(self, request: web.Request) -> int:
        try:
            return max(60, min(7 * 86400, int(request.query.get("window", DEFAULT_WINDOW_S))))
        except ValueError:
            raise web.HTTPBadRequest(text="window must be whole seconds") from None

    async def dashboard_data(self, request: web.Request) -> web.Response:
        window_s = self._window_s(request)
        now = time.time()
        since = now - window_s
        kpis = compute_kpis(self.storage, since, self.config.languages)
        live = self.center.snapshot()
        serving = sum(agent["state"] != "not_ready" for agent in live["agents"])
        forecast = erlang_c_forecast(kpis["queued"], window_s, self.center.acd.aht_s, serving)
        body = {
            "window_s": window_s,
            "kpis": kpis,
            "live": live,
            "forecast": forecast,
            "agents_figures": agent_figures(self.storage, since, now),
            "alerts": queue_alerts(self.storage, since, now, live, self.settings),
            "language_names": language_names([*self.config.languages]),
            "reloads": self.reloads,
        }
        return web.json_response(body)

    async def handoff_record(self, request: web.Request) -> web.Response:
        """A call's handoff record for a PBX or CRM, with the token of ``handoff_token_path``."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not same_secret(token, self.handoff_token):
            raise web.HTTPUnauthorized(
                text="needs the handoff API token", headers={"WWW-Authenticate": "Bearer"}
            )
        record = self.storage.get_handoff(request.match_info["call_id"])
        if record is None:  # JSON too, so that a dialplan reading a field gets it empty
            return web.json_response({"error": "no handoff record for this call"}, status=404)
        return web.json_response(record, headers={"Cache-Control": "no-store"})

    async def metrics(self, request: web.Request) -> web.Response:
        window_s = self._window_s(request)
        now = time.time()
        since = now - window_s
        kpis = compute_kpis(self.storage, since, self.config.languages)
        live = self.center.snapshot()
        alerts = queue_alerts(self.storage, since, now, live, self.settings)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(KpiCollector(kpis, live, window_s, protocol_failures))
        registry.register(AlertCollector(alerts))
        registry.register(self.loop_lag)
        body = encode(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def reload(self, request: web.Request) -> web.Response:
        """Admin only: a logged-in admin (with CSRF token) or the local admin token (``voicebot reload``)."""
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        session = self.web_session(request)
        by_token = same_secret(bearer, self.admin_token)
        by_session = session is not None and session.has_role("admin") and self._csrf_ok(request, session)
        if not (by_token or by_session):
            raise web.HTTPForbidden(text="admin only")
        from voicebot.designer.validate import ERROR, validate_project

        async with self._reload_lock:
            notes: list[str] = []  # what the reload did not do (NLU data changed but not retrained)
            try:
                # What `voicebot validate` rejects is refused here too, before anything is loaded.
                findings = await asyncio.to_thread(validate_project, self.config)
                errors = [str(f) for f in findings if f.severity == ERROR]
                if errors:
                    summary = f"{len(errors)} error(s) in the data (`voicebot validate`): {'; '.join(errors)}"
                    log.error("reload refused: %s", summary)
                    return web.json_response({"ok": False, "error": summary, "findings": errors}, status=422)
                self.engines = await asyncio.to_thread(reload_engines, self.config, self.engines, notes)
            except Exception as exc:  # a broken flow or model: keep serving with the old engines
                log.exception("reload failed")
                return web.json_response({"ok": False, "error": str(exc)}, status=422)
            self.reloads += 1
        log.info("reloaded flow, prompts and NLU model (%d)", self.reloads)
        body = {"ok": True, "reloads": self.reloads, "live_calls": self.live_calls, "warnings": notes}
        return web.json_response(body)
