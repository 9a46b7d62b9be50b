"""scripts/bench_eot.py measures the listener as calls use it: with scripted engines, its
combined row must see the NLU's verdict (a request understood ends at the first check)."""

from __future__ import annotations

import asyncio

from tests.bench_scripts import load_script
from tests.scripted import ScriptedNlu, ScriptedRecognizer, silence, voiced
from voicebot.config import EndpointConfig

bench = load_script("bench_eot")
CONFIG = EndpointConfig()


class ConstantModel:
    name = "constant"

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def complete(self, pcm: bytes) -> float:
        return self.probability


def closed_after_speech_ms(nlu: ScriptedNlu | None) -> int:
    speech = voiced(900)
    turn = bench.Turn(silence(500) + speech + silence(2000), 1400, (), None, "what is my balance")
    closed = asyncio.run(
        bench.closes_at(turn, CONFIG, ScriptedRecognizer("what is my balance"), ConstantModel(0.7), nlu)
    )
    assert closed is not None
    return closed - turn.speech_end_ms


def test_the_combined_row_ends_an_understood_request_at_the_first_check() -> None:
    understood = closed_after_speech_ms(ScriptedNlu({"what is my balance": ("check_balance", 0.9)}))
    without_nlu = closed_after_speech_ms(None)

    assert understood < CONFIG.turn_sure_silence_ms
    assert without_nlu >= CONFIG.turn_max_silence_ms


def test_turns_are_sorted_into_kinds() -> None:
    kinds = {
        bench.kind_of(bench.Turn(b"", 0, pauses, digits, ""))
        for pauses, digits in [((1,), None), ((), 8), ((), None)]
    }
    assert kinds == set(bench.KINDS)
