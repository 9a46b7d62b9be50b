"""The baresip test phone itself, between two real baresip instances on loopback: it guards the harness
(tests/baresip.py) against baresip updates before the SIP tests of the bot rely on it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.baresip import phone_pair, phones_available, rms, tone, tone_power

pytestmark = pytest.mark.skipif(
    not phones_available(), reason="baresip (with g711, aufile, sndfile) not installed"
)

CALLER_HZ, CALLEE_HZ = 440.0, 1000.0


def test_tone_heard_both_ways_and_dtmf_delivered(tmp_path: Path) -> None:
    with phone_pair(tmp_path, caller_audio=tone(CALLER_HZ, 4), callee_audio=tone(CALLEE_HZ, 4)) as (
        caller,
        callee,
    ):
        caller.dial(callee.uri)
        assert caller.wait_established()["direction"] == "outgoing"
        assert callee.wait_established()["peeruri"] == caller.uri
        time.sleep(1.0)  # let some audio flow before the keys
        caller.send_dtmf("12#")
        assert callee.wait_for_dtmf("12#", timeout=5) == "12#"
        callee.send_dtmf("9")
        assert caller.wait_for_dtmf("9", timeout=5) == "9"
        caller.hangup()
        assert caller.wait_closed() == "Connection reset by user"
        assert callee.wait_closed() == "Connection reset by peer"

    for phone, own, peer in ((caller, CALLER_HZ, CALLEE_HZ), (callee, CALLEE_HZ, CALLER_HZ)):
        [recording] = phone.recordings()
        assert recording.sample_rate == 8000
        assert recording.heard.size > 8000, f"{phone.user} heard under 1 s"
        assert rms(recording.heard) > 0.1  # the tone is 0.3 peak, ~0.21 rms
        assert tone_power(recording.heard, peer) > 0.9
        assert tone_power(recording.sent, own) > 0.9


def test_tcp_with_pcma_first_and_callee_hangs_up(tmp_path: Path) -> None:
    with phone_pair(tmp_path, caller_audio=tone(CALLER_HZ, 3), codecs=("PCMA", "PCMU")) as (caller, callee):
        caller.dial(callee.uri, transport="tcp")
        caller.wait_established()
        invite = callee.wait_for_invite()
        assert invite.transport == "TCP"
        assert (invite.header("via") or "").startswith("SIP/2.0/TCP ")
        assert caller.uri in (invite.header("From") or "")
        assert "m=audio" in invite.body and " RTP/AVP 8 0 101" in invite.body
        callee.wait_established()
        time.sleep(0.5)
        callee.hangup()
        assert caller.wait_closed() == "Connection reset by peer"
        callee.wait_closed()
        assert "Set audio decoder: PCMA" in caller.output
    [recording] = callee.recordings()
    assert tone_power(recording.heard, CALLER_HZ) > 0.9
