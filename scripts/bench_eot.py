"""End-of-turn benchmark in the spirit of LiveKit's eot-bench: caller turns with natural pauses
inside them (hesitations, clauses, digit groups), several voices, wideband and phone band.

Each turn is spoken as segments with a pause between them and fed, 20 ms at a time on the audio
clock, through the real Listener (webrtcvad endpointer, Whisper speculation, Smart Turn) with the
end-of-turn setting of each row. A turn that closes during one of its inner pauses is a false
cut-off; for the others the delay is the time from the end of the caller's last word to the
decision. Model inference is awaited after every frame, so delays are on the audio clock (add the
~25-50 ms a Smart Turn inference costs for wall time). No assertions: prints JSON (also written to
reports/bench_eot.json), then a table.

Two sets of turns: ``dev`` (the defaults were chosen on it) and ``held-out`` (never used to choose).

    .venv/bin/python scripts/bench_eot.py [--turns dev|held-out] [--piper] [--limit N]
        [--rows silence-600 combined] [--set turn_sure_silence_ms=800]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebot.asr.base import RecognitionHints, Recognizer, Transcript
from voicebot.asr.catalog import create_recognizer
from voicebot.audio import FRAME_MS, SAMPLE_RATE
from voicebot.audio.codecs import split_frames
from voicebot.audio.degrade import telephone_channel
from voicebot.audio.wav import samples_from_pcm
from voicebot.call.listener import Listener
from voicebot.config import PROJECT_ROOT, EndpointConfig, load_config
from voicebot.console import quiet_console
from voicebot.engines import load_nlu, load_synthesizer, load_turn_model
from voicebot.nlu.base import NluEngine, NluResult
from voicebot.tts.base import Synthesizer
from voicebot.tts.espeak_engine import EspeakSynthesizer
from voicebot.turn.detector import CompletionModel

# Turns as segments; the caller pauses between segments. `digits` marks turns the dialogue asked
# for (an account number of 8 digits), where the slot-aware rule applies.
TURNS: list[tuple[list[str], int | None]] = [
    (["I want to", "uh", "check my balance"], None),
    (["I'd like to", "report a lost card"], None),
    (["can you tell me", "where the nearest branch is"], None),
    (["my card", "was stolen yesterday"], None),
    (["I need to", "um", "make a payment on my loan"], None),
    (["what time does the", "riverside branch open"], None),
    (["I was wondering if", "you could tell me my balance"], None),
    (["so the thing is", "there is a charge I don't recognise"], None),
    (["I want to transfer", "fifty dollars to savings"], None),
    (["could I", "speak to someone about a mortgage"], None),
    (["hi yes", "I'm calling about my credit card"], None),
    (["I moved house and", "I need to change my address"], None),
    (["my account number is", "one two three four", "five six seven eight"], 8),
    (["one two", "three four", "five six", "seven eight"], 8),
    (["it's four four one two", "nine nine zero three"], 8),
    (["let me see", "eight seven six five", "four three two one"], 8),
    # Complete turns without inner pauses: they measure how quickly a finished turn is taken.
    (["what's my balance"], None),
    (["agent"], None),
    (["I lost my card"], None),
    (["yes please"], None),
    (["where is the closest branch"], None),
    (["one two three four five six seven eight"], 8),
]
# A second set, written after the defaults were chosen on TURNS and never used to choose them:
# the same kinds of turn in other words, so that a rule fitted to TURNS shows up as a gap.
HELDOUT_TURNS: list[tuple[list[str], int | None]] = [
    (["so I was hoping", "to find out my balance"], None),
    (["there's a payment", "I didn't make"], None),
    (["I think", "er", "I lost my wallet with my cards"], None),
    (["when does", "the downtown branch close today"], None),
    (["I'd like to know", "how much I owe on my loan"], None),
    (["my debit card", "got swallowed by the machine"], None),
    (["could you", "um", "send me a new card"], None),
    (["I need", "to pay my credit card bill"], None),
    (["is there a branch", "near the station"], None),
    (["I want to move", "two hundred dollars to checking"], None),
    (["the reason I'm calling is", "my address changed"], None),
    (["can I", "talk to a real person please"], None),
    (["my number is", "two four six eight", "one three five seven"], 8),
    (["nine eight", "seven six", "five four", "three two"], 8),
    (["it is", "three three five one", "two zero zero eight"], 8),
    (["hang on", "six one six one", "two two two two"], 8),
    (["how much money do I have"], None),
    (["operator"], None),
    (["no thanks"], None),
    (["my card was stolen"], None),
    (["when are you open on sunday"], None),
    (["five five five one two one two one"], 8),
]
TURN_SETS = {"dev": TURNS, "held-out": HELDOUT_TURNS}
VOICES = [("en-us", 160, 50), ("en-gb+f2", 150, 60), ("en-us+m3", 175, 40), ("en-gb-x-rp+f4", 140, 65)]
PAUSES_MS = (450, 700)  # inner pause lengths, alternating: hesitations are rarely shorter on a phone
CHANNELS = ("wideband", "phone")
LEAD_MS, TAIL_MS = 500, 3000


@dataclass(frozen=True)
class Turn:
    audio: bytes
    speech_end_ms: int  # where the caller's last word ends
    inner_pause_ends_ms: tuple[int, ...]  # where each inner pause ends (speech resumes)
    digits: int | None
    label: str


async def parse_timed(nlu: NluEngine, text: str) -> tuple[NluResult, float]:
    started = time.monotonic()
    result = await nlu.parse(text)
    return result, (time.monotonic() - started) * 1000


def speech_bounds(pcm: bytes) -> tuple[int, int]:
    """First and last sample above a small threshold: espeak-ng pads its output with silence."""
    samples = np.abs(samples_from_pcm(pcm))
    loud = np.flatnonzero(samples > 0.01)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, 0)


def build_turn(voice: Synthesizer, segments: list[str], digits: int | None, pause_ms: int) -> Turn:
    pieces, pause_ends, cursor = [bytes(LEAD_MS * SAMPLE_RATE // 1000 * 2)], [], LEAD_MS
    for index, text in enumerate(segments):
        spoken = b"".join(voice.synthesize(text))
        start, end = speech_bounds(spoken)
        trimmed = spoken[start * 2 : end * 2]
        if index:
            pieces.append(bytes(pause_ms * SAMPLE_RATE // 1000 * 2))
            cursor += pause_ms
            pause_ends.append(cursor)
        pieces.append(trimmed)
        cursor += len(trimmed) * 1000 // (SAMPLE_RATE * 2)
    speech_end = cursor
    pieces.append(bytes(TAIL_MS * SAMPLE_RATE // 1000 * 2))
    return Turn(b"".join(pieces), speech_end, tuple(pause_ends), digits, " | ".join(segments))


async def closes_at(
    turn: Turn,
    config: EndpointConfig,
    recognizer: Recognizer,
    model: CompletionModel | None,
    nlu: NluEngine | None = None,
) -> int | None:
    """Audio-clock ms at which the listener ended the caller's (first) utterance."""

    def understand(transcript: Transcript) -> asyncio.Task[tuple[NluResult, float]] | None:
        return None if nlu is None else asyncio.create_task(parse_timed(nlu, transcript.text))

    listener = Listener(config, recognizer, emit=lambda event: None, on_guess=understand, turn_model=model)
    hints = RecognitionHints(digits=turn.digits)
    for index, frame in enumerate(split_frames(turn.audio)):
        utterance = listener.feed(
            frame, bot_speaking=False, interruptible=True, hints=lambda: hints, secret=False
        )
        if pending := listener.pending():
            await asyncio.wait(pending)
        if utterance is not None:
            utterance.recognition.cancel()
            return (index + 1) * FRAME_MS
    return None


KINDS = ("request", "digits", "short")  # requests with pauses inside, digit strings, one-piece turns


def kind_of(turn: Turn) -> str:
    if turn.digits is not None:
        return "digits"
    return "request" if turn.inner_pause_ends_ms else "short"


def row_settings(name: str, base: EndpointConfig) -> tuple[EndpointConfig, bool, bool]:
    """The settings of a row, whether it uses the model, and whether it also weighs the speculative
    transcript (its digits and its NLU result)."""
    if name.startswith("silence-"):
        return base.replace(end_of_turn="silence", end_silence_ms=int(name.split("-")[1])), False, False
    if name == "smart-turn":
        # The model alone at its own decision boundary, silence after turn_max_silence_ms.
        return base.replace(turn_complete_threshold=0.5), True, False
    if name == "combined":
        return base, True, True
    raise SystemExit(f"unknown row {name!r}")


async def run_row(
    name: str,
    turns: list[Turn],
    base: EndpointConfig,
    recognizer: Recognizer,
    model: CompletionModel | None,
    nlu: NluEngine,
) -> dict[str, Any]:
    config, uses_model, combined = row_settings(name, base)
    if not combined:
        config = config.replace(speculate_after_ms=0)  # only the combined decision reads the transcript
    cut_offs, missed = 0, 0
    delays: dict[str, list[int]] = {kind: [] for kind in KINDS}
    with_pauses = [t for t in turns if t.inner_pause_ends_ms]
    started = time.monotonic()
    for turn in turns:
        judged = (
            turn
            if combined
            else Turn(turn.audio, turn.speech_end_ms, turn.inner_pause_ends_ms, None, turn.label)
        )
        closed = await closes_at(
            judged, config, recognizer, model if uses_model else None, nlu if combined else None
        )
        if closed is None:
            missed += 1
        elif closed < turn.speech_end_ms:
            cut_offs += turn.inner_pause_ends_ms != ()
        else:
            delays[kind_of(turn)].append(closed - turn.speech_end_ms)
    every = [delay for kind in KINDS for delay in delays[kind]]
    return {
        "row": name,
        "turns": len(turns),
        "turns_with_pauses": len(with_pauses),
        "false_cut_off_pct": round(100 * cut_offs / max(1, len(with_pauses)), 1),
        "mean_delay_ms": round(statistics.mean(every)) if every else None,
        "p95_delay_ms": round(sorted(every)[int(0.95 * (len(every) - 1))]) if every else None,
        **{f"mean_delay_{kind}_ms": round(statistics.mean(d)) if d else None for kind, d in delays.items()},
        "never_ended": missed,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", nargs="+", default=["silence-600", "silence-1000", "smart-turn", "combined"]
    )
    parser.add_argument("--piper", action="store_true", help="also speak the turns with the Piper voice")
    parser.add_argument("--turns", choices=sorted(TURN_SETS), default="dev", help="which set of turns")
    parser.add_argument("--limit", type=int, default=0, help="only the first N turns (quick runs)")
    parser.add_argument(
        "--set", nargs="*", default=[], help="endpoint settings to try, e.g. turn_check_ms=300"
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench_eot.json")
    args = parser.parse_args()
    quiet_console(verbose=False)
    config = load_config()
    recognizer = create_recognizer(config, config.language)
    model = load_turn_model(config)
    if model is None:
        raise SystemExit("the Smart Turn model is not installed: run `make setup`")
    turns = []
    # espeak-ng's voices and, for natural prosody (what Smart Turn listens to), Piper's.
    voices: list[Synthesizer] = [EspeakSynthesizer(*voice) for voice in VOICES]
    if args.piper:
        voices.append(load_synthesizer(config, config.language, length_scale=1.1))
    for (segments, digits), voice, channel in itertools.product(TURN_SETS[args.turns], voices, CHANNELS):
        pause = PAUSES_MS[len(turns) % len(PAUSES_MS)]
        turn = build_turn(voice, segments, digits, pause)
        if channel == "phone":
            turn = Turn(
                telephone_channel(turn.audio),
                turn.speech_end_ms,
                turn.inner_pause_ends_ms,
                digits,
                turn.label,
            )
        turns.append(turn)
    turns = turns[: args.limit] if args.limit else turns
    overrides = dict(setting.split("=", 1) for setting in args.set)
    endpoint = config.endpoint.replace(**{key: yaml.safe_load(value) for key, value in overrides.items()})
    nlu = load_nlu(config, config.language)
    rows = [asyncio.run(run_row(name, turns, endpoint, recognizer, model, nlu)) for name in args.rows]
    report = {
        "recognizer": recognizer.name,
        "turn_model": model.name,
        "voices": [voice.name for voice in voices],
        "turns": args.turns,
        "settings": args.set,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print()
    print(tabulate([list(row.values()) for row in rows], headers=list(rows[0])))


if __name__ == "__main__":
    main()
