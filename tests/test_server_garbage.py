"""Garbage on the media and agent sockets: only a connection that sent valid audio or a key is a call;
the rest are counted as protocol failures in /metrics, by line and reason (issue 12, defects 1 and 7)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.test_server import LOUD, WAIT_S, call, hang_up, open_desk, run, running_server, until
from voicebot.audio import FRAME_BYTES
from voicebot.engines import Engines
from voicebot.server.kpis import compute_kpis

Opening = Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]]


async def failures(session: aiohttp.ClientSession, server: TestServer) -> dict[tuple[str, str], float]:
    """``voicebot_protocol_failures_total`` by (line, reason), as /metrics shows it."""
    text = await (await session.get(server.make_url("/metrics"))).text()
    return {
        (sample.labels["line"], sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "voicebot_protocol_failures"
        for sample in family.samples
        if sample.name == "voicebot_protocol_failures_total"
    }


def test_garbage_connections_are_not_calls_and_are_counted_by_reason(
    engines: Engines, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            before = await failures(session, server)
            connected_at = time.time()
            good = await call(session, server, audio=False)
            call_id = good.got("started")["call_id"]  # type: ignore[index]
            await asyncio.sleep(0.3)
            assert storage.get_call(call_id) is None  # no valid audio or key yet: not a call yet
            first_audio_at = time.time()
            for _ in range(5):
                await good.ws.send_bytes(LOUD)
            await until(lambda: storage.get_call(call_id))

            bad_starts: list[Opening] = [
                lambda ws: ws.send_json({"type": "start", "caller_id": "x" * 100}),
                lambda ws: ws.send_json({"type": "start", "language": "x" * 40}),
                lambda ws: ws.send_str("not json {"),
                lambda ws: ws.send_str("[" * 3000),
            ]
            before_start: list[Opening] = [
                lambda ws: ws.send_bytes(bytes(FRAME_BYTES)),  # audio before start
                lambda ws: ws.send_bytes(LOUD * 3),
                lambda ws: ws.send_json({"type": "dtmf", "digit": "5"}),
                lambda ws: ws.send_json({"type": "hangup"}),
            ]
            for opening in [*bad_starts, *before_start]:
                ws = await session.ws_connect(server.make_url("/media"))
                await opening(ws)
                msg = await ws.receive(timeout=WAIT_S)
                assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
            # A start, then nothing valid: bad audio, bad messages, or just a hang-up or a close.
            after_start: list[Opening] = [
                lambda ws: ws.send_bytes(bytes(FRAME_BYTES - 2)),
                lambda ws: ws.send_bytes(b"\x01"),
                lambda ws: ws.send_json({"type": "dtmf", "digit": "A"}),
                lambda ws: ws.send_json({"type": "start"}),
                lambda ws: ws.send_str("{]"),
                lambda ws: ws.send_json({"type": "hangup"}),
                lambda ws: ws.send_json({"type": "hangup"}),
                lambda ws: ws.send_json({"type": "hangup"}),
                lambda ws: ws.close(),
                lambda ws: ws.close(),
                lambda ws: ws.send_json({"type": "nonsense"}),
                lambda ws: ws.send_json([1, 2, 3]),
            ]
            for after in after_start:
                bad = await call(session, server, audio=False)
                await asyncio.sleep(0.1)  # the greeting is playing to it
                await after(bad.ws)
                await asyncio.wait_for(bad.task, WAIT_S)
            await until(lambda: len(server.voicebot.media_calls) == 1)  # type: ignore[attr-defined]

            assert not good.ws.closed and good.got("hangup") is None  # the good call went on
            await hang_up(good, storage)
            rows = storage.calls_since(0)
            assert [row.call_id for row in rows] == [call_id]  # 20 garbage connections, 1 call
            assert connected_at <= rows[0].started_at <= first_audio_at  # when it started, not later
            kpis = compute_kpis(storage, 0)
            assert kpis["calls"] == 1 and kpis["transfers"] == 0
            assert storage.trace_events(call_id)

            after = await failures(session, server)
            counted = {key: n - before.get(key, 0) for key, n in after.items() if n - before.get(key, 0)}
            assert counted == {
                ("media", "bad_start"): 2,
                ("media", "bad_message"): 2 + 5,  # not JSON / nested before start, then after start
                ("media", "before_start"): 4,
                ("media", "bad_audio"): 2,
                ("media", "no_media"): 5,  # a start, then a hang-up or a close with nothing valid
            }
            assert sum(counted.values()) == 20

    run(scenario)


def test_bad_json_on_the_agent_socket_closes_that_desk_only(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            center = server.voicebot.center  # type: ignore[attr-defined]
            for garbage in ("[" * 3000, '{"type": "ready", "x": ' + "9" * 4400 + "}", "not json"):
                session, desk = await open_desk(server, "alice")
                other_session, other = await open_desk(server, "bob")
                await desk.ws.send_str(garbage)
                await asyncio.wait_for(desk.task, WAIT_S)
                assert desk.ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
                await until(lambda: "alice" not in center.desks)  # signed off the desk, not left hanging
                assert not other.ws.closed and "bob" in center.desks
                await other.ws.close()
                await until(lambda: "bob" not in center.desks)
                await session.close()
                await other_session.close()

    run(scenario)
