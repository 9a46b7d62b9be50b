"""Real browsers (Debian chromium via Playwright) against a real server on 127.0.0.1: the softphone's
microphone is a Piper-spoken WAV; the agent desk, the dashboard and a server restart."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright
import pytest
from aiohttp import web

from tests.baresip import BaresipPhone, phones_available, rms
from tests.desk_doubles import FakeCaller
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.wav import write_wav
from voicebot.engines import Engines
from voicebot.handoff.record import HandoffRecord, TranscriptLine
from voicebot.server.app import VoicebotServer
from voicebot.server.auth import make_account
from voicebot.tts.base import Synthesizer
from voicebot.tts.piper_engine import synthesize_all

# `make setup` installs Debian's chromium; without it these tests fail (they never skip).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Set to a folder (e.g. docs/screenshots) to keep pictures of the pages for the docs.
SCREENSHOTS = os.environ.get("VOICEBOT_SCREENSHOTS")
WAIT_MS = 60_000  # upper bound for waits; the tests never assert on timing
CHROMIUM_FLAGS = [
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--no-sandbox",
    "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


class ServerThread:
    """The server on its own event loop in a thread, so the (synchronous) Playwright API can drive it."""

    def __init__(self, engines: Engines, data_dir: Path) -> None:
        config = engines.config.replace(data_dir=str(data_dir))
        self.server = VoicebotServer(dataclasses.replace(engines, config=config), config.server)
        self.runner = web.AppRunner(self.server.app())
        self.loop = asyncio.new_event_loop()
        listening = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(listening,), daemon=True)
        self.thread.start()
        assert listening.wait(timeout=60), "server did not start"
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def _serve(self, listening: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        listening.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)
        self.loop.close()


@pytest.fixture(scope="module")
def caller_wav(caller_voice: Synthesizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'let me talk to a person', with silence around it (Chromium loops the file)."""
    speech = synthesize_all(caller_voice, "let me talk to a person")
    silence = bytes(SAMPLE_RATE * 2)  # one second
    path = tmp_path_factory.mktemp("wav") / "caller.wav"
    write_wav(path, silence + speech + silence * 3)
    return path


@pytest.fixture
def browser(caller_wav: Path) -> Iterator[playwright.Browser]:
    with playwright.sync_playwright() as driver:
        args = [*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={caller_wav}"]
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


def add_accounts(server: ServerThread) -> None:
    for name, role in (("alice", "agent"), ("sue", "supervisor")):
        server.server.storage.save_agent(make_account(name, f"{name}-password", role))


POLL_MS = 50


def wait_until(page: playwright.Page, expression: str) -> None:
    """Like ``page.wait_for_function``, which polls by evaluating a string in the page: the pages'
    Content-Security-Policy forbids that (no 'unsafe-eval'), ``evaluate`` runs over DevTools."""
    for _ in range(WAIT_MS // POLL_MS):
        if page.evaluate(expression):
            return
        page.wait_for_timeout(POLL_MS)
    raise AssertionError(f"not true within {WAIT_MS / 1000:.0f} s: {expression}")


def log_in(page: playwright.Page, url: str, path: str, username: str) -> None:
    page.goto(f"{url}/login?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}{path}")


def ready_agent(browser: playwright.Browser, server: ServerThread) -> playwright.Page:
    """alice's desk in its own browser context, logged in and ready (the accounts made first)."""
    add_accounts(server)
    agent = browser.new_context().new_page()
    log_in(agent, server.url, "/agent", "alice")
    agent.click("#ready")
    wait_until(agent, "window.desk.state === 'ready'")
    return agent


def snapshot(page: playwright.Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def queue_message(page: playwright.Page) -> dict:
    wait_until(page, "window.phone.messages.some(m => m.type === 'queue')")
    return page.evaluate("window.phone.messages.find(m => m.type === 'queue')")


def test_spoken_request_reaches_an_agent_with_screen_pop_and_two_way_audio(
    engines: Engines, browser: playwright.Browser, tmp_path: Path
) -> None:
    server = ServerThread(engines, tmp_path)
    try:
        agent = ready_agent(browser, server)

        caller = browser.new_context().new_page()
        caller.goto(server.url + "/")
        caller.click("#call")
        # The bot hears the WAV through getUserMedia + the AudioWorklet and escalates on it.
        assert queue_message(caller)["position"] == 1

        wait_until(agent, "window.desk.offer !== null")
        assert agent.inner_text("#pop-reason") == "caller_request"
        assert "talk_to_agent" in agent.inner_text("#pop-intents")
        assert "person" in agent.inner_text("#pop-transcript").lower()
        assert agent.inner_text("#pop-language") == "English"  # the caller's language by its own name
        assert agent.get_attribute("#pop-language", "lang") == "en"
        snapshot(agent, "agent-desk-offer-screen-pop")
        snapshot(caller, "softphone-in-queue")
        agent.click("#accept")
        wait_until(agent, "window.desk.state === 'talking'")
        wait_until(caller, "window.phone.messages.some(m => m.type === 'agent_connected')")
        # From now on only the other side's microphone reaches each page: check both directions.
        caller.evaluate("window.phone.audio.resetStats()")
        agent.evaluate("window.desk.audio.resetStats()")
        wait_until(agent, "window.desk.audio.stats.rxLoud > 10")
        wait_until(caller, "window.phone.audio.stats.rxLoud > 10")
        assert agent.evaluate("window.desk.audio.stats.txLoud") > 10

        agent.click("#hangup")
        wait_until(caller, "window.phone.state === 'ended'")
        wait_until(agent, "window.desk.state === 'wrap_up'")
        agent.select_option("#disposition", "resolved")
        agent.fill("#notes", "explained the card replacement")
        agent.click("#submit-wrapup")
        wait_until(agent, "window.desk.state === 'ready'")
    finally:
        server.stop()


@pytest.mark.skipif(not phones_available(), reason="baresip is not installed (make setup)")
def test_sip_caller_reaches_a_browser_agent_with_two_way_audio(
    engines: Engines, browser: playwright.Browser, caller_wav: Path, tmp_path: Path
) -> None:
    """A real SIP phone (baresip) keys 0; the agent in Chromium gets the screen pop with its caller id,
    accepts, and each side hears the other: the desk's meter for the phone's speech, the phone's
    recording for the agent's microphone (the same looping WAV)."""
    server = ServerThread(engines, tmp_path)
    try:
        agent = ready_agent(browser, server)
        assert server.server.sip is not None
        with BaresipPhone(tmp_path / "phone", user="+15550190", audio=caller_wav) as phone:
            phone.dial(f"sip:100@127.0.0.1:{server.server.sip.port}")
            phone.wait_established()
            phone.send_dtmf("0")
            wait_until(agent, "window.desk.offer !== null")
            assert agent.inner_text("#pop-reason") == "caller_request"
            assert agent.inner_text("#pop-caller") == "+15550190"
            agent.click("#accept")
            wait_until(agent, "window.desk.state === 'talking'")
            agent.evaluate("window.desk.audio.resetStats()")
            phone.play(caller_wav)  # the caller speaks to the agent
            wait_until(agent, "window.desk.audio.stats.rxLoud > 10")
            assert agent.evaluate("window.desk.audio.stats.txLoud") > 10
            agent.wait_for_timeout(3000)  # three seconds of the agent's voice on the phone
            agent.click("#hangup")
            phone.wait_closed(timeout=WAIT_MS / 1000)
            heard = phone.recordings()[-1].heard
        assert rms(heard[-4 * 8000 :]) > 0.01  # the agent's microphone reached the SIP caller
        wait_until(agent, "window.desk.state === 'wrap_up'")
    finally:
        server.stop()


def test_second_caller_abandons_and_a_callback_survives_a_restart(
    engines: Engines, browser: playwright.Browser, tmp_path: Path
) -> None:
    server = ServerThread(engines, tmp_path)
    try:
        add_accounts(server)
        callers = [browser.new_context().new_page() for _ in range(2)]
        for page in callers:
            page.goto(server.url + "/")
            page.click("#call")
            wait_until(page, "window.phone.state === 'bot'")
            page.click("button[data-key='0']")  # straight to an agent; none is ready
            queue_message(page)
        first, second = callers
        assert queue_message(second)["position"] == 2
        second.click("#hangup")
        dashboard = browser.new_context().new_page()
        log_in(dashboard, server.url, "/dashboard", "sue")
        wait_until(dashboard, "window.dashboard.data && window.dashboard.data.kpis.abandoned === 1")
        assert dashboard.inner_text("[data-kpi='Abandoned'] b") == "1"
        snapshot(dashboard, "dashboard-one-abandoned")
        first.click("button[data-key='1']")  # ask for a callback instead of waiting
        wait_until(first, "window.phone.state === 'ended'")
    finally:
        server.stop()

    server = ServerThread(engines, tmp_path)  # restart on the same data
    try:
        dashboard = browser.new_context().new_page()
        log_in(dashboard, server.url, "/dashboard", "sue")
        wait_until(dashboard, "window.dashboard.data !== null")
        kpis = dashboard.evaluate("window.dashboard.data.kpis")
        assert kpis["calls"] == 2 and kpis["abandoned"] == 1 and kpis["callbacks"] == 1
        [callback] = server.server.storage.pending_callbacks()
        assert callback.record["reason"] == "caller_request" and callback.record["transcript"]
    finally:
        server.stop()


def queue_call(server: ServerThread, record: HandoffRecord) -> None:
    async def enqueue() -> None:
        server.server.center.enqueue(FakeCaller(record.call_id), record)

    asyncio.run_coroutine_threadsafe(enqueue(), server.loop).result(timeout=60)


def desk_of(browser: playwright.Browser, server: ServerThread, username: str) -> playwright.Page:
    page = browser.new_context().new_page()
    log_in(page, server.url, "/agent", username)
    page.click("#ready")
    wait_until(page, "window.desk.state === 'ready'")
    return page


def test_screen_pops_in_the_agents_ui_language_with_the_callers_script_and_direction(
    engines: Engines, browser: playwright.Browser, tmp_path: Path
) -> None:
    server = ServerThread(engines, tmp_path)
    try:
        storage = server.server.storage
        storage.save_agent(make_account("paco", "paco-password", "agent", languages=["es"], ui_language="es"))
        storage.save_agent(
            make_account("shirin", "shirin-password", "agent", languages=["fa"], ui_language="fa")
        )
        paco, shirin = desk_of(browser, server, "paco"), desk_of(browser, server, "shirin")
        assert paco.inner_text("#ready") == "Disponible" and paco.inner_text("#state") == "disponible"

        spanish = [
            TranscriptLine("Bot", "¿En qué le puedo ayudar?"),
            TranscriptLine("Caller", "perdí mi tarjeta"),
        ]
        queue_call(
            server,
            HandoffRecord(
                "call-es", "caller_request", "cards", "+1555", "es", "identified", transcript=spanish
            ),
        )
        wait_until(paco, "window.desk.offer !== null")
        assert paco.inner_text("#pop-language") == "Español"
        pop = paco.inner_text("#offer")
        for label in (
            "Llamada entrante",
            "Motivo:",
            "Idioma:",
            "Autenticación:",
            "Transcripción",
            "Cliente:",
        ):
            assert label in pop
        assert "Reason" not in pop and "Transcript" not in pop
        assert paco.inner_text("#accept") == "Aceptar"
        lines = paco.locator("#pop-transcript .line-text")
        assert lines.all_inner_texts() == ["¿En qué le puedo ayudar?", "perdí mi tarjeta"]
        assert (lines.nth(1).get_attribute("lang"), lines.nth(1).get_attribute("dir")) == ("es", "ltr")
        assert paco.locator("#pop-transcript .line b").first.inner_text().strip() == "Bot:"
        snapshot(paco, "agent-desk-spanish-screen-pop")

        persian = [TranscriptLine("Caller", "کارتم را گم کردم"), TranscriptLine("Caller", "(pressed 0)")]
        queue_call(
            server,
            HandoffRecord("call-fa", "caller_request", "general", "+1555", "fa", "none", transcript=persian),
        )
        wait_until(shirin, "window.desk.offer !== null")
        assert shirin.evaluate("[document.documentElement.lang, document.documentElement.dir]") == [
            "fa",
            "rtl",
        ]
        assert shirin.inner_text("#pop-language") == "فارسی"
        assert "متن گفتگو" in shirin.inner_text("#offer")  # Transcript, in Persian
        persian, keyed = shirin.locator("#pop-transcript .line-text").all()
        assert (persian.get_attribute("dir"), persian.get_attribute("lang")) == ("rtl", "fa")
        assert keyed.get_attribute("dir") == "ltr"  # Latin text in a Persian call stays left to right
        assert paco.evaluate("window.desk.messages.filter(m => m.type === 'offer').length") == 1
        snapshot(shirin, "agent-desk-persian-screen-pop")
    finally:
        server.stop()


def test_dashboard_splits_the_figures_by_language(
    engines: Engines, browser: playwright.Browser, tmp_path: Path
) -> None:
    server = ServerThread(engines, tmp_path)
    try:
        add_accounts(server)
        storage = server.server.storage
        now = time.time()
        for call_id, language, outcome in (
            ("a", "en", "contained"),
            ("b", "es", "contained"),
            ("c", "es", "x"),
        ):
            storage.call_started(call_id, "+1555", language, at=now - 60)
            storage.call_ended(call_id, "escalated" if outcome == "x" else outcome, "test", at=now - 30)
        dashboard = browser.new_context().new_page()
        log_in(dashboard, server.url, "/dashboard", "sue")
        dashboard.wait_for_selector("#by-language tr[data-language='es']", timeout=WAIT_MS)
        spanish = dashboard.locator("#by-language tr[data-language='es'] td").all_inner_texts()
        assert spanish[:3] == ["Español (es)", "2", "50.0 %"]  # language, calls, containment
        english = dashboard.locator("#by-language tr[data-language='en'] td").all_inner_texts()
        assert english[:3] == ["English (en)", "1", "100.0 %"]
        snapshot(dashboard, "dashboard-by-language")
    finally:
        server.stop()
