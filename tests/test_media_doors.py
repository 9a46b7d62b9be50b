"""Who may open the media WebSocket, how many at once, and how often an account may be guessed at
(issue 12, defect 8): another site's page, a missing, wrong or expired token, connections past the
caps, and PIN guesses spread over parallel calls."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.test_server import Caller, call, hang_up, run, running_server, until
from tests.test_server_garbage import failures
from voicebot.audio import FRAME_BYTES
from voicebot.call import CallSession
from voicebot.config import Config
from voicebot.demo.actions import register_bank_actions
from voicebot.demo.bank import AcmeBank
from voicebot.dialogue.actions import ActionRegistry
from voicebot.dialogue.lockout import IdentificationLockout, MemoryAttemptStore
from voicebot.engines import Engines
from voicebot.server.app import VoicebotServer
from voicebot.server.auth import SignedTokens

GATEWAY_TOKEN = "a-gateway-token-of-some-length"
ACCOUNT, RIGHT_PIN = "12345678", "4321"


def own_origin(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


async def softphone_token(session: aiohttp.ClientSession, server: TestServer) -> str:
    """The token the softphone page holds, as its script reads it."""
    page = await (await session.get(server.make_url("/"))).text()
    found = re.search(r'id="media-token" hidden data-token="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def refused(session: aiohttp.ClientSession, server: TestServer, query: str = "", **options: Any) -> int:
    """The HTTP status that refuses this media connection before the upgrade (fails if it is taken)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
        await session.ws_connect(server.make_url(f"/media{query}"), **options)
    return refusal.value.status


async def counted(
    session: aiohttp.ClientSession, server: TestServer, before: dict[tuple[str, str], float]
) -> dict[str, float]:
    """The media refusals and failures counted in /metrics since ``before``, by reason."""
    after = await failures(session, server)
    return {
        reason: n - before.get((line, reason), 0)
        for (line, reason), n in after.items()
        if line == "media" and n - before.get((line, reason), 0)
    }


def voicebot(server: TestServer) -> VoicebotServer:
    return server.voicebot  # type: ignore[attr-defined, no-any-return]


async def started(ws: aiohttp.ClientWebSocketResponse) -> Caller:
    """A call on a connection that was let in: started, and a first frame of silence sent."""
    await ws.send_json({"type": "start", "caller_id": "+15550100", "language": "en"})
    caller = Caller(ws)
    await caller.wait_for("started")
    await ws.send_bytes(bytes(FRAME_BYTES))
    return caller


# ----- who: origins and tokens ---------------------------------------------------------------------


def test_a_browser_needs_an_allowed_origin_and_the_pages_token(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            before = await failures(session, server)
            token = await softphone_token(session, server)
            # Another site's page, even with a token it got somehow; and a page of our own without one.
            assert await refused(session, server, f"?token={token}", origin="http://evil.example") == 403
            assert await refused(session, server, origin=own_origin(server)) == 403
            assert await refused(session, server, "?token=123.forged", origin=own_origin(server)) == 403
            ws = await session.ws_connect(server.make_url(f"/media?token={token}"), origin=own_origin(server))
            await hang_up(await started(ws), voicebot(server).storage)
            assert await counted(session, server, before) == {
                "foreign_origin": 1,
                "no_token": 1,
                "bad_token": 1,
            }

    run(scenario)


def test_a_listed_origin_replaces_the_servers_own(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {"media_origins": ["https://ivr.example.com"]}
        async with (
            running_server(engines, tmp_path, **settings) as server,
            aiohttp.ClientSession() as session,
        ):
            token = await softphone_token(session, server)
            assert await refused(session, server, f"?token={token}", origin=own_origin(server)) == 403
            ws = await session.ws_connect(
                server.make_url(f"/media?token={token}"), origin="https://ivr.example.com"
            )
            await ws.close()

    run(scenario)


def test_gateways_bring_the_gateway_token_when_one_is_set(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {"media_gateway_token": GATEWAY_TOKEN}
        async with (
            running_server(engines, tmp_path, **settings) as server,
            aiohttp.ClientSession() as session,
        ):
            before = await failures(session, server)
            assert await refused(session, server) == 403  # loopback is not enough once a token is set
            assert await refused(session, server, headers={"Authorization": "Bearer not-the-token"}) == 403
            assert await refused(session, server, "?token=not-the-token") == 403
            by_header = await session.ws_connect(
                server.make_url("/media"), headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
            )
            by_query = await session.ws_connect(server.make_url(f"/media?token={GATEWAY_TOKEN}"))
            for ws in (by_header, by_query):
                await hang_up(await started(ws), voicebot(server).storage)
            assert await counted(session, server, before) == {"no_token": 1, "bad_token": 2}

    run(scenario)


def test_without_a_gateway_token_gateways_come_only_from_the_listed_networks(
    engines: Engines, tmp_path: Path
) -> None:
    async def scenario() -> None:
        settings = {"media_gateway_networks": ["10.0.0.0/8"]}
        async with (
            running_server(engines, tmp_path, **settings) as server,
            aiohttp.ClientSession() as session,
        ):
            before = await failures(session, server)
            assert await refused(session, server) == 403  # the test connects from 127.0.0.1
            assert await counted(session, server, before) == {"address_not_allowed": 1}

    run(scenario)


def test_the_softphone_token_expires(engines: Engines, tmp_path: Path) -> None:
    tokens = SignedTokens("a key", "media")
    token = tokens.issue(ttl_s=300, now=1_000_000.0)
    assert tokens.check(token, now=1_000_299.0) == SignedTokens.VALID
    assert tokens.check(token, now=1_000_300.0) == SignedTokens.EXPIRED
    assert tokens.check(token.replace(token.split(".")[0], "9" * 10), now=0.0) == SignedTokens.BAD
    assert SignedTokens("another key", "media").check(token, now=1_000_000.0) == SignedTokens.BAD
    assert tokens.check("ünïcode.٣٣", now=0.0) == SignedTokens.BAD

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            before = await failures(session, server)
            door = voicebot(server).media_door
            stale = door.tokens.issue(
                door.settings.media_token_ttl_s, time.time() - 2 * 3600
            )  # a page left open
            assert await refused(session, server, f"?token={stale}", origin=own_origin(server)) == 403
            # What the page's script does then: a fresh token, which is taken.
            fresh = await (await session.get(server.make_url("/media/token"))).json()
            assert fresh["ttl_s"] == int(door.settings.media_token_ttl_s)
            ws = await session.ws_connect(
                server.make_url(f"/media?token={fresh['token']}"), origin=own_origin(server)
            )
            await ws.close()
            assert (await counted(session, server, before))["expired_token"] == 1

    run(scenario)


def test_with_the_softphone_off_there_is_no_page_and_no_token(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            running_server(engines, tmp_path, softphone=False) as server,
            aiohttp.ClientSession() as session,
        ):
            assert (await session.get(server.make_url("/"))).status == 404
            assert (await session.get(server.make_url("/media/token"))).status == 404
            door = voicebot(server).media_door
            token = door.tokens.issue(60, time.time())  # signed right, but none are taken now
            assert await refused(session, server, f"?token={token}", origin=own_origin(server)) == 403

    run(scenario)


# ----- how many: caps ------------------------------------------------------------------------------


def test_connections_past_the_caps_are_refused_until_one_ends(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {"max_media_connections": 3, "max_media_connections_per_address": 1}
        async with (
            running_server(engines, tmp_path, **settings) as server,
            aiohttp.ClientSession() as session,
        ):
            before = await failures(session, server)
            storage, door = voicebot(server).storage, voicebot(server).media_door
            token = await softphone_token(session, server)
            browser = await started(
                await session.ws_connect(server.make_url(f"/media?token={token}"), origin=own_origin(server))
            )
            # One softphone connection per address: a second from here is refused ...
            assert await refused(session, server, f"?token={token}", origin=own_origin(server)) == 503
            # ... while gateways, which carry all their calls from one address, are not held to it.
            gateways = [await call(session, server, caller_id=f"+1555010{n}") for n in range(2)]
            assert door.open == 3
            assert await refused(session, server) == 503  # 3 at once in all
            await hang_up(gateways[0], storage)
            await until(lambda: door.open == 2)
            again = await call(session, server, caller_id="+15550109")
            await hang_up(again, storage)
            await hang_up(gateways[1], storage)
            await hang_up(browser, storage)
            await until(lambda: door.open == 0 and not door.by_address)
            busy = await counted(session, server, before)
            assert (busy["address_over_capacity"], busy["over_capacity"]) == (1, 1)

    run(scenario)


# ----- how often: identification attempts across calls --------------------------------------------


def test_the_lockout_counts_every_call_and_outlasts_a_restart(db_path: Path) -> None:
    policy = Config().policy.replace(
        auth_lockout_failures=3, auth_lockout_window_s=60.0, auth_lockout_s=600.0
    )
    lockout = IdentificationLockout(AcmeBank(db_path), policy)
    for now in (0.0, 1.0):
        assert lockout.begin(ACCOUNT, now) == 0 and lockout.failed(ACCOUNT, now) == 0
    assert lockout.begin("1234 5678", 2.0) == 0  # however it is written, the same account
    assert lockout.failed(ACCOUNT, 2.0) == 600.0  # the third failure locks it
    restarted = IdentificationLockout(AcmeBank(db_path), policy)  # the count is in the database
    assert restarted.begin(ACCOUNT, 3.0) == 599.0
    assert restarted.begin("87654321", 3.0) == 0  # other accounts go on
    assert restarted.begin(ACCOUNT, 602.0) == 0  # the lockout is over: a fresh count
    restarted.succeeded(ACCOUNT, 602.0)
    # Failures older than the window age out; attempts still being checked count already.
    memory = IdentificationLockout(MemoryAttemptStore(), policy)
    for now in (0.0, 1.0, 100.0, 101.0):
        assert memory.begin(ACCOUNT, now) == 0 and memory.failed(ACCOUNT, now) == 0
    assert memory.begin(ACCOUNT, 102.0) == 0  # the third within the window: being checked
    assert memory.begin(ACCOUNT, 102.0) == 600.0  # a fourth meanwhile: three are in, so it is refused


def live_session(server: TestServer, caller: Caller) -> CallSession:
    call_id = caller.got("started")["call_id"]  # type: ignore[index]
    media = next(c for c in voicebot(server).media_calls if c.session and c.session.call_id == call_id)
    assert media.session is not None
    return media.session


def events_of(session: CallSession, kind: str) -> list[dict[str, Any]]:
    return [event.to_dict() for event in session.events if event.type == kind]


async def keys(caller: Caller, digits: str) -> None:
    for digit in digits:
        await caller.ws.send_json({"type": "dtmf", "digit": digit})


def test_wrong_pins_over_parallel_calls_lock_the_account_even_for_the_right_pin(
    engines: Engines, tmp_path: Path, db_path: Path
) -> None:
    """Three calls at once guess two PINs each (fewer than one call's limit of 3): the account locks,
    the right PIN is refused then in those calls and in a new one; each caller is told and goes to an
    agent with the reason, and the trace has every failed attempt and the lockout."""
    registry = ActionRegistry()
    register_bank_actions(registry, AcmeBank(db_path))  # a bank of this test's own: its count is fresh
    policy = engines.config.policy.replace(auth_lockout_failures=6)
    config = engines.config.replace(policy=policy)

    async def scenario() -> None:
        fresh = dataclasses.replace(engines, actions=registry)
        async with running_server(fresh, tmp_path, config) as server, aiohttp.ClientSession() as session:
            storage = voicebot(server).storage
            guessers = [await call(session, server, caller_id=f"+1555020{n}") for n in range(3)]
            lives = [live_session(server, caller) for caller in guessers]
            for round_, (opening, wrong_pin) in enumerate((("1", "0000"), ("", "1111")), start=1):
                await asyncio.gather(*(keys(c, opening + ACCOUNT + wrong_pin) for c in guessers))
                await until(
                    lambda n=round_: all(len(events_of(s, "identification_failed")) == n for s in lives)
                )
            # A call its last failure did not lock is asked again: the right PIN, refused unchecked.
            still_asking = [c for c, s in zip(guessers, lives, strict=True) if not events_of(s, "escalated")]
            for caller in still_asking:
                await keys(caller, ACCOUNT + RIGHT_PIN)
            newcomer = await call(session, server, caller_id="+15550209")
            await keys(newcomer, "1" + ACCOUNT + RIGHT_PIN)

            everyone = [*guessers, newcomer]
            for caller in everyone:
                await caller.wait_for("transfer")  # an agent takes over
            traces = {c.got("started")["call_id"]: c for c in everyone}  # type: ignore[index]
            for caller in everyone:
                await hang_up(caller, storage)
            locks: list[dict[str, Any]] = []
            for call_id in traces:
                trace = storage.trace_events(call_id)
                said = [e["prompt_id"] for e in trace if e["type"] == "bot_said"]
                assert said[said.index("auth_locked") + 1] == "transfer"  # told why, then handed over
                [locked] = [e for e in trace if e["type"] == "identification_locked"]
                assert (
                    locked["account"] == "****5678" and 0 < locked["retry_after_s"] <= policy.auth_lockout_s
                )
                locks.append(locked)
                handoff = storage.get_handoff(call_id)
                assert handoff is not None and handoff["reason"] == "identification_locked"
                assert handoff["auth_level"] != "authenticated" and "****5678" in handoff["detail"]
                assert ACCOUNT not in json.dumps(trace) and ACCOUNT not in json.dumps(handoff)
            failed = [
                e
                for call_id in traces
                for e in storage.trace_events(call_id)
                if e["type"] == "identification_failed"
            ]
            assert len(failed) == 6 and {e["reason"] for e in failed} == {
                "auth_failed"
            }  # every guess checked
            causes = sorted(lock["cause"] for lock in locks)
            assert causes.count("locked") == len(still_asking) + 1 and "failures" in causes

    run(scenario)
