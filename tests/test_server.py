"""The server over real sockets on 127.0.0.1: media protocol, queue, agent desk, auth, dashboard, reload."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from voicebot.audio import FRAME_BYTES
from voicebot.config import Config, ServerConfig
from voicebot.engines import Engines
from voicebot.server.app import VoicebotServer
from voicebot.server.auth import make_account, verify_password
from voicebot.server.commands import add_commands
from voicebot.server.hold import announcement_audio, position_announcement
from voicebot.server.kpis import WINDOW_GAUGES, KpiCollector
from voicebot.storage import SqliteStorage, Storage

T = TypeVar("T")
LOUD = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()  # a 20 ms tone frame
WAIT_S = 60  # generous upper bound for anything the tests wait for; never a timing assertion


def loud(frame: bytes) -> bool:
    return float(np.sqrt(np.mean(np.frombuffer(frame, "<i2").astype(float) ** 2))) > 300


@asynccontextmanager
async def running_server(
    engines: Engines, tmp_path: Path, config: Config | None = None, **settings: Any
) -> AsyncIterator[TestServer]:
    config = (config or engines.config).replace(data_dir=str(tmp_path))
    server = VoicebotServer(
        dataclasses.replace(engines, config=config),
        ServerConfig(**{"offer_timeout_s": 30.0, "announce_interval_s": 30.0, **settings}),
        storage=SqliteStorage(tmp_path / "voicebot.sqlite"),
    )
    for name, role in (("alice", "agent"), ("bob", "agent"), ("sue", "supervisor"), ("ada", "admin")):
        server.storage.save_agent(make_account(name, f"{name}-password", role))
    test_server = TestServer(server.app(), host="127.0.0.1")
    await test_server.start_server()
    test_server.voicebot = server  # type: ignore[attr-defined]
    try:
        yield test_server
    finally:
        await test_server.close()


class SocketPeer:
    """A WebSocket client that keeps every control message and counts the audio frames it hears."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.loud_frames = 0
        self.frames = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                self.messages.append(msg.json())
            elif msg.type == WSMsgType.BINARY:
                self.frames += 1
                self.loud_frames += loud(msg.data)


class Caller(SocketPeer):
    """The media WebSocket's caller side."""

    def got(self, kind: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["type"] == kind), None)

    async def wait_for(self, kind: str) -> dict[str, Any]:
        return await until(lambda: self.got(kind))


async def until(probe: Callable[[], T | None]) -> T:
    async def poll() -> T:
        while (value := probe()) is None or value is False:
            await asyncio.sleep(0.05)
        return value

    return await asyncio.wait_for(poll(), WAIT_S)


async def call(
    session: aiohttp.ClientSession, server: TestServer, caller_id: str = "+15550100", audio: bool = True
) -> Caller:
    """A caller on the media socket, started; with ``audio``, it sends a first frame of silence (as a
    phone line does): a connection is a call once it sent valid audio or a key."""
    ws = await session.ws_connect(server.make_url("/media"))
    await ws.send_json({"type": "start", "caller_id": caller_id, "language": "en"})
    caller = Caller(ws)
    await caller.wait_for("started")
    if audio:
        await ws.send_bytes(bytes(FRAME_BYTES))
    return caller


async def hang_up(caller: Caller, storage: Storage) -> str:
    """Hangs up and waits until the server has recorded the call's end; returns the call id."""
    call_id: str = caller.got("started")["call_id"]  # type: ignore[index]
    await caller.ws.send_json({"type": "hangup"})
    await asyncio.wait_for(caller.task, WAIT_S)
    await until(lambda: (row := storage.get_call(call_id)) is not None and row.outcome)
    return call_id


def bot_said(storage: Storage, call_id: str) -> list[str]:
    return [e["text"] for e in storage.trace_events(call_id) if e["type"] == "bot_said"]


async def escalate(caller: Caller) -> dict[str, Any]:
    """Presses 0 (agent) and waits until the caller is queued; returns the queue message."""
    await caller.ws.send_json({"type": "dtmf", "digit": "0"})
    await caller.wait_for("transfer")
    return await caller.wait_for("queue")


async def login(session: aiohttp.ClientSession, server: TestServer, username: str) -> aiohttp.ClientResponse:
    form = await (await session.get(server.make_url("/login"))).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    data = {"username": username, "password": f"{username}-password", "csrf": csrf.group(1)}
    return await session.post(server.make_url("/login"), data=data, allow_redirects=False)


class Desk(SocketPeer):
    """An agent desk's WebSocket."""

    def __init__(self, username: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.username = username
        super().__init__(ws)

    @property
    def state(self) -> str | None:
        states = [m["state"] for m in self.messages if m["type"] == "state"]
        return states[-1] if states else None

    def offer(self) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["type"] == "offer"), None)


async def open_desk(
    server: TestServer, username: str, ready: bool = True
) -> tuple[aiohttp.ClientSession, Desk]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    assert (await login(session, server, username)).status == 302
    desk = Desk(username, await session.ws_connect(server.make_url("/agent/ws")))
    await until(lambda: desk.state)
    if ready:
        await desk.ws.send_json({"type": "ready"})
        await until(lambda: desk.state == "ready")
    return session, desk


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


# ----- media protocol ------------------------------------------------------------------------------


def test_bad_media_messages_close_only_that_connection(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            good = await call(session, server)
            bad_openings: list[Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]]] = [
                lambda ws: ws.send_bytes(bytes(FRAME_BYTES)),  # audio before start
                lambda ws: ws.send_str("not json {"),
                lambda ws: ws.send_json({"type": "dtmf", "digit": "5"}),  # out of order
                lambda ws: ws.send_json({"type": "start", "caller_id": "x" * 100}),
                lambda ws: ws.send_json({"type": "start", "language": "x" * 40}),
                lambda ws: ws.send_str("[" * 3000),  # nesting too deep for the JSON parser
                lambda ws: ws.send_str('{"type": "start", "caller_id": ' + "9" * 4400 + "}"),  # huge number
            ]
            for opening in bad_openings:
                ws = await session.ws_connect(server.make_url("/media"))
                await opening(ws)
                msg = await ws.receive(timeout=WAIT_S)
                assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
            for after_start in (
                lambda ws: ws.send_bytes(bytes(FRAME_BYTES * 11)),  # oversized
                lambda ws: ws.send_bytes(bytes(FRAME_BYTES - 2)),  # not whole frames
                lambda ws: ws.send_json({"type": "start"}),  # start twice
                lambda ws: ws.send_json({"type": "dtmf", "digit": "A"}),
                lambda ws: ws.send_str("[" * 3000),
                lambda ws: ws.send_str('{"type": "dtmf", "digit": ' + "9" * 4400 + "}"),
            ):
                bad = await call(session, server)
                await after_start(bad.ws)
                await asyncio.wait_for(bad.task, WAIT_S)
                assert bad.ws.closed and bad.ws.close_code in (
                    aiohttp.WSCloseCode.POLICY_VIOLATION,
                    aiohttp.WSCloseCode.MESSAGE_TOO_BIG,
                )
            # The documented maximum message (10 frames) is taken, not refused as too big.
            largest = await call(session, server)
            await largest.ws.send_bytes(bytes(FRAME_BYTES * 10))
            await asyncio.sleep(0.3)
            assert not largest.ws.closed
            await largest.ws.close()
            # The good call was never disturbed: still open, the bot still talking to it.
            frames_before = good.frames
            await until(lambda: good.frames > frames_before + 10)
            assert not good.ws.closed and good.got("hangup") is None
            assert good.loud_frames > 0  # it heard the greeting

    run(scenario)


def test_barge_in_sends_clear_and_caller_hangup_is_recorded(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            caller = await call(session, server)
            await until(lambda: caller.loud_frames > 5)  # the greeting is playing
            await caller.ws.send_json({"type": "dtmf", "digit": "*"})  # a key interrupts the prompt
            await caller.wait_for("clear")
            await caller.ws.send_json({"type": "hangup"})
            await asyncio.wait_for(caller.task, WAIT_S)
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            row = await until(lambda: storage.get_call(caller.got("started")["call_id"]))
            await until(lambda: storage.get_call(row.call_id).outcome)
            assert storage.get_call(row.call_id).outcome == "abandoned"
            assert any(e["type"] == "barge_in" for e in storage.trace_events(row.call_id))

    run(scenario)


# ----- queue, desk, dashboard ----------------------------------------------------------------------


def test_escalated_caller_is_bridged_to_the_agent_who_accepts(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path, offer_timeout_s=1.0) as server:
            alice_session, alice = await open_desk(server, "alice")
            bob_session, bob = await open_desk(server, "bob")
            caller_session = aiohttp.ClientSession()
            caller = await call(caller_session, server, caller_id="+15550123")
            queued = await escalate(caller)
            assert queued["position"] == 1
            # The first offer is left unanswered: it moves to the other agent, the first is not ready.
            first = await until(lambda: next((desk for desk in (alice, bob) if desk.offer()), None))
            second = bob if first is alice else alice
            offer = await until(second.offer)
            await until(lambda: first.state == "not_ready")
            pop = offer["pop"]
            assert pop["reason"] == "caller_request" and pop["caller_id"] == "+15550123"
            assert pop["language"] == "en" and "main_menu" in pop["menu_path"]
            assert any(line["text"] == "(pressed 0)" for line in pop["transcript"])
            await second.ws.send_json({"type": "accept", "call_id": offer["call_id"]})
            await caller.wait_for("agent_connected")
            await until(lambda: second.state == "talking")
            # Two-way audio: the caller's tone reaches the agent and the agent's tone the caller.
            caller_loud_before = caller.loud_frames
            for _ in range(25):
                await caller.ws.send_bytes(LOUD)
                await second.ws.send_bytes(LOUD)
                await asyncio.sleep(0.02)
            await until(lambda: second.loud_frames > 5)
            await until(lambda: caller.loud_frames > caller_loud_before + 5)
            await second.ws.send_json({"type": "hangup"})
            assert (await caller.wait_for("hangup"))["reason"] == "agent_hangup"
            await until(lambda: second.state == "wrap_up")
            await second.ws.send_json(
                {"type": "wrap_up", "disposition": "resolved", "notes": "card replaced"}
            )
            await until(lambda: second.state == "ready")
            # Supervisor's view of it.
            sue = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            await login(sue, server, "sue")
            data = await (await sue.get(server.make_url("/api/dashboard"))).json()
            kpis = data["kpis"]
            assert kpis["answered"] == 1 and kpis["abandoned"] == 0 and kpis["fcr"] == 1.0
            assert kpis["transfers_by_reason"] == {"caller_request": 1} and kpis["aht_s"] is not None
            assert 0 < data["forecast"]["service_level_20s"] <= 1  # Erlang C with one agent serving
            states = {agent["username"]: agent["state"] for agent in data["live"]["agents"]}
            assert states == {first.username: "not_ready", second.username: "ready"}
            for session in (alice_session, bob_session, caller_session, sue):
                await session.close()

    run(scenario)


def test_queue_positions_abandonment_and_callback_survive_restart(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            first = await call(session, server, caller_id="+15550001")
            assert (await escalate(first))["position"] == 1
            second = await call(session, server, caller_id="+15550002")
            second_queued = await escalate(second)
            assert second_queued["position"] == 2 and second_queued["estimated_wait_s"] > 0
            await until(lambda: second.loud_frames > 20)  # hears the announcement / hold music
            await second.ws.send_json({"type": "hangup"})
            await asyncio.wait_for(second.task, WAIT_S)
            await first.ws.send_json({"type": "dtmf", "digit": "1"})  # a callback instead of waiting
            await first.wait_for("callback_scheduled")
            assert (await first.wait_for("hangup"))["reason"] == "callback"
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            await until(
                lambda: len([e for e in storage.queue_entries_since(0) if e.result != "waiting"]) == 2
            )
            metrics = await (await session.get(server.make_url("/metrics"))).text()
            assert 'voicebot_abandoned{window="3600s"} 1' in metrics
        storage = SqliteStorage(tmp_path / "voicebot.sqlite")  # after the server stopped
        [callback] = storage.pending_callbacks()
        assert callback.caller_id == "+15550001" and callback.record["reason"] == "caller_request"
        results = {e.call_id: e.result for e in storage.queue_entries_since(0)}
        assert sorted(results.values()) == ["abandoned", "callback"]
        storage.close()

    run(scenario)


def test_caller_who_hangs_up_during_the_transfer_prompt_leaves_a_handoff_record(
    engines: Engines, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            caller = await call(session, server, caller_id="+15550003")
            call_id = caller.got("started")["call_id"]  # type: ignore[index]
            await caller.ws.send_json({"type": "dtmf", "digit": "0"})
            await until(lambda: storage.get_handoff(call_id))  # stored as the transfer prompt starts
            await hang_up(caller, storage)
            assert caller.got("transfer") is None  # gone before the prompt ended: never queued
            record = storage.get_handoff(call_id)
            assert record["reason"] == "caller_request" and record["caller_id"] == "+15550003"
            assert storage.escalations_since(0) == [(call_id, "caller_request")]  # one record
            assert not storage.queue_entries_since(0)

    run(scenario)


def test_queue_announcements_are_the_languages_prompts(engines: Engines) -> None:
    prompts = engines.flow.prompts("en")
    for (position, wait_s), expected in (
        ((1, 50), ["You are next in line.", "The estimated wait is about one minute."]),
        ((3, 400), ["You are number 3 in line.", "The estimated wait is about 7 minutes."]),
    ):
        parts = position_announcement(position, wait_s)
        assert [prompts.render(prompt_id, values) for prompt_id, values in parts][:2] == expected
    offer = prompts.render("queue_callback_offer")
    audio = announcement_audio(engines, "en", parts)
    cached = engines.for_language("en").prompt_cache.get(offer)
    assert audio.endswith(cached)  # the static part is the cached prompt


def test_metrics_escape_label_values() -> None:
    kpis: dict[str, Any] = dict.fromkeys((key for key, _ in WINDOW_GAUGES), None)
    kpis |= {"abandoned": 1, "transfers_by_reason": {'said "agent"\\': 2}}
    live = {"queues": {"cards\nvoicebot_fake 1": [{}]}, "agents": [{"state": "ready"}]}
    text = generate_latest(KpiCollector(kpis, live, 60)).decode()
    assert 'voicebot_abandoned{window="60s"} 1' in text
    assert r'voicebot_transfers{reason="said \"agent\"\\",window="60s"} 2' in text
    assert r'voicebot_queue_waiting{queue="cards\nvoicebot_fake 1"} 1' in text
    assert "\nvoicebot_fake" not in text  # a label value cannot inject a line


# ----- auth and admin ------------------------------------------------------------------------------


def test_pages_need_login_roles_csrf_and_rate_limit(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                assert (await session.get(server.make_url("/"))).status == 200
                assert (await session.get(server.make_url("/metrics"))).status == 200
                response = await session.get(server.make_url("/agent"), allow_redirects=False)
                assert response.status == 302 and response.headers["Location"].startswith("/login")
                assert (await session.get(server.make_url("/api/dashboard"))).status == 401
                assert (await session.post(server.make_url("/admin/reload"))).status == 403
                # No CSRF token: refused even with the right password.
                data = {"username": "alice", "password": "alice-password"}
                assert (await session.post(server.make_url("/login"), data=data)).status == 403
                response = await login(session, server, "alice")
                assert response.status == 302 and response.headers["Location"] == "/agent"
                cookie = response.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
                assert (await session.get(server.make_url("/agent"))).status == 200
                assert (await session.get(server.make_url("/dashboard"))).status == 403  # agents only
                # Nor may an agent listen to calls: the supervisor's socket is refused before the upgrade.
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(server.make_url("/supervisor/ws"))
                assert refused.value.status == 403
                assert (await session.post(server.make_url("/logout"))).status == 403  # no CSRF header
                headers = {"X-CSRF-Token": "\u00e9t\u00e9"}  # a non-ASCII token is refused, not a 500
                assert (await session.post(server.make_url("/logout"), headers=headers)).status == 403
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                form = await (await session.get(server.make_url("/login"))).text()
                csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
                statuses = [
                    (
                        await session.post(
                            server.make_url("/login"),
                            data={"username": "bob", "password": "guess", "csrf": csrf},
                            allow_redirects=False,
                        )
                    ).status
                    for _ in range(6)
                ]
                assert statuses == [401] * 5 + [429]

    run(scenario)


def copy_of_prompts(engines: Engines, tmp_path: Path) -> tuple[Engines, Path]:
    """Engines whose flow and prompts are read (on reload) from a copy the test may change."""
    prompts_dir = tmp_path / "prompts"
    shutil.copytree(engines.config.path(engines.config.flow_dir), prompts_dir)
    config = engines.config.replace(flow_dir=str(prompts_dir))
    return dataclasses.replace(engines, config=config), prompts_dir / "en.yml"


async def post_reload(session: aiohttp.ClientSession, server: TestServer) -> aiohttp.ClientResponse:
    token = server.voicebot.admin_token  # type: ignore[attr-defined]
    return await session.post(server.make_url("/admin/reload"), headers={"Authorization": f"Bearer {token}"})


def test_reload_gives_new_calls_the_new_wording_while_a_call_keeps_going(
    engines: Engines, tmp_path: Path
) -> None:
    old, new = "Thank you for calling Acme Bank.", "Welcome to the new Acme Bank line."
    copy, prompts_file = copy_of_prompts(engines, tmp_path)

    async def scenario() -> None:
        async with running_server(copy, tmp_path) as server, aiohttp.ClientSession() as session:
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            before = await call(session, server)
            await until(lambda: before.loud_frames > 5)  # greeted with the old wording
            prompts_file.write_text(prompts_file.read_text().replace(f"greeting: {old}", f"greeting: {new}"))
            response = await post_reload(session, server)
            assert response.status == 200 and (await response.json())["reloads"] == 1
            after = await call(session, server)
            await until(lambda: after.loud_frames > 5)
            # The call in progress carries on, on the engines it started with, as far as the queue.
            assert (await escalate(before))["position"] == 1
            after_id, before_id = await hang_up(after, storage), await hang_up(before, storage)
            assert bot_said(storage, after_id)[0] == new
            assert bot_said(storage, before_id)[0] == old

    run(scenario)


def test_a_broken_reload_is_refused_and_the_old_engines_keep_serving(
    engines: Engines, tmp_path: Path
) -> None:
    copy, prompts_file = copy_of_prompts(engines, tmp_path)

    async def scenario() -> None:
        async with running_server(copy, tmp_path) as server, aiohttp.ClientSession() as session:
            prompts_file.write_text(prompts_file.read_text().replace("  greeting:", "  greeting_typo:"))
            response = await post_reload(session, server)
            assert response.status == 422 and "'greeting'" in (await response.json())["error"]
            caller = await call(session, server)
            await until(lambda: caller.loud_frames > 5)
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            assert bot_said(storage, await hang_up(caller, storage))[0] == "Thank you for calling Acme Bank."

    run(scenario)


def copy_of_nlu_data(engines: Engines, tmp_path: Path) -> tuple[Engines, Path]:
    """Engines whose NLU data is read (on reload) from a copy the test may change; the trained models
    stay the project's."""
    data_dir = tmp_path / "nlu_data"
    shutil.copytree(engines.config.path(engines.config.nlu.data_dir), data_dir)
    config = engines.config.replace(nlu=engines.config.nlu.replace(data_dir=str(data_dir)))
    return dataclasses.replace(engines, config=config), data_dir


@pytest.mark.parametrize(
    ("relative", "addition", "offset", "message"),
    [
        (
            ("en", "cards.yml"),
            "- intent: order_checkbook\n  examples: |\n",
            1,
            "intent 'order_checkbook' has no examples",
        ),
        (
            ("es", "cards.yml"),
            "- intent: lost_card\n  intent: report_fraud\n  examples: |\n    - a\n",
            2,
            "duplicate key",
        ),
    ],
    ids=["empty intent", "duplicate key"],
)
def test_a_reload_of_nlu_data_that_validate_rejects_is_refused_with_the_findings(
    engines: Engines, tmp_path: Path, relative: tuple[str, ...], addition: str, offset: int, message: str
) -> None:
    copy, data_dir = copy_of_nlu_data(engines, tmp_path)
    path = data_dir.joinpath(*relative)

    async def scenario() -> None:
        async with running_server(copy, tmp_path) as server, aiohttp.ClientSession() as session:
            before = server.voicebot.engines  # type: ignore[attr-defined]
            line = len(path.read_text().splitlines()) + offset
            with path.open("a") as file:
                file.write(addition)
            response = await post_reload(session, server)
            body = await response.json()
            assert response.status == 422 and not body["ok"], body
            assert any(f.startswith(f"{path}:{line}: error: ") and message in f for f in body["findings"]), (
                body
            )
            assert message in body["error"]
            assert server.voicebot.engines is before and server.voicebot.reloads == 0  # type: ignore[attr-defined]

    run(scenario)


def test_a_reload_says_when_the_nlu_data_changed_but_was_not_retrained(
    engines: Engines, tmp_path: Path
) -> None:
    copy, data_dir = copy_of_nlu_data(engines, tmp_path)

    async def scenario() -> None:
        async with running_server(copy, tmp_path) as server, aiohttp.ClientSession() as session:
            response = await post_reload(session, server)
            assert response.status == 200 and (await response.json())["warnings"] == []  # as trained
            with (data_dir / "es" / "cards.yml").open("a") as file:
                file.write("    - hay un cargo del supermercado que yo no hice\n")
            response = await post_reload(session, server)
            body = await response.json()
            assert response.status == 200 and body["reloads"] == 2, body
            assert len(body["warnings"]) == 1, body
            assert "NLU data for 'es' changed" in body["warnings"][0]
            assert "voicebot train" in body["warnings"][0]

    run(scenario)


# ----- command line ----------------------------------------------------------------------------------


def test_agents_add_and_reload_commands(
    engines: Engines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    config = engines.config.replace(data_dir=str(tmp_path))
    monkeypatch.setenv("VOICEBOT_PASSWORD", "a long password")
    args = parser.parse_args(["agents", "add", "carol", "--role", "admin"])
    assert args.handler(args, config) == 0
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    account = storage.get_agent("carol")
    storage.close()
    assert account is not None and account.role == "admin" and verify_password(account, "a long password")
    monkeypatch.setenv("VOICEBOT_PASSWORD", "short")
    assert args.handler(args, config) == 2  # too short: refused

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            args = parser.parse_args(["reload", "--url", str(server.make_url("/"))])
            assert await asyncio.to_thread(args.handler, args, config) == 0
            assert server.voicebot.reloads == 1  # type: ignore[attr-defined]

    run(scenario)
