"""A call in several languages: the greeting's offers, switching by key, by name and by the
recogniser's language identification, and a language that is not served. Scripted models behind
the real interfaces (each language its own recogniser, NLU and voice); the real flow and prompts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.scripted import (
    ScriptedNlu,
    ScriptedRecognizer,
    ScriptedSynthesizer,
    scripted_engines,
    silence,
    voiced,
)
from tests.test_stages import feed, until_quiet
from voicebot.asr.base import Transcript
from voicebot.call import CallSession
from voicebot.config import PROJECT_ROOT
from voicebot.dialogue.flow import load_flow
from voicebot.engines import Engines
from voicebot.events import BotSaid, LanguageChanged, NluParsed

FLOW = load_flow(PROJECT_ROOT / "prompts")
SPANISH = FLOW.prompts("es")
ENGLISH = FLOW.prompts("en")


class Languages:
    """English and Spanish callers' models, scripted: what each recogniser hears, each NLU knows."""

    def __init__(self, english: list[str | Transcript], spanish: list[str | Transcript]) -> None:
        self.en_asr, self.es_asr = ScriptedRecognizer(*english), ScriptedRecognizer(*spanish)
        self.en_nlu = ScriptedNlu({"my balance": "check_balance"})
        self.es_nlu = ScriptedNlu({"mi saldo": "check_balance", "quiero saber mi saldo": "check_balance"})
        self.en_voice, self.es_voice, self.fa_voice = (
            ScriptedSynthesizer(),
            ScriptedSynthesizer(),
            ScriptedSynthesizer(),
        )

    def engines(self, tmp_path: Path) -> Engines:
        fa = (ScriptedRecognizer(), ScriptedNlu({}), self.fa_voice)
        others = {"es": (self.es_asr, self.es_nlu, self.es_voice), "fa": fa}
        return scripted_engines(tmp_path, self.en_asr, self.en_nlu, self.en_voice, others=others)


def said(session: CallSession) -> list[BotSaid]:
    return [e for e in session.events if isinstance(e, BotSaid)]


async def started(session: CallSession) -> None:
    await session.start()
    await session.settle()
    await until_quiet(session)


async def speak(session: CallSession) -> None:
    await feed(session, voiced(600) + silence(1200))
    await until_quiet(session)


def after_one_answer(models: Languages, tmp_path: Path) -> CallSession:
    """A call that was greeted and to which the caller said one thing."""
    session = CallSession(models.engines(tmp_path))

    async def call() -> None:
        await started(session)
        await speak(session)

    asyncio.run(call())
    return session


def test_the_greeting_offers_the_other_languages_each_in_its_own_voice(tmp_path: Path) -> None:
    models = Languages([], [])
    session = CallSession(models.engines(tmp_path))
    asyncio.run(started(session))
    ids = [e.prompt_id for e in said(session)]
    assert ids[:4] == ["greeting", "language_offer", "language_offer", "main_menu"]
    spanish_offer = SPANISH.render("language_offer", {"key": "7"})
    assert spanish_offer in models.es_voice.spoken and spanish_offer not in models.en_voice.spoken
    assert any("8" in text for text in models.fa_voice.spoken)


def test_a_key_switches_the_call_to_spanish_and_asks_again_in_it(tmp_path: Path) -> None:
    models = Languages([], ["mi saldo"])
    session = CallSession(models.engines(tmp_path))

    async def call() -> None:
        await started(session)
        await session.step(dtmf="7")
        await session.settle()
        await until_quiet(session)
        await speak(session)

    asyncio.run(call())
    changed = [e for e in session.events if isinstance(e, LanguageChanged)]
    assert [(e.language, e.previous, e.trigger) for e in changed] == [("es", "en", "dtmf:7")]
    after = said(session)[[e.prompt_id for e in said(session)].index("main_menu") + 1 :]
    assert after[0].prompt_id == "main_menu" and after[0].text == SPANISH.render("main_menu")
    # The next answer is heard by the Spanish recogniser and understood by the Spanish NLU.
    assert models.es_nlu.parsed == ["mi saldo"] and models.en_nlu.parsed == []
    assert said(session)[-1].text == SPANISH.render("ask_account_number")
    assert session.dialogue.language == "es"


def test_saying_the_name_of_a_language_switches_to_it(tmp_path: Path) -> None:
    models = Languages(["Español, por favor."], [])
    session = after_one_answer(models, tmp_path)
    assert any(isinstance(e, LanguageChanged) and e.trigger == "spoken" for e in session.events)
    assert said(session)[-1].text == SPANISH.render("main_menu")


def test_a_first_request_heard_in_spanish_is_answered_in_spanish_without_asking(tmp_path: Path) -> None:
    heard = Transcript(
        "quiero saber mi saldo", 0.9, language="es", language_probability=0.97, text_language="es"
    )
    models = Languages([heard], [])
    session = after_one_answer(models, tmp_path)
    # The first request was asked for with the call's languages to tell apart.
    assert models.en_asr.hints[-1] is not None and models.en_asr.hints[-1].languages == ("en", "es", "fa")
    assert models.es_nlu.parsed == ["quiero saber mi saldo"] and models.en_nlu.parsed == []
    parsed = [e for e in session.events if isinstance(e, NluParsed)]
    assert parsed[-1].intent == "check_balance"
    assert [e.trigger for e in session.events if isinstance(e, LanguageChanged)] == ["detected"]
    assert said(session)[-1].text == SPANISH.render("ask_account_number")


def test_a_language_heard_without_certainty_is_offered_not_imposed(tmp_path: Path) -> None:
    heard = Transcript("my balance", 0.9, language="es", language_probability=0.6, text_language="en")
    models = Languages([heard], [])
    session = after_one_answer(models, tmp_path)
    assert session.dialogue.language == "en" and models.en_nlu.parsed == ["my balance"]
    last = said(session)[-3:]
    assert [e.prompt_id for e in last][-1] == "language_offer"
    assert SPANISH.render("language_offer", {"key": "7"}) in models.es_voice.spoken


def test_a_language_that_is_not_served_gets_the_default_with_an_apology(tmp_path: Path) -> None:
    models = Languages([], [])
    session = CallSession(models.engines(tmp_path), language="de")
    asyncio.run(started(session))
    assert session.language == "en"
    assert [e.prompt_id for e in said(session)][:2] == ["language_unavailable", "greeting"]
    assert said(session)[0].text == ENGLISH.render("language_unavailable")


def test_a_persian_caller_not_understood_gets_the_keypad_menu_then_an_agent(tmp_path: Path) -> None:
    """Persian speech is what the recogniser hears worst: what it makes of it is not understood,
    the re-prompt gives the keypad menu, and the next miss hands the call to an agent; no loop."""
    persian = Languages([], [])
    fa_asr = ScriptedRecognizer("salom micho ambozhu", "dites of amrobetaliam")
    engines = scripted_engines(
        tmp_path,
        persian.en_asr,
        persian.en_nlu,
        persian.en_voice,
        others={"fa": (fa_asr, ScriptedNlu({}), persian.fa_voice)},
    )
    session = CallSession(engines, language="fa", on_handoff=lambda record: None)

    async def call() -> None:
        await started(session)
        await speak(session)
        await speak(session)

    asyncio.run(call())
    persian_prompts = FLOW.prompts("fa")
    texts = [e.text for e in said(session)]
    assert persian_prompts.render("main_menu_examples") in texts  # the keys, in Persian
    assert session.outcome == "escalated" and session.dialogue.handoff is not None
    assert session.dialogue.handoff.reason == "no_match" and session.dialogue.handoff.language == "fa"
