"""Server hardening over real sockets: the media message limit, odd tokens, logins (timing, the event
loop, back-off) and the security headers of every response."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import struct
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.test_server import WAIT_S, call, login, run, running_server, until
from voicebot.audio import FRAME_BYTES
from voicebot.engines import Engines
from voicebot.server import auth
from voicebot.server.app import PAGES
from voicebot.server.auth import LoginLimiter


async def raw_request(server: TestServer, head: bytes, body: bytes = b"") -> int:
    """Sends a hand-written HTTP/1.1 request (its header bytes as given, which a client library would
    not send) and returns the status code."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), WAIT_S)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def failed_login(session: aiohttp.ClientSession, server: TestServer, username: str) -> int:
    form = await (await session.get(server.make_url("/login"))).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    data = {"username": username, "password": "a wrong guess", "csrf": csrf}
    return (await session.post(server.make_url("/login"), data=data, allow_redirects=False)).status


def cookie_jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)


# ----- media message size (issue 12, defect 2) -------------------------------------------------------


def test_the_documented_largest_media_message_is_taken_and_one_byte_more_refused(
    engines: Engines, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            largest = await call(session, server)
            await largest.ws.send_bytes(bytes(FRAME_BYTES * 10))  # 6,400 bytes: docs/media-websocket.md
            await largest.ws.send_json({"type": "hangup"})  # read after it, so only if it was taken
            await asyncio.wait_for(largest.task, WAIT_S)
            assert largest.ws.close_code == aiohttp.WSCloseCode.OK
            too_big = await call(session, server)
            await too_big.ws.send_bytes(bytes(FRAME_BYTES * 10 + 1))
            await asyncio.wait_for(too_big.task, WAIT_S)
            assert too_big.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG

    run(scenario)


def test_a_frame_announcing_more_than_the_limit_is_refused_before_its_payload_is_read(
    engines: Engines, tmp_path: Path
) -> None:
    """Defect 13: the header of a 32 MB frame is enough to close the connection (1009); the server
    does not wait for, nor buffer, the 32 MB."""

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            try:
                key = base64.b64encode(os.urandom(16))
                writer.write(
                    b"GET /media HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    % (server.host.encode(), server.port, key)
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
                assert head.startswith(b"HTTP/1.1 101")
                announced = 32 * 1024 * 1024
                writer.write(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", announced) + os.urandom(4))
                writer.write(bytes(64 * 1024))  # a little of the payload: the rest never comes
                await writer.drain()
                frame = await asyncio.wait_for(reader.readexactly(4), WAIT_S)
                assert frame[0] & 0x0F == 0x8  # a close frame, not a wait for the rest
                assert struct.unpack("!H", frame[2:4])[0] == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            finally:
                writer.close()

    run(scenario)


# ----- tokens (defect 10) ------------------------------------------------------------------------------


def test_non_ascii_and_non_utf8_tokens_are_refused_not_a_server_error(
    engines: Engines, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            jar = cookie_jar()
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                assert (await login(session, server, "ada")).status == 302
            cookie = b"Cookie: " + "; ".join(f"{c.key}={c.value}" for c in jar).encode()
            form_type = b"Content-Type: application/x-www-form-urlencoded"
            for token in ("\u00e9t\u00e9".encode(), b"\xff\xfe"):
                bearer = b"Authorization: Bearer " + token
                csrf = b"X-CSRF-Token: " + token
                assert await raw_request(server, b"POST /admin/reload HTTP/1.1\r\n" + bearer) == 403
                assert (
                    await raw_request(server, b"POST /admin/reload HTTP/1.1\r\n" + cookie + b"\r\n" + csrf)
                    == 403
                )
                assert (
                    await raw_request(server, b"POST /logout HTTP/1.1\r\n" + cookie + b"\r\n" + csrf) == 403
                )
                assert await raw_request(server, b"GET /api/handoffs/x HTTP/1.1\r\n" + bearer) == 401
                login_head = (
                    b"POST /login HTTP/1.1\r\n" + form_type + b"\r\nCookie: voicebot_login_csrf=" + token
                )
                for field in (b"%C3%A9t%C3%A9", b"%FF%FE"):
                    body = b"username=ada&password=ada-password&csrf=" + field
                    assert await raw_request(server, login_head, body) == 403

    run(scenario)


# ----- login: timing and the event loop (defect 11) --------------------------------------------------


def test_login_hashes_for_unknown_users_too_and_off_the_event_loop(
    engines: Engines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown username costs a hash like a known one (no timing difference to enumerate names), and
    the hash runs in a worker thread: the event loop keeps serving while it computes."""
    real_hash = auth.hash_password
    hashing, loop_ticked = threading.Event(), threading.Event()
    hashed_in: list[int] = []

    def spy(password: str, salt: bytes) -> bytes:
        hashed_in.append(threading.get_ident())
        hashing.set()
        loop_ticked.wait(10)  # set by the event loop while this hash is "computing"
        return real_hash(password, salt)

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        async with running_server(engines, tmp_path) as server:
            monkeypatch.setattr(auth, "hash_password", spy)  # after the test accounts were made
            for username, status in (("nobody", 401), ("alice", 302)):
                hashing.clear()
                loop_ticked.clear()
                hashed_in.clear()
                async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as session:
                    attempt = asyncio.create_task(login(session, server, username))
                    await asyncio.wait_for(until(hashing.is_set), 10)  # the loop runs during the hash
                    loop_ticked.set()
                    assert (await attempt).status == status
                assert len(hashed_in) == 1 and hashed_in[0] != loop_thread

    run(scenario)


def test_verifying_an_unknown_account_computes_a_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    salts: list[bytes] = []
    monkeypatch.setattr(auth, "hash_password", lambda password, salt: salts.append(salt) or bytes(64))
    assert not auth.check_password(None, "any password")
    assert len(salts) == 1 and len(salts[0]) == 16


# ----- login back-off (defect 12) ----------------------------------------------------------------------


def test_login_backoff_is_per_address_and_account() -> None:
    limiter = LoginLimiter(free_failures=5, base_delay_s=1.0, max_delay_s=8.0, window_s=900.0, ceiling=1000)
    for _ in range(5):
        assert limiter.wait_s("10.0.0.1", "alice", 0.0) == 0
        limiter.failed("10.0.0.1", "alice", 0.0)
    assert limiter.wait_s("10.0.0.1", "alice", 0.0) == 1.0  # this pair waits...
    assert limiter.wait_s("10.0.0.2", "alice", 0.0) == 0  # ...not alice from another address,
    assert limiter.wait_s("10.0.0.1", "bob", 0.0) == 0  # nor bob behind the same address (a proxy)
    now, waits = 0.0, []
    for _ in range(5):  # each further failure doubles the wait, up to max_delay_s
        wait = limiter.wait_s("10.0.0.1", "alice", now)
        waits.append(wait)
        now += wait
        assert limiter.wait_s("10.0.0.1", "alice", now) == 0
        limiter.failed("10.0.0.1", "alice", now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert limiter.wait_s("10.0.0.1", "alice", now + 900.0) == 0  # failures age out after window_s
    limiter.failed("10.0.0.1", "bob", 1000.0)
    limiter.succeeded("10.0.0.1", "bob")  # a success clears the pair's failures
    assert limiter.wait_s("10.0.0.1", "bob", 1000.0) == 0


def test_login_failures_have_a_global_ceiling() -> None:
    limiter = LoginLimiter(free_failures=5, window_s=900.0, ceiling=10)
    for attempt in range(10):  # a distributed attack: every address and account new
        limiter.failed(f"10.0.0.{attempt}", f"user{attempt}", float(attempt))
    assert limiter.wait_s("10.0.1.1", "carol", 10.0) == 890.0  # until the oldest failure ages out
    assert limiter.wait_s("10.0.1.1", "carol", 900.0) == 0
    limiter.failed("10.0.1.1", "carol", 900.0)  # counted while checked...
    limiter.succeeded("10.0.1.1", "carol")  # ...and taken back: a success does not fill the ceiling
    assert limiter.wait_s("10.0.1.2", "dave", 900.0) == 0  # 9 failures in the window, not 10


def test_failed_logins_lock_only_that_address_and_account(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as session:
                assert [await failed_login(session, server, "bob") for _ in range(6)] == [401] * 5 + [429]
                assert [await failed_login(session, server, f"ghost{n}") for n in range(6)] == [401] * 6
                assert (await login(session, server, "alice")).status == 302  # same address, other account
                # Parallel guesses: each is counted before its hash runs, so no more than 5 are checked.
                statuses = await asyncio.gather(*(failed_login(session, server, "sue") for _ in range(10)))
                assert sorted(statuses) == [401] * 5 + [429] * 5
            limiter = server.voicebot.limiter  # type: ignore[attr-defined]
            assert limiter.wait_s("192.0.2.7", "bob", 0.0) == 0  # bob from another address may try

    run(scenario)


# ----- security headers (defect 16) ----------------------------------------------------------------------


def test_every_response_has_the_security_headers_and_a_content_security_policy(
    engines: Engines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            voicebot = server.voicebot  # type: ignore[attr-defined]

            def broken(call_id: str) -> None:
                raise RuntimeError("storage broke")

            monkeypatch.setattr(voicebot.storage, "get_handoff", broken)
            async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as session:
                bearer = {"Authorization": f"Bearer {voicebot.handoff_token}"}
                requests = [
                    ("GET", "/", {}, 200),
                    ("GET", "/login", {}, 200),
                    ("GET", "/static/style.css", {}, 200),
                    ("GET", "/metrics", {}, 200),
                    ("GET", "/agent", {}, 302),
                    ("GET", "/api/dashboard", {}, 401),
                    ("POST", "/admin/reload", {}, 403),
                    ("GET", "/no/such/page", {}, 404),
                    ("GET", "/api/handoffs/x", bearer, 500),
                ]
                for method, path, headers, status in requests:
                    response = await session.request(
                        method, server.make_url(path), headers=headers, allow_redirects=False
                    )
                    assert response.status == status, path
                    assert response.headers.get("X-Content-Type-Options") == "nosniff", path
                    assert response.headers.get("X-Frame-Options") == "DENY", path
                    assert response.headers.get("Referrer-Policy") == "no-referrer", path
                    policy = response.headers.get("Content-Security-Policy", "")
                    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, path
                    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, path
                statuses = [await failed_login(session, server, "bob") for _ in range(5)]
                assert statuses == [401] * 5
                form = await (await session.get(server.make_url("/login"))).text()
                csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
                data = {"username": "bob", "password": "x", "csrf": csrf}
                limited = await session.post(server.make_url("/login"), data=data, allow_redirects=False)
                assert (
                    limited.status == 429
                    and "default-src 'none'" in limited.headers["Content-Security-Policy"]
                )
                assert int(limited.headers["Retry-After"]) > 0

    run(scenario)


def test_pages_run_no_inline_script_so_the_policy_needs_no_unsafe_inline() -> None:
    """Scripts are files under /static (script-src 'self'); a page keeps only JSON data blocks inline."""
    for name in PAGES.list_templates():
        source = PAGES.loader.get_source(PAGES, name)[0]  # type: ignore[union-attr]
        for tag in re.findall(r"<script\b[^>]*>", source):
            assert "src=" in tag or 'type="application/json"' in tag, (name, tag)
        assert not re.search(r"\son[a-z]+=|\sstyle=|<style\b|javascript:", source), name
