"""Privacy across whole calls: callers key and speak a card number, an account number and a PIN
through the real pipeline, and no store holds any of them in clear afterwards: the trace, a recorded
session, the handoff record, the console, the logs, and (through the server) its SQLite database and
WAL. The sweep is scripts/sweep_privacy.py's, which measures the same through `voicebot serve`."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scripts.sweep_privacy import (
    ACCOUNT,
    KEYED_CARD,
    PIN,
    SPOKEN_CARD,
    StoreHits,
    digit_words,
    keys_pressed,
    sweep,
)
from tests.test_server import Caller, call, hang_up, running_server, until
from voicebot.audio import FRAME_BYTES
from voicebot.audio.codecs import split_frames
from voicebot.call import CallSession
from voicebot.config import PROJECT_ROOT, Config
from voicebot.console import ConversationPrinter
from voicebot.demo.actions import register_bank_actions
from voicebot.demo.bank import AcmeBank
from voicebot.dialogue.actions import ActionRegistry
from voicebot.dialogue.flow import load_flow
from voicebot.dialogue.manager import DialogueManager, Say
from voicebot.engines import Engines
from voicebot.events import CallEvent, read_trace
from voicebot.handoff.record import CallStore
from voicebot.nlu.base import IntentScore, NluResult
from voicebot.sessions import TRACE, SessionRecorder
from voicebot.storage import Storage
from voicebot.transports.simulated import CallerTurn, run_simulated_call
from voicebot.tts.base import Synthesizer
from voicebot.tts.piper_engine import synthesize_all

SAID_CARD = f"my card number is {digit_words(SPOKEN_CARD.digits)}"


def clear_hits(stores: dict[str, StoreHits]) -> dict[str, dict[str, int]]:
    """The stores that hold a secret in clear, with what they hold."""
    return {name: {s: n for s, n in hits.hits.items() if n} for name, hits in stores.items() if hits.total}


def caller_texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] in ("asr_final", "nlu_parsed")]


def test_keyed_digits_leave_only_their_last_four_in_every_store(
    engines: Engines, caller_voice: Synthesizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the trace's key events spelled "41111111****1111#" and "12345678"."""
    turns = [
        CallerTurn(dtmf="4"),  # a lost card: who is calling?
        CallerTurn(dtmf=KEYED_CARD.digits + "#"),  # a card where the account number goes
        CallerTurn(dtmf=ACCOUNT.digits),
        CallerTurn(dtmf=PIN.digits),
        CallerTurn(audio=synthesize_all(caller_voice, SAID_CARD)),
        CallerTurn(dtmf="0"),
    ]
    events, record, stores = recorded_call(engines, turns, tmp_path, caplog)
    assert clear_hits(stores) == {}
    assert record["auth_level"] == "authenticated" and record["slots"]["account_number"] == "****5678"
    # The card's first eight digits were tried as an account, its last four were the next try.
    assert record["dtmf"] == ["4", "****1111", "[withheld]", "1111", "****5678", "[withheld]", "0"]
    keys = [e for e in events if e["type"] == "dtmf"]
    assert "".join(e["digits"] for e in keys) == "4" + "*" * 16 + "#" + "*" * 12 + "0"
    assert [e["masked"] for e in keys].count(True) == 28
    assert any("card number is [card ending 6467]" in text for text in caller_texts(events))


def test_spoken_digits_leave_only_their_last_four_in_every_store(
    engines: Engines, caller_voice: Synthesizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the spoken card was in clear in the ASR and NLU text, the spoken account number in
    the handoff transcript."""
    said = [
        "I want to dispute a charge on my card",
        digit_words(ACCOUNT.digits, groups_of=8),
        digit_words(PIN.digits),
        SAID_CARD,
    ]
    turns = [*(CallerTurn(audio=synthesize_all(caller_voice, text)) for text in said), CallerTurn(dtmf="0")]
    events, record, stores = recorded_call(engines, turns, tmp_path, caplog)
    assert clear_hits(stores) == {}
    assert record["auth_level"] == "authenticated"  # the spoken account and PIN were understood
    heard = " | ".join(caller_texts(events))
    assert "[withheld]" in heard and "****5678" in heard and "[card ending 6467]" in heard
    caller_lines = " | ".join(line["text"] for line in record["transcript"] if line["speaker"] == "Caller")
    assert "****5678" in caller_lines and "[withheld]" in caller_lines


@pytest.mark.parametrize(
    ("language", "said"),
    [
        ("es", "es el uno dos tres cuatro cinco seis siete ocho"),
        ("fa", "یک دو سه چهار پنج شش هفت هشت"),
        ("fa", "۱۲۳۴۵۶۷۸"),
    ],
)
def test_an_account_number_said_in_spanish_or_persian_keeps_its_last_four(
    db_path: Path, language: str, said: str
) -> None:
    actions = ActionRegistry()
    register_bank_actions(actions, AcmeBank(db_path))
    flow = load_flow(PROJECT_ROOT / "prompts")
    events: list[CallEvent] = []
    dialogue = DialogueManager(
        flow, language, actions, Config().policy, call_id="t", caller_id="+1", emit=events.append
    )
    dialogue.start()
    dialogue.on_utterance("balance", understood("balance", "check_balance"))
    assert dialogue.privacy.digits and not dialogue.privacy.secret  # it asks for the account number
    answered = dialogue.on_utterance(said, understood(said, "nlu_fallback"))
    assert [o.prompt_id for o in answered if isinstance(o, Say)] == ["ask_pin"]  # the number was read
    heard = [line.text for line in dialogue.memory.transcript if line.speaker == "Caller"]
    intents = [turn.text for turn in dialogue.memory.intents]
    assert heard[-1].endswith("****5678") and intents[-1] == heard[-1]
    assert dialogue.privacy.secret  # the PIN is next


def understood(text: str, intent: str) -> NluResult:
    return NluResult(text, IntentScore(intent, 0.9), (IntentScore(intent, 0.9),))


def recorded_call(
    engines: Engines, turns: list[CallerTurn], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, StoreHits]]:
    """A call recorded as `voicebot mic --record` does, its handoff kept as `voicebot call` keeps it,
    printed as `voicebot call -v` prints it; its trace, handoff record and every store swept."""
    calls = CallStore(tmp_path / "calls")
    console = io.StringIO()
    session = CallSession(
        engines,
        caller_id="+15550142",
        listeners=[ConversationPrinter(console, detail=True)],
        on_handoff=calls.save_handoff,
    )
    recorder = SessionRecorder(tmp_path / "session", session)
    with caplog.at_level(logging.DEBUG, logger="voicebot"):
        call = asyncio.run(run_simulated_call(session, turns))
    recorder.add_frames(bytes(call.caller_audio), bytes(call.bot_audio))
    recorder.close()
    assert session.outcome == "escalated"
    events = read_trace(tmp_path / "session" / TRACE)
    texts = {
        "console": [console.getvalue().encode()],
        "logs": [caplog.text.encode()],
        "key presses run together": keys_pressed({session.call_id: events}),
    }
    stores = sweep(tmp_path, texts, exclude=tmp_path.rglob("*.wav"))  # the call's audio is sound
    assert {"recorded sessions", "json files", "console", "logs"} <= set(stores)
    return events, calls.load_handoff(session.call_id), stores


def test_nothing_in_clear_in_the_servers_sqlite_and_wal(
    engines: Engines, caller_voice: Synthesizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the server's media WebSocket: the card, account and PIN keyed, a card said. Its
    database and WAL, read as bytes while it runs and after it stopped, hold none in clear."""
    said = list(split_frames(synthesize_all(caller_voice, SAID_CARD)))
    database = tmp_path / "voicebot.sqlite"

    async def scenario() -> None:
        async with running_server(engines, tmp_path) as server, aiohttp.ClientSession() as session:
            storage: Storage = server.voicebot.storage  # type: ignore[attr-defined]
            caller = await call(session, server, caller_id="+15550143")
            call_id: str = caller.got("started")["call_id"]  # type: ignore[index]
            trace = Trace(storage, call_id)
            await until(lambda: trace.count("bot_said", "greeting"))
            await trace.after(press(caller, "4"), "ask_account_number")
            await trace.after(press(caller, KEYED_CARD.digits + "#"), "slot_invalid")  # 41111111 failed
            await trace.after(press(caller, ACCOUNT.digits), "ask_pin")
            await trace.after(press(caller, PIN.digits), "confirm_block_card")
            await until(trace.prompt_finished)
            await trace.after(say(caller, said), kind="nlu_parsed")
            await press(caller, "0")
            await caller.wait_for("queue")
            await hang_up(caller, storage)
            events = storage.trace_events(call_id)
            texts = {
                "logs": [caplog.text.encode()],
                "key presses run together": keys_pressed({call_id: events}),
            }
            live = sweep(tmp_path, texts)
            assert {"sqlite", "sqlite wal"} <= set(live) and clear_hits(live) == {}
            assert "".join(e["digits"] for e in events if e["type"] == "dtmf").count("*") == 28
            assert any("[card ending 6467]" in text for text in caller_texts(events))
            assert storage.get_handoff(call_id)["slots"]["account_number"] == "****5678"  # type: ignore[index]
            assert database.with_name(database.name + "-wal").stat().st_size > 0

    with caplog.at_level(logging.DEBUG, logger="voicebot"):
        asyncio.run(scenario())
    stopped = sweep(tmp_path, {"logs": [caplog.text.encode()]})
    assert "sqlite" in stopped and clear_hits(stopped) == {}


class Trace:
    """A live call's trace as the server streams it to storage."""

    def __init__(self, storage: Storage, call_id: str) -> None:
        self.storage = storage
        self.call_id = call_id

    def count(self, kind: str, prompt_id: str | None = None) -> int:
        events = self.storage.trace_events(self.call_id)
        return sum(e["type"] == kind and prompt_id in (None, e.get("prompt_id")) for e in events)

    async def after(self, act: Awaitable[None], prompt_id: str | None = None, kind: str = "bot_said") -> None:
        """Does ``act``, then waits for one more event ``kind`` (the bot beginning ``prompt_id``)."""
        before = self.count(kind, prompt_id)
        await act
        await until(lambda: self.count(kind, prompt_id) > before)

    def prompt_finished(self) -> bool:
        """The bot has finished the prompt it began last."""
        events = self.storage.trace_events(self.call_id)
        began = max(i for i, e in enumerate(events) if e["type"] == "bot_said")
        return any(e["type"] == "tts_finished" for e in events[began:])


async def press(caller: Caller, keys: str) -> None:
    for key in keys:
        await caller.ws.send_json({"type": "dtmf", "digit": key})
        await asyncio.sleep(0.1)  # as a person keys


async def say(caller: Caller, frames: list[bytes]) -> None:
    """The caller's words, then a second of silence, one 20 ms frame at a time as a line sends them."""
    for frame in [*frames, *[bytes(FRAME_BYTES)] * 50]:
        await caller.ws.send_bytes(frame)
        await asyncio.sleep(0.02)
