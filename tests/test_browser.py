"""Real browsers (Debian chromium via Playwright) against a real server on 127.0.0.1: the softphone's
microphone is a Piper-spoken WAV; the agent desk, the dashboard and a server restart."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright
import pytest
from aiohttp import web

from tests.baresip import BaresipPhone, phones_available, rms
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.wav import write_wav
from voicebot.engines import Engines
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
    agent.wait_for_function("window.desk.state === 'ready'", timeout=WAIT_MS)
    return agent


def snapshot(page: playwright.Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def queue_message(page: playwright.Page) -> dict:
    page.wait_for_function("window.phone.messages.some(m => m.type === 'queue')", timeout=WAIT_MS)
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

        agent.wait_for_function("window.desk.offer !== null", timeout=WAIT_MS)
        assert agent.inner_text("#pop-reason") == "caller_request"
        assert "talk_to_agent" in agent.inner_text("#pop-intents")
        assert "person" in agent.inner_text("#pop-transcript").lower()
        assert agent.inner_text("#pop-language") == "en"
        snapshot(agent, "agent-desk-offer-screen-pop")
        snapshot(caller, "softphone-in-queue")
        agent.click("#accept")
        agent.wait_for_function("window.desk.state === 'talking'", timeout=WAIT_MS)
        caller.wait_for_function(
            "window.phone.messages.some(m => m.type === 'agent_connected')", timeout=WAIT_MS
        )
        # From now on only the other side's microphone reaches each page: check both directions.
        caller.evaluate("window.phone.audio.resetStats()")
        agent.evaluate("window.desk.audio.resetStats()")
        agent.wait_for_function("window.desk.audio.stats.rxLoud > 10", timeout=WAIT_MS)
        caller.wait_for_function("window.phone.audio.stats.rxLoud > 10", timeout=WAIT_MS)
        assert agent.evaluate("window.desk.audio.stats.txLoud") > 10

        agent.click("#hangup")
        caller.wait_for_function("window.phone.state === 'ended'", timeout=WAIT_MS)
        agent.wait_for_function("window.desk.state === 'wrap_up'", timeout=WAIT_MS)
        agent.select_option("#disposition", "resolved")
        agent.fill("#notes", "explained the card replacement")
        agent.click("#submit-wrapup")
        agent.wait_for_function("window.desk.state === 'ready'", timeout=WAIT_MS)
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
            agent.wait_for_function("window.desk.offer !== null", timeout=WAIT_MS)
            assert agent.inner_text("#pop-reason") == "caller_request"
            assert agent.inner_text("#pop-caller") == "+15550190"
            agent.click("#accept")
            agent.wait_for_function("window.desk.state === 'talking'", timeout=WAIT_MS)
            agent.evaluate("window.desk.audio.resetStats()")
            phone.play(caller_wav)  # the caller speaks to the agent
            agent.wait_for_function("window.desk.audio.stats.rxLoud > 10", timeout=WAIT_MS)
            assert agent.evaluate("window.desk.audio.stats.txLoud") > 10
            agent.wait_for_timeout(3000)  # three seconds of the agent's voice on the phone
            agent.click("#hangup")
            phone.wait_closed(timeout=WAIT_MS / 1000)
            heard = phone.recordings()[-1].heard
        assert rms(heard[-4 * 8000 :]) > 0.01  # the agent's microphone reached the SIP caller
        agent.wait_for_function("window.desk.state === 'wrap_up'", timeout=WAIT_MS)
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
            page.wait_for_function("window.phone.state === 'bot'", timeout=WAIT_MS)
            page.click("button[data-key='0']")  # straight to an agent; none is ready
            queue_message(page)
        first, second = callers
        assert queue_message(second)["position"] == 2
        second.click("#hangup")
        dashboard = browser.new_context().new_page()
        log_in(dashboard, server.url, "/dashboard", "sue")
        dashboard.wait_for_function(
            "window.dashboard.data && window.dashboard.data.kpis.abandoned === 1", timeout=WAIT_MS
        )
        assert dashboard.inner_text("[data-kpi='Abandoned'] b") == "1"
        snapshot(dashboard, "dashboard-one-abandoned")
        first.click("button[data-key='1']")  # ask for a callback instead of waiting
        first.wait_for_function("window.phone.state === 'ended'", timeout=WAIT_MS)
    finally:
        server.stop()

    server = ServerThread(engines, tmp_path)  # restart on the same data
    try:
        dashboard = browser.new_context().new_page()
        log_in(dashboard, server.url, "/dashboard", "sue")
        dashboard.wait_for_function("window.dashboard.data !== null", timeout=WAIT_MS)
        kpis = dashboard.evaluate("window.dashboard.data.kpis")
        assert kpis["calls"] == 2 and kpis["abandoned"] == 1 and kpis["callbacks"] == 1
        [callback] = server.server.storage.pending_callbacks()
        assert callback.record["reason"] == "caller_request" and callback.record["transcript"]
    finally:
        server.stop()
