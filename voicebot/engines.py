"""Wiring: loads every engine once per process and shares them by all calls."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from voicebot.asr.base import Recognizer
from voicebot.asr.catalog import create_recognizer
from voicebot.config import Config
from voicebot.dialogue.actions import ActionRegistry
from voicebot.dialogue.flow import Flow, check_against_nlu, load_flow
from voicebot.errors import DataFileError, ModelNotFoundError, VoicebotError
from voicebot.handoff.record import CallStore
from voicebot.nlu.base import NluEngine
from voicebot.nlu.data import known_intents
from voicebot.tts.base import Synthesizer
from voicebot.tts.clauses import fixed_opening
from voicebot.tts.espeak_engine import EspeakSynthesizer
from voicebot.tts.piper_engine import PiperSynthesizer, PromptCache, find_voice
from voicebot.turn.detector import CompletionModel
from voicebot.turn.smart_turn import SmartTurn

log = logging.getLogger("voicebot")
PLUGIN_GROUP = "voicebot.actions"
ESPEAK_WORDS_PER_MINUTE = 150  # a calm telephone pace (espeak-ng's default, 175, is hurried)


@dataclass(frozen=True)
class LanguageEngines:
    """What the calls in one language hear, understand and speak with."""

    recognizer: Recognizer
    nlu: NluEngine
    synthesizer: Synthesizer
    prompt_cache: PromptCache
    turn_model: CompletionModel | None = None  # None: silence alone ends the caller's turn


@dataclass
class Engines:
    config: Config
    languages: dict[str, LanguageEngines]
    flow: Flow
    actions: ActionRegistry
    call_store: CallStore

    def for_language(self, language: str) -> LanguageEngines:
        try:
            return self.languages[language]
        except KeyError:
            loaded = ", ".join(sorted(self.languages))
            raise ModelNotFoundError(
                f"no engines loaded for language '{language}' (loaded: {loaded})"
            ) from None


def voice_search_dirs(config: Config) -> list[Path]:
    return [config.path(config.tts.voices_dir)]


def synthesis_engine(config: Config, language: str) -> str:
    """Which engine speaks ``language``, as `voicebot models` says it."""
    voice = config.tts.voices.get(language)
    fallback = config.tts.espeak_voices.get(language)
    if voice is not None:
        try:
            find_voice(voice, voice_search_dirs(config))
            return f"piper {voice}"
        except ModelNotFoundError:
            pass
    if fallback is None:
        return f"none (Piper voice {voice or '(none configured)'} not installed, no espeak-ng voice)"
    missing = f"Piper voice {voice} not installed" if voice else "no Piper voice configured"
    return f"espeak-ng {fallback} (fallback: {missing}; `voicebot models fetch piper:{voice or 'NAME'}`)"


def load_synthesizer(config: Config, language: str, length_scale: float | None = None) -> Synthesizer:
    """The language's Piper voice; where it is not installed, its espeak-ng voice (said loudly)."""
    voice = config.tts.voices.get(language)
    fallback = config.tts.espeak_voices.get(language)
    if voice is None and fallback is None:
        raise DataFileError(config.source, f"no TTS voice configured for language '{language}'")
    scale = length_scale if length_scale is not None else config.tts.length_scale
    try:
        if voice is None:
            raise ModelNotFoundError(f"no Piper voice configured for language '{language}'")
        path = find_voice(voice, voice_search_dirs(config))
    except ModelNotFoundError as exc:
        if fallback is None:
            raise
        log.warning("%s: %s; speaking with the espeak-ng fallback voice '%s'", language,
                    str(exc).split(" (")[0], fallback)  # fmt: skip
        return EspeakSynthesizer(fallback, speed=round(ESPEAK_WORDS_PER_MINUTE / scale))
    return PiperSynthesizer(path, length_scale=scale, threads=config.tts.threads)


def load_flow_checked(config: Config, actions: ActionRegistry) -> Flow:
    """Loads the flow and checks it against the NLU data and the available actions."""
    flow = load_flow(config.path(config.flow_dir))
    nlu_dir = config.path(config.nlu.data_dir) / config.language
    check_against_nlu(flow, known_intents(nlu_dir), nlu_dir)
    flow.prompts(config.language)  # the default language's prompts must load
    for name in sorted(flow.action_names()):
        if name not in actions:
            raise DataFileError(
                flow.path, f"action '{name}' is not registered (known: {', '.join(actions.names())})"
            )
    for number, route in config.telephony.numbers.items():
        if route.start is not None and route.start not in flow.nodes:
            raise DataFileError(
                config.source, f"telephony.numbers '{number}': start node '{route.start}' is not in the flow"
            )
    return flow


def _plugin(config: Config, name: str) -> ModuleType:
    """The installed entry point of that name in PLUGIN_GROUP, else the module of that dotted path."""
    installed = entry_points(group=PLUGIN_GROUP, name=name)
    try:
        plugin = installed[name].load() if installed else importlib.import_module(name)
    except ImportError as exc:
        raise DataFileError(config.source, f"actions plugin '{name}' cannot be imported: {exc}") from exc
    if not callable(getattr(plugin, "register", None)):
        raise DataFileError(config.source, f"actions plugin '{name}' has no register(registry, config)")
    return plugin


def load_actions(config: Config) -> ActionRegistry:
    """Every action of the plugins the settings name, in their order (a later one may replace one)."""
    registry = ActionRegistry()
    for name in config.plugins:
        _plugin(config, name).register(registry, config)
    return registry


def load_nlu(config: Config, language: str) -> NluEngine:
    # Rasa imports TensorFlow: import it only when an NLU engine is really needed.
    from voicebot.nlu.rasa_engine import RasaNlu, latest_model
    from voicebot.nlu.remote import RemoteRasaNlu

    if config.nlu.engine == "remote":
        return RemoteRasaNlu(config.nlu.remote_url)
    return RasaNlu.load(latest_model(language, config.path(config.nlu.models_dir)))


def _prompt_cache(config: Config, flow: Flow, language: str, synthesizer: Synthesizer) -> PromptCache:
    """A cache with the flow's static prompts in that language already synthesised, and the fixed
    opening clauses of the others ("Just to check," ...), which play while the rest is synthesised."""
    cache = PromptCache(synthesizer, config.path(config.tts.cache_dir))
    prompts = flow.prompts(language).prompts.values()
    openings = [opening for p in prompts if not p.is_static and (opening := fixed_opening(p.text))]
    offer = flow.language_offer(language)
    warmed = cache.warm([*(p.text for p in prompts if p.is_static), *openings, *([offer] if offer else [])])
    log.info("%s: %d prompts synthesised for %s", language, warmed, synthesizer.name)
    return cache


def load_turn_model(config: Config) -> CompletionModel | None:
    """The end-of-turn model (one for all languages: Smart Turn is multilingual), or None where the
    settings ask for silence alone or the model is missing (then said once, loudly)."""
    if config.endpoint.end_of_turn == "silence":
        return None
    try:
        return SmartTurn(config.path(config.endpoint.turn_model))
    except ModelNotFoundError as exc:
        log.warning("%s; the caller's turn ends after %d ms of silence", exc, config.endpoint.end_silence_ms)
        return None


def _load_language(
    config: Config, flow: Flow, language: str, turn_model: CompletionModel | None, asr: dict[Path, Recognizer]
) -> LanguageEngines:
    flow.prompts(language)  # its words first: a language without prompts fails before any model loads
    nlu_dir = config.path(config.nlu.data_dir) / language
    check_against_nlu(flow, known_intents(nlu_dir), nlu_dir)
    recognizer = create_recognizer(config, language, asr)
    nlu = load_nlu(config, language)
    synthesizer = load_synthesizer(config, language)
    turn = turn_model.name if turn_model else "silence"
    log.info(
        "%s engines ready: asr=%s nlu=%s tts=%s end-of-turn=%s",
        language,
        recognizer.name,
        nlu.name,
        synthesizer.name,
        turn,
    )
    cache = _prompt_cache(config, flow, language, synthesizer)
    return LanguageEngines(recognizer, nlu, synthesizer, cache, turn_model)


def load_engines(config: Config) -> Engines:
    """Engines for every configured language. One that cannot be served (no prompts, NLU data or
    model, no voice) is left out and said why: its calls are served in the default language, with
    an apology. The default language must load."""
    actions = load_actions(config)
    flow = load_flow_checked(config, actions)
    turn_model = load_turn_model(config)
    asr: dict[Path, Recognizer] = {}  # one multilingual model serves every language
    languages: dict[str, LanguageEngines] = {}
    for language in config.languages:
        try:
            languages[language] = _load_language(config, flow, language, turn_model, asr)
        except VoicebotError as exc:
            if language == config.language:
                raise
            log.error("language %s left out: %s", language, exc)
    return Engines(
        config=config,
        languages=languages,
        flow=flow,
        actions=actions,
        call_store=CallStore(config.path(config.data_dir) / "calls"),
    )


def reload_engines(config: Config, current: Engines, notes: list[str] | None = None) -> Engines:
    """New flow, prompts and NLU models; the recognizers, synthesizers and actions are kept. Calls in
    progress keep the engines they started with, so nothing is dropped. A language whose NLU data
    changed since its newest model was trained (model names end in the data's content hash) keeps
    being served by that model: ``notes`` is told so, and the log."""
    from voicebot.nlu.rasa_engine import RasaNlu, content_hash

    flow = load_flow_checked(config, current.actions)
    languages = {}
    for language, engines in current.languages.items():
        nlu = load_nlu(config, language)
        data_dir = config.path(config.nlu.data_dir)
        if isinstance(nlu, RasaNlu) and content_hash(language, data_dir) not in nlu.model_path.name:
            note = (
                f"the NLU data for '{language}' changed since {nlu.model_path.name} was trained: that model "
                "stays in use; run `voicebot train`, then reload"
            )
            log.warning("%s", note)
            if notes is not None:
                notes.append(note)
        languages[language] = dataclasses.replace(
            engines, nlu=nlu, prompt_cache=_prompt_cache(config, flow, language, engines.synthesizer)
        )
    return dataclasses.replace(current, flow=flow, languages=languages)
