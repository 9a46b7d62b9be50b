"""Settings: defaults in code, overridden by ``voicebot.yml`` in the project root (or ``--config``)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voicebot.errors import DataFileError

PROJECT_ROOT = Path(os.environ.get("VOICEBOT_HOME", Path(__file__).resolve().parent.parent))


@dataclass
class EndpointConfig:
    # Defaults measured with scripts/bench_vad.py (see README): mode 3 rejects noise best.
    vad_mode: int = 3
    speech_start_ms: int = 200  # voiced audio needed (within the window) to open an utterance
    speech_start_window_ms: int = 300
    end_silence_ms: int = 600  # trailing silence that closes an utterance
    max_utterance_ms: int = 15_000
    no_input_timeout_ms: int = 6_000
    pre_roll_ms: int = 300  # audio kept from before speech start so ASR hears the first syllable
    barge_in_min_speech_ms: int = 300  # a cough or click is shorter than this
    # Start recognising (speculatively) after this much trailing silence, before the endpoint
    # fires; the result is used only if the caller stayed silent. 0 turns it off.
    speculate_after_ms: int = 200


@dataclass
class AsrConfig:
    engine: str = "auto"  # auto | vosk | whisper
    whisper_model: str = "tiny.en"
    whisper_threads: int = 1
    whisper_workers: int = 2
    vosk_models_dir: str = "models/vosk"


@dataclass
class NluConfig:
    engine: str = "rasa"  # rasa (in-process) | remote
    remote_url: str = "http://127.0.0.1:5005"
    models_dir: str = "models/nlu"
    data_dir: str = "nlu_data"


@dataclass
class TtsConfig:
    voices: dict[str, str] = field(default_factory=lambda: {"en": "en_US-joe-medium"})
    length_scale: float = 1.0
    threads: int = 1  # per synthesis; calls synthesise in parallel, so one each shares 2 cores best
    cache_dir: str = "models/tts-cache"


@dataclass
class PolicyConfig:
    accept_threshold: float = 0.70
    reject_threshold: float = 0.40
    ambiguity_gap: float = 0.10
    max_consecutive_failures: int = 2  # no-match / low confidence / no-input before escalating
    max_out_of_scope: int = 2
    max_auth_attempts: int = 3


@dataclass
class Config:
    language: str = "en"
    flow_dir: str = "prompts"
    data_dir: str = "var"  # call store, demo backend database
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    nlu: NluConfig = field(default_factory=NluConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def path(self, relative: str) -> Path:
        """Resolves a configured path against the project root."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate


def _merge(instance: Any, overrides: dict[str, Any], source: Path) -> Any:
    known = {f.name: f for f in dataclasses.fields(instance)}
    for key, value in overrides.items():
        if key not in known:
            raise DataFileError(source, f"unknown setting '{key}' (known: {', '.join(sorted(known))})")
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise DataFileError(source, f"setting '{key}' must be a mapping")
            _merge(current, value, source)
        else:
            setattr(instance, key, value)
    return instance


def load_config(path: Path | None = None) -> Config:
    """Loads settings; a missing default file means all defaults."""
    source = path or PROJECT_ROOT / "voicebot.yml"
    config = Config()
    if not source.exists():
        if path is not None:
            raise DataFileError(source, "config file not found")
        return config
    try:
        overrides = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataFileError(source, f"invalid YAML: {exc}", mark.line + 1 if mark else None) from exc
    if not isinstance(overrides, dict):
        raise DataFileError(source, "top level must be a mapping")
    return _merge(config, overrides, source)
