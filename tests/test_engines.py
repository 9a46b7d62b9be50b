"""Engines keyed by language: each loaded language has its recognizer, NLU, synthesizer and prompts."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from voicebot.config import Config, EndpointConfig
from voicebot.engines import (
    Engines,
    load_engines,
    load_synthesizer,
    load_turn_model,
    reload_engines,
    synthesis_engine,
)
from voicebot.errors import DataFileError, ModelNotFoundError


def test_every_configured_language_is_loaded_sharing_one_recogniser_model(engines: Engines) -> None:
    assert set(engines.languages) == set(engines.config.languages) == {"en", "es", "fa"}
    for language in engines.config.languages:
        served = engines.for_language(language)
        assert served.nlu.name == "rasa" and served.recognizer.language == language
    english, spanish = engines.for_language("en"), engines.for_language("es")
    if english.recognizer.name == spanish.recognizer.name == "whisper":  # one model, not a copy each
        assert english.recognizer._model is spanish.recognizer._model  # type: ignore[attr-defined]


def test_a_language_without_a_piper_voice_speaks_with_espeak_ng_and_says_so(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    config = engines.config.replace(tts=engines.config.tts.replace(voices={"es": "es_AR-nobody-medium"}))
    with caplog.at_level(logging.WARNING, logger="voicebot"):
        voice = load_synthesizer(config, "es")
    assert voice.name.startswith("espeak-ng es-419")
    assert "es_AR-nobody-medium" in caplog.text and "espeak-ng" in caplog.text
    assert synthesis_engine(config, "es").startswith("espeak-ng es-419 (fallback: Piper voice es_AR-nobody")
    assert b"".join(voice.synthesize("Buenos días."))  # it speaks


def test_a_language_that_cannot_load_is_left_out_and_the_default_must_load(
    engines: Engines, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Spanish with no trained NLU model: left out with the reason; English alone serves."""
    config = engines.config.replace(languages=["en", "es"])
    models = tmp_path / "nlu"
    shutil.copytree(config.path(config.nlu.models_dir) / "en", models / "en")
    config = config.replace(nlu=config.nlu.replace(models_dir=str(models)))
    with caplog.at_level(logging.ERROR, logger="voicebot"):
        loaded = load_engines(config)
    assert set(loaded.languages) == {"en"}
    assert "language es left out" in caplog.text and "voicebot train" in caplog.text
    with pytest.raises(ModelNotFoundError):
        load_engines(config.replace(language="es", languages=["es"]))


def test_a_language_that_is_not_loaded_is_an_error_naming_what_is(engines: Engines) -> None:
    with pytest.raises(ModelNotFoundError, match=r"language 'fr' \(loaded: en, es, fa\)"):
        engines.for_language("fr")


def test_reload_renews_flow_nlu_and_prompts_and_keeps_the_loaded_models(engines: Engines) -> None:
    reloaded = reload_engines(engines.config, engines)
    assert set(reloaded.languages) == set(engines.languages)
    for language, before in engines.languages.items():
        after = reloaded.for_language(language)
        assert after.recognizer is before.recognizer and after.synthesizer is before.synthesizer
        assert after.prompt_cache is not before.prompt_cache
    assert reloaded.flow is not engines.flow and reloaded.actions is engines.actions


def test_a_number_routed_to_a_node_the_flow_lacks_is_refused_at_load(engines: Engines) -> None:
    config = engines.config
    config = config.replace(telephony=config.telephony.replace(numbers={"300": {"start": "mortgages"}}))
    with pytest.raises(DataFileError, match=r"numbers '300': start node 'mortgages' is not in the flow"):
        reload_engines(config, engines)


def test_a_missing_end_of_turn_model_falls_back_to_silence_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = Config().replace(endpoint=EndpointConfig(turn_model=str(tmp_path / "absent.onnx")))

    with caplog.at_level(logging.WARNING, logger="voicebot"):
        assert load_turn_model(missing) is None
    assert "absent.onnx" in caplog.text and "600 ms of silence" in caplog.text
    assert load_turn_model(Config().replace(endpoint=EndpointConfig(end_of_turn="silence"))) is None
    assert load_turn_model(Config()) is not None  # provisioned by `make setup`
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    broken = Config().replace(endpoint=EndpointConfig(turn_model=str(tmp_path / "broken.onnx")))
    assert load_turn_model(broken) is None
