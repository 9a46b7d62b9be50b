"""Dev-only: regenerates the shipped caller recordings used by `make run` and the tests.

The caller lines are spoken by Piper at a slower speed with a little noise, then passed through an
8 kHz phone channel, so the recordings sound unlike the bot's own prompts. The cough is a 150 ms
burst of shaped noise (for the "a cough must not interrupt the bot" scenario); the coughing fit is
three coughs with a voiced, falling tail each, long enough to interrupt the bot (for the "a false
interruption resumes the prompt" scenario).
"""

from __future__ import annotations

import numpy as np

from voicebot.audio import SAMPLE_RATE
from voicebot.audio.degrade import add_noise, telephone_channel
from voicebot.audio.wav import pcm_from_samples, write_wav
from voicebot.config import PROJECT_ROOT, load_config
from voicebot.tts.piper_engine import PiperSynthesizer, find_voice, synthesize_all

DEMO_LINES = {
    "01_lost_card.wav": "Hi, um, I think I lost my debit card. I can't find it anywhere.",
    "02_account_number.wav": "It's one two three four, five six seven eight.",
    "03_yes.wav": "Yes, please block it.",
    "04_branch.wav": "Actually, yeah. What time does the branch close on Saturday?",
    "05_bye.wav": "No, that's all. Thanks, bye.",
}


def cough() -> bytes:
    rng = np.random.default_rng(7)
    n = int(0.15 * SAMPLE_RATE)
    envelope = np.exp(-np.linspace(0, 6, n)) * np.minimum(1, np.linspace(0, 8, n))
    burst = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same") * envelope * 0.5
    pad = np.zeros(int(0.1 * SAMPLE_RATE))
    return pcm_from_samples(np.concatenate([pad, burst, pad]).astype(np.float32))


def coughing_fit() -> bytes:
    rng = np.random.default_rng(7)
    coughs = [np.zeros(int(0.1 * SAMPLE_RATE))]
    for pitch in (130.0, 140.0, 150.0):
        n_burst, n_tail = int(0.06 * SAMPLE_RATE), int(0.16 * SAMPLE_RATE)
        burst = np.convolve(rng.standard_normal(n_burst), np.ones(4) / 4, mode="same") * np.hanning(n_burst)
        t = np.arange(n_tail) / SAMPLE_RATE
        phase = 2 * np.pi * np.cumsum(pitch * (1 - 0.15 * t / t[-1])) / SAMPLE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.exp(-t * 14) * 0.35
        breath = rng.standard_normal(n_tail) * 0.08 * np.exp(-t * 10)
        coughs += [burst * 0.6, voiced + breath, np.zeros(int(0.09 * SAMPLE_RATE))]
    coughs.append(np.zeros(int(0.1 * SAMPLE_RATE)))
    return pcm_from_samples(np.concatenate(coughs).astype(np.float32))


def main() -> None:
    config = load_config()
    voice = PiperSynthesizer(
        find_voice(config.tts.voices["en"], [config.path(config.tts.voices_dir)]), length_scale=1.15
    )
    out_dir = PROJECT_ROOT / "prompts" / "demo"
    for name, text in DEMO_LINES.items():
        pcm = add_noise(telephone_channel(synthesize_all(voice, text)), snr_db=25)
        write_wav(out_dir / name, pcm)
    write_wav(PROJECT_ROOT / "tests" / "data" / "cough.wav", cough())
    write_wav(PROJECT_ROOT / "tests" / "data" / "coughing_fit.wav", coughing_fit())


if __name__ == "__main__":
    main()
