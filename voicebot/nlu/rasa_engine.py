"""Rasa NLU in-process: validated, content-hashed training and a shared, thread-offloaded parser.

Rasa's heavy modules (TensorFlow, ~10 s to import) are imported inside the functions that need them,
so the remote client and commands that never parse do not pay for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

# Offline product: Rasa must not try to send usage data (set before anything imports rasa's telemetry).
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

from rasa.version import __version__ as RASA_VERSION

from voicebot.datafile import LineDict, load_yaml
from voicebot.errors import DataFileError, ModelNotFoundError
from voicebot.nlu.base import Entity, IntentScore, NluResult
from voicebot.nlu.normalize import Normalised, code_fingerprint, normalise_aligned, normalise_training_data
from voicebot.nlu.numbers import parse_amount

FALLBACK_INTENT = "nlu_fallback"  # what Rasa's FallbackClassifier predicts; the dialogue rejects it
RANKING_SIZE = 5
NON_LANGUAGE_DIRS = frozenset({"config", "test"})
TRAINING_SUFFIXES = frozenset({".yml", ".yaml"})
NLU_ITEM_KINDS = ("intent", "synonym", "regex", "lookup")
MODEL_SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    skipped: bool  # True when a model for exactly this data, config and Rasa version existed
    seconds: float


def languages(data_dir: Path) -> list[str]:
    """Languages with training data: the subdirectories of the data dir except config and test."""
    if not data_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in data_dir.iterdir()
        if p.is_dir() and p.name not in NON_LANGUAGE_DIRS and not p.name.startswith(".")
    )


def config_file(language: str, data_dir: Path) -> Path:
    return data_dir / "config" / f"{language}.yml"


def training_files(language: str, data_dir: Path) -> list[Path]:
    """Every file Rasa will train on; anything but YAML is refused so the hash covers all of it."""
    language_dir = data_dir / language
    if not language_dir.is_dir():
        raise DataFileError(language_dir, f"no training data for language '{language}'")
    files = sorted(p for p in language_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in files:
        if path.suffix not in TRAINING_SUFFIXES:
            raise DataFileError(path, "unexpected file in NLU training data (only .yml files belong here)")
    if not files:
        raise DataFileError(language_dir, "no .yml training files")
    return files


def content_hash(language: str, data_dir: Path) -> str:
    """Short digest of the training files (names and bytes), the pipeline config, Rasa's version and
    the text normalisation rules (voicebot/nlu/normalize.py) the data is trained through."""
    digest = hashlib.sha256(f"rasa {RASA_VERSION}\nnormalise {code_fingerprint()}\n".encode())
    language_dir = data_dir / language
    for path in [config_file(language, data_dir), *training_files(language, data_dir)]:
        name = path.relative_to(language_dir) if path.is_relative_to(language_dir) else path.name
        digest.update(f"\0{name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _check_examples(path: Path, item: LineDict, kind: str) -> None:
    """Each example is a "- " line; in intents, brackets must be complete entity annotations."""
    from rasa.shared.nlu.training_data.entities_parser import ENTITY_REGEX

    examples = item["examples"]
    if not isinstance(examples, str):
        raise DataFileError(path, "'examples' must be a block of '- ' lines (use 'examples: |')", item.line)
    first_line = item.line_of("examples") + 1  # a block scalar starts on the line after the key
    for offset, line in enumerate(examples.splitlines()):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("- "):
            raise DataFileError(path, f"example must start with '- ': {stripped!r}", first_line + offset)
        if kind == "intent" and any(mark in ENTITY_REGEX.sub("", stripped) for mark in "[]"):
            raise DataFileError(
                path,
                f"malformed entity annotation (expected [text](entity)): {stripped!r}",
                first_line + offset,
            )


def validate_training_file(path: Path) -> None:
    """Checks one NLU file's YAML and structure, then lets Rasa's reader check the rest."""
    document = load_yaml(path)
    if not isinstance(document, LineDict) or "nlu" not in document:
        raise DataFileError(path, "expected a mapping with 'version' and an 'nlu' list", 1)
    items = document["nlu"]
    if not isinstance(items, list):
        raise DataFileError(
            path, "'nlu' must be a list of intents, synonyms, regexes or lookups", document.line_of("nlu")
        )
    for item in items:
        if not isinstance(item, LineDict):
            raise DataFileError(
                path, f"each 'nlu' entry must be a mapping, got {item!r}", document.line_of("nlu")
            )
        kinds = [kind for kind in NLU_ITEM_KINDS if kind in item]
        if len(kinds) != 1:
            raise DataFileError(path, f"entry needs exactly one of {', '.join(NLU_ITEM_KINDS)}", item.line)
        if "examples" not in item:
            raise DataFileError(path, f"{kinds[0]} '{item[kinds[0]]}' has no 'examples'", item.line)
        _check_examples(path, item, kinds[0])

    from rasa.shared.exceptions import RasaException
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

    try:
        RasaYAMLReader().reads(path.read_text(encoding="utf-8"))
    except (RasaException, ValueError) as exc:  # Rasa's own messages lack the file name
        raise DataFileError(path, f"invalid Rasa NLU data: {exc}") from exc


def validate_config(path: Path) -> None:
    if not path.exists():
        raise DataFileError(path, "missing pipeline config")
    document = load_yaml(path)
    if not isinstance(document, LineDict) or not isinstance(document.get("pipeline"), list):
        raise DataFileError(path, "expected a mapping with 'language' and a 'pipeline' list", 1)


def _model_name(language: str, digest: str) -> str:
    return f"nlu-{language}-{digest}"


def write_normalised_data(language: str, data_dir: Path, target_dir: Path) -> Path:
    """The language's training data as Rasa reads it, normalised (normalize.py), in one Rasa YAML file
    written by Rasa's writer: the annotations' entity spans are moved with the text they annotate."""
    from rasa.shared.nlu.training_data.loading import load_data

    source = data_dir / language
    try:
        normalised = normalise_training_data(load_data(str(source), language), language)
    except ValueError as exc:  # two spellings that normalise alike map to different values
        raise DataFileError(source, f"synonyms: {exc}") from exc
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / "nlu.yml"
    path.write_text(normalised.nlu_as_yaml(), encoding="utf-8")
    return path


def train(
    language: str,
    data_dir: Path,
    models_dir: Path,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Trains models_dir/<language>/nlu-<language>-<hash>.tar.gz unless that exact model exists.

    Only data_dir/<language> is given to Rasa, so the held-out data_dir/test set is never trained on,
    and only through a normalised copy (write_normalised_data), the form RasaNlu.parse gives it too.
    ``progress`` is told each phase as it starts: "validating data", "training", "packaging".
    """
    report = progress or (lambda phase: None)
    started = time.perf_counter()
    report("validating data")
    config = config_file(language, data_dir)
    validate_config(config)
    for path in training_files(language, data_dir):
        validate_training_file(path)
    name = _model_name(language, content_hash(language, data_dir))
    output_dir = models_dir / language
    model_path = output_dir / f"{name}{MODEL_SUFFIX}"
    if model_path.exists() and not force:
        return TrainResult(model_path, skipped=True, seconds=time.perf_counter() - started)

    # Rasa caches trained components in ./.rasa/cache by default; keep that out of the checkout.
    os.environ.setdefault("RASA_CACHE_DIRECTORY", str(models_dir / ".rasa-cache"))
    from rasa.model_training import train_nlu

    report("training")
    output_dir.mkdir(parents=True, exist_ok=True)
    # Train into a scratch dir and move the finished archive in, so an interrupted run never leaves
    # a half-written model that a later run would take as up to date.
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".training-") as scratch:
        nlu_data = write_normalised_data(language, data_dir, Path(scratch) / "data")
        trained = train_nlu(config=str(config), nlu_data=str(nlu_data), output=scratch, fixed_model_name=name)
        if trained is None:
            raise DataFileError(data_dir / language, "Rasa found no NLU training examples")
        report("packaging")
        shutil.move(trained, model_path)
    for old in output_dir.glob(f"*{MODEL_SUFFIX}"):
        if old != model_path:
            old.unlink()
    return TrainResult(model_path, skipped=False, seconds=time.perf_counter() - started)


def latest_model(language: str, models_dir: Path) -> Path:
    models = sorted((models_dir / language).glob(f"*{MODEL_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise ModelNotFoundError(
            f"no NLU model for language '{language}' in {models_dir / language}: run `voicebot train`"
        )
    return models[-1]


def canonical_value(entity: str, value: Any, language: str = "en") -> Any:
    """Amounts as floats the dialogue can compare, read in the model's language. Every other value is
    canonical already: the NLU data's synonyms (Rasa's EntitySynonymMapper) map what callers say to
    the values flows use."""
    if entity == "amount":
        amount = parse_amount(str(value), language=language or "en")
        return amount if amount is not None else value
    return value


def in_original(result: NluResult, normalised: Normalised) -> NluResult:
    """A result parsed from ``normalised.text`` told in the caller's own text: the entities' spans
    and texts are those of what was said (values stay as the NLU gave them)."""

    def located(entity: Entity) -> Entity:
        if entity.start is None or entity.end is None or not entity.start < entity.end:
            return entity
        start, end = normalised.source_span(entity.start, entity.end)
        return dataclasses.replace(entity, text=normalised.original[start:end], start=start, end=end)

    return dataclasses.replace(
        result, text=normalised.original, entities=tuple(located(e) for e in result.entities)
    )


def no_match(text: str) -> NluResult:
    fallback = IntentScore(FALLBACK_INTENT, 0.0)
    return NluResult(text=text, intent=fallback, ranking=(fallback,))


def result_from_rasa(text: str, parse_data: Mapping[str, Any], language: str = "en") -> NluResult:
    """Maps Rasa's parse output (in-process or /model/parse) to an NluResult."""
    intent_data = parse_data.get("intent") or {}
    if not intent_data.get("name"):
        return no_match(text)
    intent = IntentScore(intent_data["name"], float(intent_data.get("confidence") or 0.0))
    ranking = tuple(
        IntentScore(item["name"], float(item["confidence"]))
        for item in parse_data.get("intent_ranking", [])[:RANKING_SIZE]
    )
    entities = tuple(
        Entity(
            entity=item["entity"],
            value=canonical_value(item["entity"], item["value"], language),
            text=text[item["start"] : item["end"]],
            start=item["start"],
            end=item["end"],
            confidence=item.get("confidence_entity"),
        )
        for item in parse_data.get("entities", [])
    )
    return NluResult(text=text, intent=intent, ranking=ranking or (intent,), entities=entities)


class RasaNlu:
    """A trained model loaded in this process, one instance per model path, shared by all calls.

    Parsing runs on one dedicated worker thread: it keeps the event loop responsive while Rasa's
    synchronous graph runs, and serialises access to components not documented as thread-safe.
    """

    name = "rasa"
    _instances: ClassVar[dict[Path, RasaNlu]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model_path: Path,
        runner: Any,
        target: str,
        storage: tempfile.TemporaryDirectory[str],
        language: str = "",
    ) -> None:
        self.model_path = model_path
        self.language = language  # the model's (its pipeline config's): how parse normalises text
        self._runner = runner
        self._target = target
        self._storage = storage  # the unpacked model; removed when this object goes away
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rasa-nlu")

    @classmethod
    def load(cls, model_path: Path) -> RasaNlu:
        key = model_path.resolve()
        with cls._instances_lock:
            if key not in cls._instances:
                cls._instances[key] = cls._load(key)
            return cls._instances[key]

    @classmethod
    def _load(cls, model_path: Path) -> RasaNlu:
        # scripts/bench_nlu.py: this and rasa.core.agent.Agent.load both take ~6 s (TensorFlow and
        # component set-up); the bare prediction graph skips the dialogue processor, tracker and
        # lock stores that an NLU-only model never uses.
        from rasa.engine.loader import load_predict_graph_runner
        from rasa.engine.runner.dask import DaskGraphRunner
        from rasa.engine.storage.local_model_storage import LocalModelStorage

        if not model_path.is_file():
            raise ModelNotFoundError(f"NLU model {model_path} not found: run `voicebot train`")
        storage = tempfile.TemporaryDirectory(prefix="voicebot-nlu-")
        metadata, runner = load_predict_graph_runner(
            Path(storage.name), model_path, LocalModelStorage, DaskGraphRunner
        )
        if metadata.nlu_target is None:
            raise ModelNotFoundError(f"{model_path} has no NLU pipeline: run `voicebot train`")
        return cls(model_path, runner, metadata.nlu_target, storage, metadata.language or "")

    def _parse_sync(self, text: str) -> dict[str, Any]:
        from rasa.core.channels.channel import UserMessage
        from rasa.engine.constants import PLACEHOLDER_MESSAGE

        results = self._runner.run(inputs={PLACEHOLDER_MESSAGE: [UserMessage(text)]}, targets=[self._target])
        return results[self._target][0].as_dict(only_output_properties=True)

    async def parse(self, text: str) -> NluResult:
        """Parses the normalised text (what the model was trained on); the result tells the caller's
        text and entity spans in it."""
        normalised = normalise_aligned(text, self.language)
        if not normalised.text:
            return no_match(text)
        loop = asyncio.get_running_loop()
        parse_data = await loop.run_in_executor(self._executor, self._parse_sync, normalised.text)
        return in_original(result_from_rasa(normalised.text, parse_data, self.language), normalised)
