"""The agent desk's call controls and the supervisor's monitor in real browsers (Debian chromium via
Playwright) against a real server on 127.0.0.1, each side heard by signal: the caller's microphone
is a Piper-spoken request, the agents' a beeping 1 kHz tone, the supervisor's a beeping 1.6 kHz
tone (three browsers, one fake microphone each), and each page keeps the audio it receives exactly
as it came (PcmAudio.record), so the tests can tell who was heard."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import playwright.sync_api as playwright
import pytest

# The browser tests' server thread and helpers; `caller_wav` is a fixture, used by name.
from tests.test_browser import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_FLAGS,
    ServerThread,
    caller_wav,
    log_in,
    queue_call,
    snapshot,
    wait_until,
)
from voicebot.audio import FRAME_BYTES, SAMPLE_RATE
from voicebot.audio.wav import write_wav
from voicebot.engines import Engines
from voicebot.handoff.record import HandoffRecord
from voicebot.handoff.redact import account_key
from voicebot.server.auth import make_account
from voicebot.server.hold import hold_music
from voicebot.storage import Storage

T = TypeVar("T")

AGENT_TONE_HZ, SUPERVISOR_TONE_HZ = 1000.0, 1600.0
HEARD_SHARE = 0.2  # a tone carrying this share of what a page received was heard there
ABSENT_SHARE = 0.02  # and under this share it was not


def beeping_tone(frequency: float) -> bytes:
    """Four seconds of 150 ms beeps at ``frequency`` (not a steady tone: a noise suppressor keeps it)."""
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    gate = (np.floor(t / 0.15) % 2 == 0).astype(float)
    signal = 0.3 * 32767 * np.sin(2 * np.pi * frequency * t) * gate
    return signal.astype("<i2").tobytes()


@pytest.fixture(scope="module")
def tone_wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    folder = tmp_path_factory.mktemp("tones")
    paths = {}
    for frequency in (AGENT_TONE_HZ, SUPERVISOR_TONE_HZ):
        paths[frequency] = folder / f"tone-{int(frequency)}.wav"
        write_wav(paths[frequency], beeping_tone(frequency))
    return paths


class Browsers:
    """One Chromium per fake microphone: the caller's, the agents', the supervisor's."""

    def __init__(self, driver: playwright.Playwright, microphones: dict[str, Path]) -> None:
        self.browsers = {
            who: driver.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
            )
            for who, wav in microphones.items()
        }

    def page(self, who: str) -> playwright.Page:
        return self.browsers[who].new_context(viewport={"width": 1280, "height": 900}).new_page()

    def close(self) -> None:
        for browser in self.browsers.values():
            browser.close()


@pytest.fixture
def browsers(caller_wav: Path, tone_wavs: dict[float, Path]) -> Iterator[Browsers]:  # noqa: F811 (the fixture)
    with playwright.sync_playwright() as driver:
        microphones = {
            "caller": caller_wav,
            "agent": tone_wavs[AGENT_TONE_HZ],
            "supervisor": tone_wavs[SUPERVISOR_TONE_HZ],
        }
        opened = Browsers(driver, microphones)
        yield opened
        opened.close()


@pytest.fixture
def server(engines: Engines, tmp_path: Path) -> Iterator[ServerThread]:
    server = ServerThread(engines, tmp_path)
    for name, role in (("alice", "agent"), ("bob", "agent"), ("sue", "supervisor")):
        server.server.storage.save_agent(make_account(name, f"{name}-password", role))
    yield server
    server.stop()


def desk(browsers: Browsers, server: ServerThread, username: str) -> playwright.Page:
    page = browsers.page("agent")
    log_in(page, server.url, "/agent", username)
    page.click("#ready")
    wait_until(page, "window.desk.state === 'ready'")
    return page


def call_an_agent(
    browsers: Browsers, server: ServerThread, caller_id: str = "+15550142", by_key: bool = True
) -> playwright.Page:
    """A softphone call from ``caller_id`` that asks for an agent by key (0), or in words (the
    caller's microphone says "let me talk to a person")."""
    caller = browsers.page("caller")
    caller.goto(server.url + "/")
    caller.fill("#caller-id", caller_id)
    caller.click("#call")
    wait_until(caller, "window.phone.state === 'bot'")
    if by_key:
        caller.click("button[data-key='0']")
    wait_until(caller, "window.phone.messages.some(m => m.type === 'queue')")
    return caller


def stored(server: ServerThread, read: Callable[[Storage], T]) -> T:
    """``read`` of the server's storage on its own loop, after the live calls' events are written."""

    async def flushed() -> T:
        server.server.records.flush()
        return read(server.server.storage)

    return asyncio.run_coroutine_threadsafe(flushed(), server.loop).result(timeout=60)


def accept(agent: playwright.Page, caller: playwright.Page) -> None:
    wait_until(agent, "window.desk.offer !== null")
    agent.click("#accept")
    wait_until(agent, "window.desk.state === 'talking'")
    wait_until(caller, "window.phone.state === 'agent'")


def answered_call(browsers: Browsers, server: ServerThread) -> tuple[playwright.Page, playwright.Page]:
    """alice's desk and a caller she has answered (asked for by key)."""
    alice = desk(browsers, server, "alice")
    caller = call_an_agent(browsers, server)
    accept(alice, caller)
    return alice, caller


def received(page: playwright.Page, audio: str, seconds: float) -> np.ndarray:
    """What ``page`` receives over the next ``seconds``, sample for sample."""
    page.evaluate(f"{audio}.record({seconds})")
    page.wait_for_timeout(int(seconds * 1000) + 300)
    return np.frombuffer(base64.b64decode(page.evaluate(f"{audio}.recorded()")), dtype="<i2")


def share(samples: np.ndarray, frequency: float) -> float:
    """The share of the signal's energy within 40 Hz of ``frequency``."""
    spectrum = np.abs(np.fft.rfft(samples.astype(float))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    total = spectrum.sum()
    return float(spectrum[np.abs(frequencies - frequency) <= 40].sum() / total) if total else 0.0


def speech_energy(samples: np.ndarray, *tones: float) -> float:
    """RMS of what is left once the tones are taken out: the caller's speech."""
    spectrum = np.fft.rfft(samples.astype(float))
    frequencies = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    for tone in tones:
        spectrum[np.abs(frequencies - tone) <= 60] = 0
    return float(np.sqrt(np.mean(np.fft.irfft(spectrum, len(samples)) ** 2)))


def music_frames(samples: np.ndarray) -> int:
    """How many of the 20 ms frames received are frames of the hold music, exactly."""
    music = hold_music()
    known = {music[at : at + FRAME_BYTES] for at in range(0, len(music) - FRAME_BYTES + 1, FRAME_BYTES)}
    data = samples.tobytes()
    return sum(
        data[at : at + FRAME_BYTES] in known for at in range(0, len(data) - FRAME_BYTES + 1, FRAME_BYTES)
    )


PHONE_AUDIO, DESK_AUDIO, SUPERVISOR_AUDIO = (
    "window.phone.audio",
    "window.desk.audio",
    "window.supervisor.audio",
)


def test_hold_plays_music_to_the_caller_and_the_talk_resumes_with_its_live_transcript(
    browsers: Browsers, server: ServerThread
) -> None:
    alice, caller = answered_call(browsers, server)
    heard = received(caller, PHONE_AUDIO, 3)
    assert share(heard, AGENT_TONE_HZ) > HEARD_SHARE  # the agent reaches the caller
    # The caller's words said to the agent are recognised and shown as they come.
    wait_until(alice, "window.desk.live.some(l => l.speaker === 'Caller' && /person/i.test(l.text))")
    assert "person" in alice.inner_text("#live-transcript").lower()
    snapshot(alice, "agent-desk-during-a-call")

    held_at = time.time()  # the hold lasts at most from before the click to after the resume
    alice.click("#hold")
    wait_until(alice, "window.desk.call && window.desk.call.on_hold")
    on_hold = received(caller, PHONE_AUDIO, 8)  # the comfort message, then the music
    assert music_frames(on_hold) > 100 and share(on_hold, AGENT_TONE_HZ) < ABSENT_SHARE
    assert not received(alice, DESK_AUDIO, 2).any()  # nor does the agent hear the caller
    snapshot(alice, "agent-desk-on-hold")
    alice.click("#hold")  # resume
    wait_until(alice, "window.desk.call && !window.desk.call.on_hold")
    held_s = time.time() - held_at
    assert share(received(caller, PHONE_AUDIO, 3), AGENT_TONE_HZ) > HEARD_SHARE  # the agent is back
    assert speech_energy(received(alice, DESK_AUDIO, 6), AGENT_TONE_HZ) > 100

    alice.click("#hangup")
    wait_until(alice, "window.desk.state === 'wrap_up'")
    alice.select_option("#disposition", "resolved")
    alice.click("#submit-wrapup")
    wait_until(alice, "window.desk.state === 'ready'")
    [row] = stored(server, lambda storage: storage.dispositions_since(0))
    assert 8 <= row.hold_s <= held_s
    trace = stored(server, lambda storage: storage.trace_events(row.call_id))
    lines = [e for e in trace if e["type"] == "agent_leg_speech"]
    assert any("person" in line["text"].lower() for line in lines)  # stored with the call


def test_warm_transfer_the_second_agent_sees_the_pop_and_note_first_then_takes_the_caller(
    browsers: Browsers, server: ServerThread
) -> None:
    alice, caller = answered_call(browsers, server)
    bob = desk(browsers, server, "bob")

    alice.click("#transfer")
    wait_until(alice, "window.desk.targets !== null && window.desk.targets !== undefined")
    alice.select_option("#transfer-target", "agent:bob")
    alice.check("#transfer-mode-warm")
    alice.fill("#transfer-note", "wants the card limit raised")
    alice.click("#transfer-go")
    wait_until(bob, "window.desk.offer !== null")
    # Before accepting: the screen pop and the first agent's note.
    assert "wants the card limit raised" in bob.inner_text("#offer-transfer-note")
    assert bob.inner_text("#pop-reason") == "caller_request"
    assert music_frames(received(caller, PHONE_AUDIO, 6)) > 50  # the caller is on hold meanwhile
    snapshot(bob, "agent-desk-warm-transfer-offer")
    bob.click("#accept")
    wait_until(
        alice,
        "window.desk.call && window.desk.call.transfer && window.desk.call.transfer.state === 'connected'",
    )
    snapshot(alice, "agent-desk-warm-transfer-consult")
    alice.click("#complete-transfer")
    wait_until(alice, "window.desk.state === 'wrap_up'")
    wait_until(bob, "window.desk.call && !window.desk.call.on_hold")
    assert server.server.center.rooms[alice.evaluate("window.desk.wrapUp.pop.call_id")].agents == ["bob"]
    assert share(received(caller, PHONE_AUDIO, 3), AGENT_TONE_HZ) > HEARD_SHARE  # bob's microphone
    assert alice.input_value("#disposition") == "transferred"  # preselected after a transfer
    alice.click("#submit-wrapup")

    bob.click("#hangup")
    wait_until(bob, "window.desk.state === 'wrap_up'")
    bob.select_option("#disposition", "resolved")
    bob.click("#submit-wrapup")
    wait_until(bob, "window.desk.state === 'ready'")
    rows = stored(server, lambda storage: storage.dispositions_since(0))
    first, second = sorted(rows, key=lambda row: row.talk_started_at)
    assert (first.agent, first.disposition, second.agent, second.disposition) == (
        "alice",
        "transferred",
        "bob",
        "resolved",
    )
    # alice handled the call until she handed it over, bob from the consult until the end.
    assert first.talk_started_at < second.talk_started_at < first.talk_ended_at < second.talk_ended_at
    assert first.hold_s > 0 and second.hold_s > 0  # the consult was hold time for both


def test_a_repeat_caller_shows_the_first_calls_intents_disposition_and_notes(
    browsers: Browsers, server: ServerThread
) -> None:
    alice = desk(browsers, server, "alice")
    caller = call_an_agent(browsers, server, caller_id="+15550177", by_key=False)
    accept(alice, caller)
    alice.click("#hangup")
    wait_until(alice, "window.desk.state === 'wrap_up'")
    alice.select_option("#disposition", "follow_up")
    alice.fill("#notes", "card replacement ordered")
    alice.click("#submit-wrapup")
    wait_until(alice, "window.desk.state === 'ready'")
    caller.close()

    again = call_an_agent(browsers, server, caller_id="+15550177", by_key=True)
    wait_until(alice, "window.desk.offer !== null && window.desk.offer.history.contacts.length === 1")
    history = alice.inner_text("#history")
    assert "card replacement ordered" in history and "follow" in history.lower()
    assert "talk to agent" in history.lower()  # what the caller asked for the first time
    assert alice.is_visible("#repeat-flag")
    snapshot(alice, "agent-desk-repeat-caller")
    accept(alice, again)


def test_a_supervisor_monitors_whispers_to_the_agent_and_barges_in(
    browsers: Browsers, server: ServerThread
) -> None:
    alice = desk(browsers, server, "alice")
    supervisor = browsers.page("supervisor")
    log_in(supervisor, server.url, "/dashboard", "sue")
    caller = call_an_agent(browsers, server)
    accept(alice, caller)
    wait_until(supervisor, "window.supervisor.live && window.supervisor.live.calls.length === 1")

    supervisor.click("#calls button[data-mode='monitor']")
    wait_until(supervisor, "window.supervisor.monitoring && window.supervisor.monitoring.mode === 'monitor'")
    monitored = received(supervisor, SUPERVISOR_AUDIO, 6)
    assert (
        share(monitored, AGENT_TONE_HZ) > 0.05 and speech_energy(monitored, AGENT_TONE_HZ) > 100
    )  # both sides
    wait_until(supervisor, "window.supervisor.transcript.some(l => l.speaker === 'Caller')")
    snapshot(supervisor, "dashboard-supervisor-monitor")
    assert share(received(caller, PHONE_AUDIO, 2), SUPERVISOR_TONE_HZ) < ABSENT_SHARE

    supervisor.click("#mode-whisper")
    wait_until(supervisor, "window.supervisor.monitoring.mode === 'whisper'")
    assert share(received(alice, DESK_AUDIO, 3), SUPERVISOR_TONE_HZ) > 0.05  # the agent hears the whisper
    assert share(received(caller, PHONE_AUDIO, 3), SUPERVISOR_TONE_HZ) < ABSENT_SHARE  # the caller does not

    supervisor.click("#mode-barge")
    wait_until(supervisor, "window.supervisor.monitoring.mode === 'barge'")
    assert share(received(caller, PHONE_AUDIO, 3), SUPERVISOR_TONE_HZ) > 0.05  # now the caller does
    supervisor.click("#monitor-leave")
    wait_until(supervisor, "window.supervisor.monitoring === null")
    [call_id] = server.server.center.rooms
    trace = stored(server, lambda storage: storage.trace_events(call_id))
    actions = [e["action"] for e in trace if e["type"] == "agent_leg_action"]
    assert actions == ["accepted", "monitor", "whisper", "barge", "left"]


def test_an_authenticated_callers_customer_panel_is_on_the_desk_masked(
    browsers: Browsers, server: ServerThread
) -> None:
    """The panel comes from the demo bank through the actions plugin, with the account the caller
    authenticated as (kept in the server's memory, never in the stored record)."""
    alice = desk(browsers, server, "alice")
    record = HandoffRecord(
        "call-jane", "caller_request", "cards", "+15550102233", "en", "authenticated",
        slots={"account_number": "****5678"}, account="12345678", account_key=account_key("12345678"),
    )  # fmt: skip
    queue_call(server, record)
    wait_until(alice, "window.desk.offer !== null")
    panel = alice.inner_text("#customer")
    assert "Jane Doe" in panel and "$2,540.75" in panel and "****5678" in panel
    assert "12345678" not in panel and "12345678" not in alice.content()
    snapshot(alice, "agent-desk-customer-panel")
