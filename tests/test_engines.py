"""Engines keyed by language: each loaded language has its recognizer, NLU, synthesizer and prompts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from voicebot.config import Config, EndpointConfig
from voicebot.engines import Engines, load_turn_model, reload_engines
from voicebot.errors import DataFileError, ModelNotFoundError


def test_the_configured_language_is_loaded(engines: Engines) -> None:
    assert set(engines.languages) == {engines.config.language}
    english = engines.for_language(engines.config.language)
    assert english.nlu.name == "rasa" and english.recognizer.name and english.synthesizer.name


def test_a_language_that_is_not_loaded_is_an_error_naming_what_is(engines: Engines) -> None:
    with pytest.raises(ModelNotFoundError, match=r"language 'fr' \(loaded: en\)"):
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
