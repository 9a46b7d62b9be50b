"""The settings schema: voicebot.yml validation with file:line errors, paths, copies, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from voicebot.cli import build_parser
from voicebot.config import PROJECT_ROOT, Config, load_config
from voicebot.errors import DataFileError, DataFileErrors, VoicebotError
from voicebot.server.commands import server_settings


def write(folder: Path, text: str) -> Path:
    path = folder / "voicebot.yml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[tuple[int | None, str]]:
    with pytest.raises(DataFileErrors) as caught:
        load_config(path)
    assert all(problem.path == path for problem in caught.value.problems)
    return [(problem.line, str(problem)) for problem in caught.value.problems]


def test_every_problem_in_the_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "language: en\n"
        "endpoint:\n"
        "  vad_mode: 7\n"
        "  end_silence_ms: 600\n"
        "asr:\n"
        "  engine: kaldi\n"
        "server:\n"
        "  port: many\n",
    )
    found = problems(path)
    assert [line for line, _ in found] == [3, 6, 8]
    assert found[0][1] == f"{path}:3: endpoint.vad_mode: ensure this value is less than or equal to 3"
    assert "asr.engine: unexpected value; permitted: 'auto', 'vosk', 'whisper'" in found[1][1]
    assert found[2][1] == f"{path}:8: server.port: value is not a valid integer"
    with pytest.raises(DataFileErrors, match=r"^3 problems:\n.*:3: .*\n.*:6: .*\n.*:8: "):
        load_config(path)


def test_an_unknown_key_names_the_keys_its_section_knows(tmp_path: Path) -> None:
    path = write(tmp_path, "tts:\n  voices:\n    en: en_US-joe-medium\n  speed: 2\nflow: prompts\n")
    (line, first), (other_line, second) = problems(path)
    assert (line, other_line) == (4, 5)
    known = "voices, espeak_voices, voices_dir, length_scale, threads, cache_dir"
    assert f"unknown setting 'tts.speed' (known: {known})" in first
    assert "unknown setting 'flow' (known: language, languages, flow_dir, data_dir" in second


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("endpoint:\n  end_silence_ms: 0.6\n", 2, "endpoint.end_silence_ms: value is not a valid integer"),
        ("endpoint:\n  speech_start_ms: true\n", 2, "endpoint.speech_start_ms: value is not a valid integer"),
        ("tts:\n  voices: en_US-joe-medium\n", 2, "tts.voices: value is not a valid dict"),
        ("nlu:\n  remote_url: rasa.local\n", 2, "nlu.remote_url: invalid or missing URL scheme"),
        ("policy: strict\n", 1, "policy: value is not a valid dict"),
    ],
)
def test_a_wrong_type_is_refused(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    assert problems(path) == [(line, f"{path}:{line}: {message}")]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "endpoint:\n  vad_mode: -1\n",
            2,
            "endpoint.vad_mode: ensure this value is greater than or equal to 0",
        ),
        (
            "endpoint:\n  end_silence_ms: 0\n",
            2,
            "endpoint.end_silence_ms: ensure this value is greater than 0",
        ),
        (
            "policy:\n  ambiguity_gap: 1.5\n",
            2,
            "policy.ambiguity_gap: ensure this value is less than or equal to 1.0",
        ),
        ("server:\n  port: 70000\n", 2, "server.port: ensure this value is less than or equal to 65535"),
        # A lowered accept threshold is checked against the default reject threshold (0.40).
        (
            "policy:\n  accept_threshold: 0.3\n",
            1,
            "policy.reject_threshold: reject_threshold (0.4) must not be above accept_threshold (0.3)",
        ),
    ],
)
def test_a_value_out_of_range_is_refused(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    assert problems(path) == [(line, f"{path}:{line}: {message}")]


def test_broken_yaml_and_a_missing_file_are_single_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"voicebot\.yml:2: invalid YAML"):
        load_config(write(tmp_path, "endpoint:\n  vad_mode: 3: 4\n"))
    with pytest.raises(DataFileError, match=r"voicebot\.yml:1: top level must be a mapping"):
        load_config(write(tmp_path, "- endpoint\n"))
    with pytest.raises(DataFileError, match="config file not found"):
        load_config(tmp_path / "missing.yml")


def test_relative_paths_resolve_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    write(site, f"flow_dir: flows\nnlu:\n  models_dir: ../models\ntts:\n  cache_dir: {tmp_path / 'cache'}\n")
    monkeypatch.chdir(tmp_path)  # a relative --config is taken from the current folder, its contents not
    config = load_config(Path("site/voicebot.yml"))
    monkeypatch.chdir(PROJECT_ROOT / "voicebot")
    assert config.source == site / "voicebot.yml"
    assert config.path(config.flow_dir) == site / "flows"
    assert config.path(config.nlu.models_dir) == site / "../models"
    assert config.path(config.tts.cache_dir) == tmp_path / "cache"  # absolute paths stay as they are
    assert config.path(config.data_dir) == site / "var"  # defaults too
    assert config.replace(language="en").path(config.flow_dir) == site / "flows"  # copies keep the folder


def test_without_a_file_paths_resolve_from_the_project_root() -> None:
    config = load_config()
    assert config.path(config.flow_dir) == PROJECT_ROOT / "prompts"
    assert Config().path(Config().asr.vosk_models_dir) == PROJECT_ROOT / "models" / "vosk"


def test_settings_are_immutable_and_copies_are_validated() -> None:
    config = Config()
    with pytest.raises(TypeError):
        config.endpoint.vad_mode = 1  # type: ignore[misc]
    quieter = config.replace(endpoint=config.endpoint.replace(vad_mode=1))
    assert (quieter.endpoint.vad_mode, config.endpoint.vad_mode) == (1, 3)
    with pytest.raises(ValidationError, match=r"vad_mode\n.*less than or equal to 3"):
        config.endpoint.replace(vad_mode=4)
    with pytest.raises(ValidationError, match="extra fields not permitted"):
        config.replace(flow="prompts")


def test_serve_options_override_the_server_section_only_when_given(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: 0.0.0.0\n  port: 9000\n  offer_timeout_s: 5\n")
    parser = build_parser()

    args = parser.parse_args(["--config", str(path), "serve", "--port", "9100", "--announce-interval", "12"])
    settings = server_settings(args, load_config(args.config))
    assert (settings.host, settings.port) == ("0.0.0.0", 9100)
    assert (settings.offer_timeout_s, settings.announce_interval_s) == (5.0, 12.0)

    args = parser.parse_args(["serve"])
    assert server_settings(args, Config()) == Config().server  # no options: the schema's defaults

    args = parser.parse_args(["serve", "--port", "0", "--offer-timeout", "-1"])
    with pytest.raises(
        VoicebotError,
        match=r"--port: ensure this value is greater than or equal to 1; --offer-timeout: .*greater",
    ):
        server_settings(args, Config())


def test_a_setting_given_twice_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "voicebot.yml"
    source.write_text("endpoint:\n  vad_mode: 2\n  vad_mode: 3\n")
    with pytest.raises(DataFileError, match=r"voicebot\.yml:3: duplicate key 'vad_mode' \(first at line 2\)"):
        load_config(source)
