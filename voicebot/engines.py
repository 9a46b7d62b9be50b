"""Wiring: loads every engine once per process and shares them by all calls."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from voicebot.asr.base import Recognizer
from voicebot.asr.catalog import create_recognizer
from voicebot.config import Config
from voicebot.demo.actions import register_bank_actions
from voicebot.demo.bank import AcmeBank, seed
from voicebot.dialogue.actions import ActionRegistry
from voicebot.dialogue.flow import Flow, check_against_nlu, load_flow
from voicebot.errors import DataFileError
from voicebot.handoff.record import CallStore
from voicebot.nlu.base import NluEngine
from voicebot.nlu.data import known_intents
from voicebot.tts.base import Synthesizer
from voicebot.tts.piper_engine import PiperSynthesizer, PromptCache, find_voice

log = logging.getLogger("voicebot")


@dataclass
class Engines:
    config: Config
    recognizer: Recognizer
    nlu: NluEngine
    synthesizer: Synthesizer
    prompt_cache: PromptCache
    flow: Flow
    actions: ActionRegistry
    call_store: CallStore


def voice_search_dirs(config: Config) -> list[Path]:
    return [config.path("models/piper")]


def load_synthesizer(config: Config, language: str, length_scale: float | None = None) -> Synthesizer:
    voice = config.tts.voices.get(language)
    if voice is None:
        raise DataFileError(config.path("voicebot.yml"), f"no TTS voice configured for language '{language}'")
    scale = length_scale if length_scale is not None else config.tts.length_scale
    path = find_voice(voice, voice_search_dirs(config))
    return PiperSynthesizer(path, length_scale=scale, threads=config.tts.threads)


def load_flow_checked(config: Config, actions: ActionRegistry) -> Flow:
    """Loads the flow and checks it against the NLU data and the available actions."""
    flow = load_flow(config.path(config.flow_dir))
    nlu_dir = config.path(config.nlu.data_dir) / config.language
    check_against_nlu(flow, known_intents(nlu_dir), nlu_dir)
    for name in sorted(flow.action_names()):
        if name not in actions:
            raise DataFileError(
                flow.path, f"action '{name}' is not registered (known: {', '.join(actions.names())})"
            )
    return flow


def load_actions(config: Config) -> ActionRegistry:
    registry = ActionRegistry()
    db_path = config.path(config.data_dir) / "acme_bank.sqlite"
    seed(db_path)  # idempotent: fills a new database, leaves an existing one alone
    register_bank_actions(registry, AcmeBank(db_path))
    return registry


def load_nlu(config: Config) -> NluEngine:
    # Rasa imports TensorFlow: import it only when an NLU engine is really needed.
    from voicebot.nlu.rasa_engine import RasaNlu, latest_model
    from voicebot.nlu.remote import RemoteRasaNlu

    if config.nlu.engine == "remote":
        return RemoteRasaNlu(config.nlu.remote_url)
    return RasaNlu.load(latest_model(config.language, config.path(config.nlu.models_dir)))


def load_engines(config: Config) -> Engines:
    actions = load_actions(config)
    flow = load_flow_checked(config, actions)
    recognizer = create_recognizer(config, config.language)
    nlu = load_nlu(config)
    synthesizer = load_synthesizer(config, config.language)
    cache = PromptCache(synthesizer, config.path(config.tts.cache_dir))
    prompts = flow.prompts(config.language)
    warmed = cache.warm(p.text for p in prompts.prompts.values() if p.is_static)
    log.info(
        "engines ready: asr=%s nlu=%s tts=%s (%d prompts synthesised)",
        recognizer.name,
        nlu.name,
        synthesizer.name,
        warmed,
    )
    return Engines(
        config=config,
        recognizer=recognizer,
        nlu=nlu,
        synthesizer=synthesizer,
        prompt_cache=cache,
        flow=flow,
        actions=actions,
        call_store=CallStore(config.path(config.data_dir) / "calls"),
    )
