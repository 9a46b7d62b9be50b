"""Agents by language (skills): agent profiles, routing by the caller's language and queue, the
caller's language in the queue, the desk's labels, and the figures split by language."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest

from tests.test_server import call, escalate, login, open_desk, run, running_server, until
from voicebot.engines import Engines
from voicebot.events import LanguageChanged
from voicebot.handoff.record import HandoffRecord, IntentTurn, TranscriptLine
from voicebot.server import hold
from voicebot.server.auth import make_account
from voicebot.server.caller_leg import CallerLeg
from voicebot.server.commands import add_commands
from voicebot.server.contact_center import ContactCenter
from voicebot.server.desk_labels import catalog, desk_labels, desk_texts
from voicebot.server.kpis import KpiCollector, compute_kpis
from voicebot.storage import DispositionRow, SqliteStorage


def spanish_record(call_id: str = "c-es") -> HandoffRecord:
    return HandoffRecord(
        call_id, "caller_request", "cards", "+15550142", "es", "identified",
        intents=[IntentTurn(1, "perdí mi tarjeta", "report_lost_card", 0.91, "accept")],
        transcript=[
            TranscriptLine("Bot", "Gracias por llamar a Acme Bank."),
            TranscriptLine("Caller", "perdí mi tarjeta"),
        ],
    )  # fmt: skip


# ----- agent profiles: the command line -------------------------------------------------------------


def test_agents_add_stores_languages_queues_and_ui_language_and_refuses_unknown_ones(
    engines: Engines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    config = engines.config.replace(data_dir=str(tmp_path), languages=["en", "es", "fa"])
    monkeypatch.setenv("VOICEBOT_PASSWORD", "a long password")
    argv = [
        "agents",
        "add",
        "paco",
        "--languages",
        "en,es",
        "--queues",
        "cards,general",
        "--ui-language",
        "es",
    ]
    args = parser.parse_args(argv)
    assert args.handler(args, config) == 0
    args = parser.parse_args(["agents", "add", "dora"])  # the defaults
    assert args.handler(args, config) == 0
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    paco, dora = storage.get_agent("paco"), storage.get_agent("dora")
    storage.close()
    assert paco is not None and (paco.languages, paco.queues, paco.ui_language) == (
        ("en", "es"),
        ("cards", "general"),
        "es",
    )
    assert dora is not None and (dora.languages, dora.queues, dora.ui_language) == (("en",), (), "en")
    capsys.readouterr()
    for bad, said in (
        (["--languages", "en,de"], "language 'de' is not one of the languages served (en, es, fa)"),
        (["--ui-language", "xx"], "--ui-language 'xx' is not one of the languages served"),
        (["--queues", "cardz"], "queue 'cardz' is not a queue of the flow"),
        (["--languages", ","], "--languages needs at least one"),
    ):
        args = parser.parse_args(["agents", "add", "eve", *bad])
        assert args.handler(args, config) == 2
        assert said in capsys.readouterr().err
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    assert storage.get_agent("eve") is None  # nothing saved
    storage.close()


# ----- the caller's language in the queue -------------------------------------------------------------


class Line:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def test_a_call_escalated_in_spanish_hears_the_queue_in_spanish(
    engines: Engines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call started in English and the caller switched: the handoff record's language is the one
    the queue announcements, hold messages and callback confirmation come from."""
    spoken: list[tuple[str, list[str]]] = []

    def announcement_audio(engines: Engines, language: str, parts: Any) -> bytes:
        prompts = engines.flow.prompts(language)
        spoken.append((language, [prompts.render(prompt_id, values) for prompt_id, values in parts]))
        return b""

    monkeypatch.setattr(hold, "announcement_audio", announcement_audio)
    spanish = engines.flow.prompts("es")

    async def scenario() -> None:
        storage = SqliteStorage(tmp_path / "voicebot.sqlite")
        leg = CallerLeg(
            ContactCenter(storage, offer_timeout_s=30), storage, engines, announce_interval_ms=30_000
        )
        leg.started("c-es", "+15550142", "en")
        record = spanish_record()
        leg.handoff(record)
        line = Line()
        leg.escalated(record, line)
        assert leg.language == "es"
        await until(lambda: spoken)
        language, texts = spoken[0]
        assert language == "es" and texts == [
            spanish.render("queue_next"),
            spanish.render("queue_wait_minutes", {"minutes": 3}),  # 180 s average handle time
            spanish.render("queue_callback_offer"),
        ]
        assert texts[0] != engines.flow.prompts("en").render("queue_next")
        await leg.step(bytes(640), "1")  # a callback instead of waiting
        await until(lambda: len(spoken) == 2)
        assert spoken[1] == ("es", [spanish.render("callback_confirmation")])
        await leg.ended("escalated", "callback", [])
        row = storage.get_call("c-es")
        assert row is not None and row.language == "es"  # the call counts for Spanish
        storage.close()

    run(scenario)


def test_a_contained_call_counts_for_the_language_it_switched_to(engines: Engines, tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = SqliteStorage(tmp_path / "voicebot.sqlite")
        leg = CallerLeg(
            ContactCenter(storage, offer_timeout_s=30), storage, engines, announce_interval_ms=30_000
        )
        leg.started("c-fa", "+15550143", "en")
        switched = LanguageChanged(call_id="c-fa", language="fa", previous="en", trigger="dtmf:7")
        await leg.ended("contained", "goodbye", [switched])
        row = storage.get_call("c-fa")
        assert row is not None and row.language == "fa" and row.outcome == "contained"
        storage.close()

    run(scenario)


# ----- routing by language over the server ------------------------------------------------------------


def test_an_english_caller_is_offered_to_the_english_agent_not_the_spanish_only_one(
    engines: Engines, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server:
            storage = server.voicebot.storage  # type: ignore[attr-defined]
            storage.save_agent(
                make_account("paco", "paco-password", "agent", languages=["es"], ui_language="es")
            )
            # paco logs in first: idle longest, but he does not speak English.
            paco_session, paco = await open_desk(server, "paco")
            alice_session, alice = await open_desk(server, "alice")
            async with aiohttp.ClientSession() as session:
                caller = await call(session, server)
                await escalate(caller)
                offer = await until(alice.offer)
                assert offer["pop"]["language"] == "en"
                await asyncio.sleep(0.5)  # several dispatch rounds
                assert paco.offer() is None and paco.state == "ready"
                sue = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                await login(sue, server, "sue")
                data = await (await sue.get(server.make_url("/api/dashboard"))).json()
                agents = {agent["username"]: agent for agent in data["live"]["agents"]}
                assert agents["paco"]["languages"] == ["es"] and agents["alice"]["languages"] == ["en"]
                assert data["language_names"]["es"] == "Español"
                metrics = await (await session.get(server.make_url("/metrics"))).text()
                assert 'voicebot_agents_by_language{language="es",state="ready"} 1' in metrics
                # paco's desk page is in Spanish, English where a label is missing.
                page = await (await paco_session.get(server.make_url("/agent"))).text()
                assert '<html lang="es" dir="ltr">' in page and "Escritorio del agente" in page
                assert re.search(r"Habla:</span> <span id=\"skills\">Español</span>", page)
                await caller.ws.close()
                await sue.close()
            for client in (paco_session, alice_session):
                await client.close()

    run(scenario)


# ----- the desk's labels ----------------------------------------------------------------------------


def test_desk_labels_fall_back_to_english_and_name_each_language(tmp_path: Path) -> None:
    (tmp_path / "en.yml").write_text(
        "name: English\nlabels: {reason: Reason, queue: Queue}\n", encoding="utf-8"
    )
    (tmp_path / "es.yml").write_text("name: Español\nlabels: {reason: Motivo}\n", encoding="utf-8")
    assert desk_labels("es", tmp_path) == {"reason": "Motivo", "queue": "Queue"}
    assert desk_labels("xx", tmp_path) == {"reason": "Reason", "queue": "Queue"}  # no file: English
    texts = desk_texts("es", ["en", "es", "xx"], tmp_path)
    assert texts["languages"]["es"] == {"name": "Español", "direction": "ltr"}
    assert texts["languages"]["xx"] == {"name": "xx", "direction": "ltr"}


def test_every_shipped_label_file_has_the_english_labels() -> None:
    english = catalog("en").labels
    for language in ("es", "fa"):
        shipped = catalog(language)
        assert set(shipped.labels) == set(english), language
    assert (catalog("es").name, catalog("fa").name, catalog("fa").direction) == ("Español", "فارسی", "rtl")


# ----- figures by language ----------------------------------------------------------------------------


def test_figures_split_by_the_calls_final_language(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "voicebot.sqlite")
    calls = (  # call id, language at start, outcome, queue result and wait, the language it ended in
        ("e1", "en", "contained", None, "en"),
        ("e2", "en", "escalated", ("answered", 10.0), "en"),
        ("s1", "es", "escalated", ("answered", 30.0), "es"),
        ("s2", "en", "escalated", ("abandoned", 40.0), "es"),  # switched to Spanish in the bot part
        ("s3", "es", "contained", None, "es"),
        ("f1", "fa", "escalated", ("callback", 5.0), "fa"),
        ("d1", "de", "contained", None, "de"),  # not served (any more): counted as other
    )
    for at, (call_id, started, outcome, queued, final) in enumerate(calls, start=100):
        storage.call_started(call_id, "+1555", started, at=float(at))
        if final != started:
            storage.set_call_language(call_id, final)
        if queued is not None:
            storage.save_handoff(
                HandoffRecord(call_id, "caller_request", "general", "+1555", final, "none", created_at=at)
            )
            entry = storage.queue_entered(call_id, "general", at=float(at))
            storage.queue_left(
                entry, queued[0], at=at + queued[1], agent="alice" if queued[0] == "answered" else None
            )
        storage.call_ended(call_id, outcome, "x", at=at + 60.0)
    storage.save_disposition(DispositionRow("s1", "paco", "resolved", "", 132.0, 192.0, 202.0))
    kpis = compute_kpis(storage, since=0.0, languages=["en", "es", "fa"])
    storage.close()

    assert kpis["calls"] == 7 and kpis["answered"] == 2  # the totals are unchanged by the split
    by = kpis["by_language"]
    assert list(by) == ["en", "es", "fa", "other"]
    assert (by["en"]["calls"], by["en"]["containment_rate"], by["en"]["transfers"]) == (2, 0.5, 1)
    assert (by["en"]["answered"], by["en"]["asa_s"]) == (1, 10.0)
    es = by["es"]
    assert (es["calls"], es["contained"], es["transfers"], es["transfer_rate"]) == (3, 1, 2, 0.667)
    assert (es["answered"], es["abandoned"], es["asa_s"], es["average_wait_s"]) == (1, 1, 30.0, 35.0)
    assert (es["abandonment_rate"], es["service_level_20s"], es["aht_s"], es["fcr"]) == (0.5, 0.0, 70.0, 1.0)
    assert (by["fa"]["callbacks"], by["fa"]["transfers"], by["fa"]["containment_rate"]) == (1, 1, 0.0)
    assert by["other"]["calls"] == 1 and by["other"]["contained"] == 1

    live = {
        "queues": {"general": [{"language": "es"}, {"language": "es"}, {"language": "de"}]},
        "agents": [{"state": "ready", "languages": ["en", "es"]}, {"state": "talking", "languages": ["es"]}],
    }
    text = generate_latest(KpiCollector(kpis, live, 60)).decode()
    assert 'voicebot_calls{window="60s"} 7.0' in text  # the overall series stay as they were
    assert 'voicebot_calls_by_language{language="es",window="60s"} 3.0' in text
    assert 'voicebot_containment_rate_by_language{language="en",window="60s"} 0.5' in text
    assert 'voicebot_average_wait_s_by_language{language="es",window="60s"} 35.0' in text
    assert 'voicebot_abandonment_rate_by_language{language="es",window="60s"} 0.5' in text
    assert 'voicebot_queue_waiting_by_language{language="es"} 2.0' in text
    assert 'voicebot_queue_waiting_by_language{language="other"} 1.0' in text
    assert 'voicebot_agents_by_language{language="es",state="talking"} 1.0' in text
    # The language label only ever takes the served languages and "other".
    values = set(re.findall(r'language="([^"]*)"', text))
    assert values == {"en", "es", "fa", "other"}
