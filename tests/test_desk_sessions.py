"""Desk sessions and wrap-ups that outlive a dropped desk and a server restart: the stored session
store (only token hashes, idle and absolute expiry, logout), the contact centre's pending wrap-ups,
a real `voicebot serve` killed and started again on the same data, and the desk's page in Chromium
reconnecting to its wrap-up."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import playwright.sync_api as playwright
import pytest
from yarl import URL

from scripts.bench_serve_caller import ServerProcess
from tests.desk_doubles import Clock, FakeCaller, FakeSocket

# The browser tests' server thread and helpers; `browser` and `caller_wav` are fixtures, used by name.
from tests.test_browser import ServerThread, browser, caller_wav, log_in, queue_call, ready_agent, wait_until  # noqa: F401
from tests.test_server import Desk, call, escalate, login, until
from voicebot.config import Config
from voicebot.engines import Engines
from voicebot.handoff.record import HandoffRecord, TranscriptLine
from voicebot.nlu.rasa_engine import train
from voicebot.server.app import storage_path
from voicebot.server.auth import SESSION_COOKIE, SessionStore, make_account, token_hash
from voicebot.server.contact_center import AgentDesk, ContactCenter
from voicebot.storage import SqliteStorage

IDLE_S = 600.0
LIFETIME_S = 3600.0


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    storage.save_agent(make_account("alice", "alice-password", "agent"))
    yield storage
    storage.close()


def stored_bytes(folder: Path) -> bytes:
    """Everything SQLite wrote: the database, its write-ahead log and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("voicebot.sqlite*")))


# ----- the session store ---------------------------------------------------------------------------


def test_only_a_hash_of_the_token_is_stored_and_the_session_outlives_a_reopen(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    storage.save_agent(make_account("alice", "alice-password", "agent"))
    session = SessionStore(storage, IDLE_S, LIFETIME_S).create(storage.get_agent("alice"))  # type: ignore[arg-type]
    on_disk = stored_bytes(tmp_path)
    assert on_disk.count(session.token.encode()) == 0
    assert on_disk.count(session.csrf_token.encode()) == 0  # derived from the token, stored nowhere
    assert on_disk.count(token_hash(session.token).encode()) >= 1
    storage.close()

    storage = SqliteStorage(tmp_path / "voicebot.sqlite")  # a restart: a new store on the same file
    again = SessionStore(storage, IDLE_S, LIFETIME_S).get(session.token)
    assert again is not None and again.username == "alice" and again.role == "agent"
    assert again.csrf_token == session.csrf_token  # the page's CSRF token still works
    storage.close()


def test_a_session_ends_when_idle_and_at_its_lifetime_however_active(storage: SqliteStorage) -> None:
    clock = Clock()
    store = SessionStore(storage, IDLE_S, LIFETIME_S, clock)
    alice = storage.get_agent("alice")
    assert alice is not None
    idle = store.create(alice)
    clock.now += IDLE_S - 1
    assert store.get(idle.token) is not None  # seen now: the idle time starts again
    clock.now += IDLE_S - 1
    assert store.get(idle.token) is not None
    clock.now += IDLE_S
    assert store.get(idle.token) is None
    assert storage.get_web_session(token_hash(idle.token)) is None  # deleted, not just refused

    active = store.create(alice)
    started = clock.now
    while clock.now + IDLE_S / 2 < started + LIFETIME_S:
        clock.now += IDLE_S / 2
        assert store.get(active.token) is not None
    clock.now = started + LIFETIME_S
    assert store.get(active.token) is None


def test_logout_ends_the_session_and_purge_deletes_the_expired(
    storage: SqliteStorage, tmp_path: Path
) -> None:
    clock = Clock()
    store = SessionStore(storage, IDLE_S, LIFETIME_S, clock)
    alice = storage.get_agent("alice")
    assert alice is not None
    ended, kept = store.create(alice), store.create(alice)
    store.end(ended.token)
    assert store.get(ended.token) is None and store.get(kept.token) is not None
    forgotten = [store.create(alice) for _ in range(3)]
    clock.now += IDLE_S / 2
    assert store.get(kept.token) is not None  # seen: kept
    clock.now += IDLE_S / 2
    assert store.purge() == 3  # the three nobody came back for
    assert all(storage.get_web_session(token_hash(s.token)) is None for s in forgotten)
    assert store.get(kept.token) is not None
    with sqlite3.connect(tmp_path / "voicebot.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0] == 1


def test_a_session_has_the_accounts_role_now(storage: SqliteStorage) -> None:
    store = SessionStore(storage, IDLE_S, LIFETIME_S)
    session = store.create(storage.get_agent("alice"))  # type: ignore[arg-type]
    storage.save_agent(make_account("alice", "alice-password", "supervisor"))
    again = store.get(session.token)
    assert again is not None and again.has_role("supervisor")
    assert store.get("not a token") is None and store.get(None) is None


# ----- pending wrap-ups in the contact centre --------------------------------------------------------


def handoff(call_id: str, storage: SqliteStorage) -> HandoffRecord:
    record = HandoffRecord(
        call_id=call_id, reason="caller_request", queue="cards", caller_id="+15550100", language="en",
        auth_level="identified", transcript=[TranscriptLine("Caller", "I lost my card")],
    )  # fmt: skip
    storage.save_handoff(record)  # as the bot's escalation does
    return record


async def connect(center: ContactCenter) -> FakeSocket:
    socket = FakeSocket()
    await center.desk_connected(AgentDesk("alice", socket))  # type: ignore[arg-type]
    return socket


async def answered(center: ContactCenter, storage: SqliteStorage, call_id: str) -> FakeCaller:
    """alice's desk, ready, takes ``call_id``; returns its caller."""
    socket = await connect(center)
    await center.set_ready("alice", True)
    caller = FakeCaller(call_id)
    center.enqueue(caller, handoff(call_id, storage))
    await center.dispatch()
    assert socket.offers() == [call_id]
    await center.accept("alice", call_id)
    return caller


def alices_desk(center: ContactCenter) -> AgentDesk:
    return center.desks["alice"]


def test_a_wrap_up_left_by_a_dropped_desk_is_found_again_and_stored_once(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        center = ContactCenter(storage, offer_timeout_s=30.0)
        await answered(center, storage, "c1")
        await center.caller_hung_up("c1")
        await center.desk_disconnected(alices_desk(center))  # the browser drops during the wrap-up

        again = await connect(center)
        state = again.last_state()
        assert state["state"] == "wrap_up" and state["call_id"] == "c1"
        wrap_up = state["wrap_up"]
        assert wrap_up["pop"]["call_id"] == "c1" and wrap_up["pop"]["reason"] == "caller_request"
        assert wrap_up["talk_started_at"] <= wrap_up["talk_ended_at"]

        # A caller queued meanwhile is not offered to an agent still wrapping up...
        center.enqueue(FakeCaller("c2"), handoff("c2", storage))
        await center.dispatch()
        assert again.offers() == [] and center.acd.calls["c2"].offered_to is None
        await center.wrap_up("alice", "resolved", "new card sent")
        # ...and is once the wrap-up is in (the agent is ready again).
        assert again.offers() == ["c2"]
        with pytest.raises(ValueError, match="no call to wrap up"):
            await center.wrap_up("alice", "follow_up", "a second click")
        [row] = storage.dispositions_since(0.0)
        assert (row.call_id, row.disposition, row.notes) == ("c1", "resolved", "new card sent")
        assert (row.talk_started_at, row.talk_ended_at) == (
            wrap_up["talk_started_at"],
            wrap_up["talk_ended_at"],
        )
        assert storage.pending_wrap_ups() == []

    asyncio.run(scenario())


def test_a_card_number_typed_in_the_wrap_up_notes_is_stored_redacted(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        center = ContactCenter(storage, offer_timeout_s=30.0)
        await answered(center, storage, "c1")
        await center.caller_hung_up("c1")
        await center.wrap_up("alice", "follow_up", "card 4111-1111-1111-1111 blocked, acct ۱۲۳۴۵۶۷۸")
        [row] = storage.dispositions_since(0.0)
        assert row.notes == "card [card ending 1111] blocked, acct ۱۲۳۴۵۶۷۸"

    asyncio.run(scenario())


def test_a_desk_that_drops_during_the_talk_ends_it_and_keeps_its_wrap_up(storage: SqliteStorage) -> None:
    async def scenario() -> None:
        center = ContactCenter(storage, offer_timeout_s=30.0)
        caller = await answered(center, storage, "c1")
        await center.desk_disconnected(alices_desk(center))
        assert caller.agent_left  # the caller is told the agent is gone
        [pending] = storage.pending_wrap_ups()
        assert pending.call_id == "c1" and pending.talk_ended_at is not None
        again = await connect(center)
        assert again.last_state()["state"] == "wrap_up"

    asyncio.run(scenario())


def test_a_restart_restores_each_agents_unfinished_wrap_up(storage: SqliteStorage, tmp_path: Path) -> None:
    async def before() -> None:
        center = ContactCenter(storage, offer_timeout_s=30.0)
        await answered(center, storage, "c1")  # the server dies during the talk, 42 s into it
        [pending] = storage.pending_wrap_ups()
        assert pending.talk_ended_at is None
        started = pending.talk_started_at - 100  # (a while ago)
        storage.save_pending_wrap_up(dataclasses.replace(pending, talk_started_at=started))
        storage.call_started("c1", "+15550100", "en", at=started - 30)
        storage.call_ended("c1", "interrupted", "server_restart", at=started + 42)  # crash recovery's

    async def after(restarted: SqliteStorage) -> None:
        center = ContactCenter(restarted, offer_timeout_s=30.0)
        center.start()
        try:
            socket = await connect(center)
            state = socket.last_state()
            assert state["state"] == "wrap_up" and state["call_id"] == "c1"
            wrap_up = state["wrap_up"]
            # The talk ended with the call as recorded; the pop is the stored handoff record.
            assert wrap_up["talk_ended_at"] - wrap_up["talk_started_at"] == 42
            assert wrap_up["pop"]["transcript"] == [{"speaker": "Caller", "text": "I lost my card"}]
            await center.wrap_up("alice", "follow_up", "call back tomorrow")
            assert socket.last_state()["state"] == "ready"
        finally:
            await center.stop()

    asyncio.run(before())
    storage.close()
    restarted = SqliteStorage(tmp_path / "voicebot.sqlite")
    try:
        asyncio.run(after(restarted))
        [row] = restarted.dispositions_since(0.0)
        assert row.call_id == "c1" and row.disposition == "follow_up" and row.handle_s >= 100
        assert restarted.pending_wrap_ups() == []
    finally:
        restarted.close()


# ----- a real server, killed and started again ------------------------------------------------------


class Urls:
    """A `voicebot serve` process's URLs, the way the server tests' helpers ask for them."""

    def __init__(self, server: ServerProcess) -> None:
        self.base = URL(f"http://127.0.0.1:{server.port}")

    def make_url(self, path: str) -> URL:
        return self.base.with_path(path)


async def open_desk(session: aiohttp.ClientSession, urls: Urls) -> Desk:
    desk = Desk("alice", await session.ws_connect(urls.make_url("/agent/ws")))
    await until(lambda: desk.state)
    return desk


async def wrap_up_of(desk: Desk) -> dict[str, Any]:
    state = await until(lambda: next((m for m in reversed(desk.messages) if m.get("wrap_up")), None))
    assert state["state"] == "wrap_up"
    return state["wrap_up"]


async def talk_and_hang_up(session: aiohttp.ClientSession, urls: Urls, desk: Desk, caller_id: str) -> str:
    """A caller asks for an agent, alice (ready) takes the call, the caller hangs up: alice is in
    wrap-up. Returns the call id."""
    caller = await call(session, urls, caller_id=caller_id)  # type: ignore[arg-type]
    await escalate(caller)
    offer = await until(lambda: next((m for m in desk.messages if m["type"] == "offer"), None))
    await desk.ws.send_json({"type": "accept", "call_id": offer["call_id"]})
    await caller.wait_for("agent_connected")
    await caller.ws.send_json({"type": "hangup"})
    await wrap_up_of(desk)
    return str(offer["call_id"])


def page_csrf(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_a_restarted_server_keeps_the_desk_signed_in_and_its_wrap_up(config: Config) -> None:
    train(config.language, config.path(config.nlu.data_dir), config.path(config.nlu.models_dir))  # as it is
    server = ServerProcess(config, tag="desk_sessions", serve_args=["--no-sip", "--no-audiosocket"])
    database = storage_path(server.server_config)
    storage = SqliteStorage(database)
    storage.save_agent(make_account("alice", "alice-password", "agent"))
    storage.close()
    urls = Urls(server)

    async def scenario() -> tuple[str, str, str]:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as session, aiohttp.ClientSession() as callers:
            await asyncio.to_thread(server.start)
            assert (await login(session, urls, "alice")).status == 302  # type: ignore[arg-type]
            token = jar.filter_cookies(urls.base)[SESSION_COOKIE].value
            csrf = page_csrf(await (await session.get(urls.make_url("/agent"))).text())
            desk = await open_desk(session, urls)
            await desk.ws.send_json({"type": "ready"})
            first_call = await talk_and_hang_up(callers, urls, desk, "+15550141")

            # The desk's WebSocket drops during the wrap-up; reconnected, it finds the wrap-up again.
            await desk.ws.close()
            desk = await open_desk(session, urls)
            pending = await wrap_up_of(desk)
            assert pending["pop"]["call_id"] == first_call and pending["pop"]["caller_id"] == "+15550141"
            assert pending["talk_started_at"] <= pending["talk_ended_at"]
            # A second caller queues meanwhile: not offered to alice before her wrap-up is in.
            second_caller = await call(callers, urls, caller_id="+15550142")  # type: ignore[arg-type]
            await escalate(second_caller)
            await desk.ws.send_json({"type": "wrap_up", "disposition": "resolved", "notes": "dropped desk"})
            offer = await until(lambda: next((m for m in desk.messages if m["type"] == "offer"), None))
            ready_at = next(i for i, m in enumerate(desk.messages) if m.get("state") == "ready")
            assert desk.messages.index(offer) > ready_at
            await desk.ws.send_json({"type": "accept", "call_id": offer["call_id"]})
            await second_caller.wait_for("agent_connected")
            await second_caller.ws.send_json({"type": "hangup"})
            await wrap_up_of(desk)

            # kill -9 during the second call's wrap-up, then start again on the same data.
            await asyncio.to_thread(server.kill)
            await desk.task
            await asyncio.to_thread(server.start)
            page = await session.get(urls.make_url("/agent"), allow_redirects=False)
            assert page.status == 200 and page_csrf(await page.text()) == csrf  # still signed in
            desk = await open_desk(session, urls)
            restored = await wrap_up_of(desk)
            assert restored["pop"]["call_id"] == offer["call_id"]
            await desk.ws.send_json({"type": "wrap_up", "disposition": "follow_up", "notes": "after restart"})
            await until(lambda: desk.state == "ready")
            await desk.ws.send_json({"type": "wrap_up", "disposition": "resolved", "notes": "twice"})
            await until(lambda: any(m["type"] == "error" for m in desk.messages))

            await desk.ws.close()
            logout = await session.post(urls.make_url("/logout"), headers={"X-CSRF-Token": csrf})
            assert logout.status == 200
            gone = await session.get(urls.make_url("/agent"), allow_redirects=False)
            assert gone.status == 302
            return token, first_call, str(offer["call_id"])

    try:
        token, first_call, second_call = asyncio.run(scenario())
        server.stop()
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT call_id, disposition FROM dispositions ORDER BY wrapup_ended_at")
            assert rows.fetchall() == [(first_call, "resolved"), (second_call, "follow_up")]
            assert db.execute("SELECT COUNT(*) FROM pending_wrap_ups").fetchone()[0] == 0
        assert stored_bytes(database.parent).count(token.encode()) == 0
    finally:
        server.stop()
        server.cleanup()


# ----- the desk's page: reconnects and shows what the server says ------------------------------------


def test_the_desk_page_reconnects_and_shows_its_unfinished_wrap_up_again(
    engines: Engines,
    browser: playwright.Browser,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    server = ServerThread(engines, tmp_path)
    try:
        agent = ready_agent(browser, server)
        queue_call(server, HandoffRecord("call-1", "caller_request", "cards", "+15550177", "en", "none"))
        wait_until(agent, "window.desk.offer !== null")
        agent.click("#accept")
        wait_until(agent, "window.desk.state === 'talking'")
        agent.click("#hangup")
        wait_until(agent, "window.desk.state === 'wrap_up'")

        async def drop_desk() -> None:  # as a network blip or a server going away does
            desk = server.server.center.desks["alice"]
            await desk.ws.close(message=b"dropped by the test")

        asyncio.run_coroutine_threadsafe(drop_desk(), server.loop).result(timeout=60)
        wait_until(agent, "window.desk.connections === 2 && window.desk.state === 'wrap_up'")
        assert agent.is_visible("#wrapup") and agent.inner_text("#pop-caller") == "+15550177"

        agent.reload()  # a new page knows nothing: the server's state shows the wrap-up again
        wait_until(agent, "window.desk.state === 'wrap_up'")
        assert agent.is_visible("#wrapup") and agent.is_visible("#offer") and agent.is_hidden("#accept")
        assert agent.inner_text("#pop-caller") == "+15550177"
        assert agent.inner_text("#wrapup-times").startswith("talk ") and agent.is_visible("#wrapup-timer")
        agent.select_option("#disposition", "follow_up")
        agent.click("#submit-wrapup")
        wait_until(agent, "window.desk.state === 'ready'")
        assert agent.is_hidden("#wrapup")
        [row] = server.server.storage.dispositions_since(0.0)
        assert (row.call_id, row.disposition) == ("call-1", "follow_up")

        # The same agent opens the desk elsewhere: this page is told, and stops reconnecting.
        elsewhere = browser.new_context().new_page()
        log_in(elsewhere, server.url, "/agent", "alice")
        wait_until(agent, "window.desk.staysClosed && window.desk.state === 'disconnected'")
        # The session ended while that desk was away: back from a drop, it goes to the login page.
        [cookie] = [c for c in elsewhere.context.cookies() if c["name"] == SESSION_COOKIE]
        server.server.sessions.end(cookie["value"])
        asyncio.run_coroutine_threadsafe(drop_desk(), server.loop).result(timeout=60)
        elsewhere.wait_for_url(f"{server.url}/login?next=/agent")
    finally:
        server.stop()
