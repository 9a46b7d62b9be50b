"""`voicebot nlu report`: how well the NLU understands callers, as one HTML page per language.

Three views of the same model: k-fold cross-validation on the training data (every phrase scored by a
model that never saw it), the held-out set in nlu_data/test/<language>/ as text (accuracy per intent
and what each intent is mistaken for), and the same held-out phrases spoken by Piper, passed through a
G.711 telephone channel and recognised by the configured ASR, so designers see what recognition errors
do to intents. Reports for several languages get an overview page (write_overview).
"""

from __future__ import annotations

import asyncio
import difflib
import html
import os
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import mean

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.nlu.training_data.training_data import TrainingData
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from tabulate import tabulate

from voicebot.asr.catalog import create_recognizer
from voicebot.audio import FRAME_BYTES
from voicebot.audio.degrade import telephone_channel
from voicebot.config import Config, PolicyConfig
from voicebot.engines import load_synthesizer
from voicebot.errors import ModelNotFoundError
from voicebot.nlu.base import NluResult
from voicebot.nlu.rasa_engine import FALLBACK_INTENT, RasaNlu, config_file, train
from voicebot.tts.piper_engine import synthesize_all

Progress = Callable[[str], None]

ACCURACY_TARGET = 0.95  # the data-supported accept threshold keeps at least this share right
CALLER_LENGTH_SCALE = 1.1  # callers speak a little slower than the bot, as in `voicebot scenarios`
SEED = 0  # fold split and ASR sample: the same data gives the same report
SHOWN = 10  # rows in the confused-pairs and worst-ASR tables
CONFUSIONS_PER_INTENT = 3  # "mistaken for" column of the held-out table
EXAMPLES_PER_PAIR = 3
CONFUSION_PNG = "confusion_matrix.png"
CONFIDENCE_PNG = "confidence_histogram.png"
CORRECT_COLOUR, WRONG_COLOUR = "#3a8f3a", "#c0392b"


@dataclass(frozen=True)
class Prediction:
    text: str
    gold: str
    intent: str  # what the dialogue receives: nlu_fallback below the fallback threshold
    top: str  # the classifier's best real intent, whose confidence the policy thresholds read
    confidence: float

    @property
    def correct(self) -> bool:
        return self.intent == self.gold


def prediction(text: str, gold: str, result: NluResult) -> Prediction:
    top = next((r for r in result.ranking if r.name != FALLBACK_INTENT), result.intent)
    return Prediction(text, gold, result.intent.name, top.name, top.confidence)


@dataclass(frozen=True)
class SpokenPrediction:
    by_text: Prediction
    transcript: str
    by_speech: Prediction


@dataclass(frozen=True)
class Thresholds:
    accept: float | None  # lowest confidence above which >= ACCURACY_TARGET of predictions are right
    reject: float | None  # rejecting below it gains most: what it removes is mostly wrong


@dataclass(frozen=True)
class IntentScores:
    intent: str
    support: int
    precision: float
    recall: float
    f1: float


@dataclass
class NluReport:
    language: str
    model: Path
    folds: int
    cross_validation: list[Prediction]
    held_out: list[Prediction]
    spoken: list[SpokenPrediction]
    asr_name: str
    policy: PolicyConfig
    thresholds: Thresholds
    index: Path
    speech_skipped: str = ""  # why the speech path did not run, where a model for it is missing

    @property
    def text_predictions(self) -> list[Prediction]:
        """Every out-of-sample text prediction: what the confusion matrix and the thresholds use."""
        return self.cross_validation + self.held_out

    def headline(self) -> list[str]:
        lines = [
            f"cross-validation ({self.folds} folds, {len(self.cross_validation)} phrases): "
            f"accuracy {accuracy(self.cross_validation):.3f}, macro F1 {macro_f1(self.cross_validation):.3f}"
        ]
        if self.held_out:
            lines.append(
                f"held-out text ({len(self.held_out)} phrases): accuracy {accuracy(self.held_out):.3f}, "
                f"macro F1 {macro_f1(self.held_out):.3f}"
            )
        if self.spoken:
            text = accuracy([s.by_text for s in self.spoken])
            speech = accuracy([s.by_speech for s in self.spoken])
            lines.append(
                f"held-out via TTS -> telephone -> {self.asr_name} ({len(self.spoken)} phrases): "
                f"accuracy {speech:.3f} (text {text:.3f})"
            )
        for name, predictions in (("cross-validation", self.cross_validation), ("held-out", self.held_out)):
            weakest = sorted(intent_scores(predictions), key=lambda s: s.f1)[:3]
            if weakest:
                scores = ", ".join(f"{s.intent} (F1 {s.f1:.2f})" for s in weakest)
                lines.append(f"weakest intents, {name}: {scores}")
        if confused := confused_pairs(self.held_out)[:3]:
            pairs = ", ".join(f"{gold} -> {taken} ({len(texts)})" for gold, taken, texts in confused)
            lines.append(f"most confused, held-out (meant -> understood): {pairs}")
        lines.append(
            f"thresholds: policy accept {self.policy.accept_threshold:.2f} / reject "
            f"{self.policy.reject_threshold:.2f}; data supports accept {_fmt(self.thresholds.accept)} / "
            f"reject {_fmt(self.thresholds.reject)}"
        )
        return lines


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


# ----- scoring ------------------------------------------------------------------------------------


def accuracy(predictions: list[Prediction]) -> float:
    return mean(p.correct for p in predictions) if predictions else 0.0


def intent_scores(predictions: list[Prediction]) -> list[IntentScores]:
    """Precision, recall and F1 per intent callers meant; nlu_fallback counts as a miss."""
    labels = sorted({p.gold for p in predictions})
    if not labels:
        return []
    precision, recall, f1, support = precision_recall_fscore_support(
        [p.gold for p in predictions], [p.intent for p in predictions], labels=labels, zero_division=0
    )
    return [
        IntentScores(label, int(n), float(p), float(r), float(f))
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    ]


def macro_f1(predictions: list[Prediction]) -> float:
    scores = intent_scores(predictions)
    return mean(s.f1 for s in scores) if scores else 0.0


def confused_pairs(predictions: list[Prediction]) -> list[tuple[str, str, list[str]]]:
    """(meant, understood, phrases) for the most frequent mistakes, most frequent first."""
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in predictions:
        if not p.correct:
            pairs[(p.gold, p.intent)].append(p.text)
    ranked = sorted(pairs.items(), key=lambda item: (-len(item[1]), item[0]))[:SHOWN]
    return [(gold, predicted, texts) for (gold, predicted), texts in ranked]


@dataclass(frozen=True)
class IntentAccuracy:
    intent: str
    phrases: int
    accuracy: float  # share of the intent's phrases understood as it (its recall)
    mistaken_for: list[tuple[str, int]]  # what the rest were understood as, most often first


def accuracy_by_intent(predictions: list[Prediction]) -> list[IntentAccuracy]:
    """Per intent callers meant: how many phrases, the share understood right, and the mistakes;
    the least accurate intent first."""
    by_gold: dict[str, list[Prediction]] = defaultdict(list)
    for p in predictions:
        by_gold[p.gold].append(p)
    rows = []
    for gold, group in by_gold.items():
        wrong: dict[str, int] = defaultdict(int)
        for p in group:
            if not p.correct:
                wrong[p.intent] += 1
        mistaken = sorted(wrong.items(), key=lambda item: (-item[1], item[0]))
        rows.append(IntentAccuracy(gold, len(group), accuracy(group), mistaken))
    return sorted(rows, key=lambda row: (row.accuracy, row.intent))


def supported_thresholds(predictions: list[Prediction]) -> Thresholds:
    """Reads the thresholds off the data, judging the classifier's top intent and its confidence."""
    if not predictions:
        return Thresholds(None, None)
    ordered = sorted((p.confidence, p.top == p.gold) for p in predictions)
    confidences = np.array([conf for conf, _ in ordered])
    right = np.array([ok for _, ok in ordered], dtype=float)
    kept = np.arange(len(ordered), 0, -1)  # predictions at or above each cut
    precision = np.cumsum(right[::-1])[::-1] / kept
    above = np.flatnonzero(precision >= ACCURACY_TARGET)
    # The reject cut that keeps the most right-minus-wrong predictions: what it removes is mostly
    # wrong, while the predictions just above it are mostly right (a cumulative "below it most are
    # wrong" would drift up into bands that are mostly right).
    best = int(np.argmax(np.cumsum((2 * right - 1)[::-1])[::-1]))
    return Thresholds(
        accept=float(confidences[above[0]]) if len(above) else None,
        reject=float(confidences[best]) if best > 0 else None,
    )


def confidence_bands(predictions: list[Prediction], policy: PolicyConfig) -> list[list[str]]:
    """Share and accuracy of the predictions the policy would reject, confirm and accept."""
    bands = (
        (f"reject (< {policy.reject_threshold:.2f})", 0.0, policy.reject_threshold),
        ("confirm", policy.reject_threshold, policy.accept_threshold),
        (f"accept (>= {policy.accept_threshold:.2f})", policy.accept_threshold, 1.01),
    )
    rows = []
    for name, low, high in bands:
        inside = [p.top == p.gold for p in predictions if low <= p.confidence < high]
        share = len(inside) / len(predictions) if predictions else 0.0
        rows.append([name, f"{share:.1%}", f"{mean(inside):.1%}" if inside else "-"])
    return rows


# ----- running the NLU ------------------------------------------------------------------------------


def labelled_phrases(directory: Path, language: str) -> list[tuple[str, str]]:
    """(text, intent) for every intent example under ``directory``, as Rasa reads them."""
    return [(m.get("text"), m.get("intent")) for m in load_data(str(directory), language).intent_examples]


def parse_all(nlu: RasaNlu, labelled: list[tuple[str, str]]) -> list[Prediction]:
    async def run() -> list[Prediction]:
        return [prediction(text, gold, await nlu.parse(text)) for text, gold in labelled]

    return asyncio.run(run())


def prefixed(progress: Progress, label: str) -> Progress:
    return lambda phase: progress(f"{label}: {phase}")


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def cross_validate(language: str, data_dir: Path, folds: int, progress: Progress) -> list[Prediction]:
    """Stratified k-fold: each fold's model is trained with train() on the rest, in a scratch dir."""
    data = load_data(str(data_dir / language), language)
    examples = data.intent_examples
    intents = [m.get("intent") for m in examples]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    predictions: list[Prediction] = []
    with tempfile.TemporaryDirectory(prefix="voicebot-cv-") as scratch:
        work = Path(scratch)
        # train() would point Rasa's component cache into the first fold's folder for the rest of
        # the process; fold models are never reused, so keep their cache in the scratch dir.
        with _environment("RASA_CACHE_DIRECTORY", str(work / "rasa-cache")):
            for fold, (train_rows, test_rows) in enumerate(splitter.split(examples, intents), start=1):
                fold_dir = work / f"fold{fold}"
                (fold_dir / language).mkdir(parents=True)
                config_file(language, fold_dir).parent.mkdir()
                shutil.copy(config_file(language, data_dir), config_file(language, fold_dir))
                subset = TrainingData(
                    [examples[i] for i in train_rows],
                    entity_synonyms=data.entity_synonyms,
                    regex_features=data.regex_features,
                    lookup_tables=data.lookup_tables,
                )
                (fold_dir / language / "nlu.yml").write_text(subset.nlu_as_yaml(), encoding="utf-8")
                fold_progress = prefixed(progress, f"fold {fold}/{folds}")
                model = train(language, fold_dir, fold_dir / "models", progress=fold_progress).model_path
                fold_progress(f"scoring {len(test_rows)} phrases")
                held = [(examples[i].get("text"), intents[i]) for i in test_rows]
                predictions += parse_all(RasaNlu.load(model), held)
    return predictions


def spoken_predictions(
    config: Config, language: str, nlu: RasaNlu, labelled: list[tuple[str, str]], progress: Progress
) -> tuple[str, list[SpokenPrediction]]:
    """Piper -> G.711 telephone channel -> ASR -> NLU for each phrase; returns the ASR's name too."""
    progress("loading TTS and ASR")
    voice = load_synthesizer(config, language, length_scale=CALLER_LENGTH_SCALE)
    recognizer = create_recognizer(config, language)
    texts = parse_all(nlu, labelled)
    transcripts = []
    for number, (text, _) in enumerate(labelled, start=1):
        progress(f"speech path {number}/{len(labelled)}")
        audio = telephone_channel(synthesize_all(voice, text))
        stream = recognizer.open_stream()
        for start in range(0, len(audio), FRAME_BYTES):
            stream.accept(audio[start : start + FRAME_BYTES])
        transcripts.append(stream.finish().text)
    speech = parse_all(nlu, [(t, gold) for t, (_, gold) in zip(transcripts, labelled, strict=True)])
    spoken = [
        SpokenPrediction(by_text, transcript, by_speech)
        for by_text, transcript, by_speech in zip(texts, transcripts, speech, strict=True)
    ]
    return recognizer.name, spoken


def worst_spoken(spoken: list[SpokenPrediction]) -> list[SpokenPrediction]:
    """Misunderstood on the speech path: first where text was understood, then the most garbled."""

    def similarity(s: SpokenPrediction) -> float:
        return difflib.SequenceMatcher(None, s.by_text.text.split(), s.transcript.lower().split()).ratio()

    wrong = [s for s in spoken if not s.by_speech.correct]
    return sorted(wrong, key=lambda s: (not s.by_text.correct, similarity(s)))[:SHOWN]


# ----- figures ------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    # The Agg canvas directly: no pyplot, so no global backend state and no display needed.
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def plot_confusion(predictions: list[Prediction], path: Path) -> None:
    rows = sorted({p.gold for p in predictions})
    columns = rows + sorted({p.intent for p in predictions} - set(rows))  # e.g. nlu_fallback
    counts = np.zeros((len(rows), len(columns)), dtype=int)
    for p in predictions:
        counts[rows.index(p.gold), columns.index(p.intent)] += 1
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2 + 0.45 * len(columns)
    figure, axes = _figure(size + 1.5, size)
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        if count:
            colour = "white" if share[row, column] > 0.6 else "black"
            axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    axes.set_xticks(range(len(columns)), labels=columns, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(rows)), labels=rows, fontsize=8)
    axes.set_xlabel("understood as")
    axes.set_ylabel("meant")
    axes.set_title("Intent confusion (counts; colour = share of the row)")
    figure.colorbar(image, ax=axes, fraction=0.04)
    figure.tight_layout()
    figure.savefig(path)


def plot_confidence(
    predictions: list[Prediction], policy: PolicyConfig, thresholds: Thresholds, path: Path
) -> None:
    figure, axes = _figure(9, 4.5)
    bins = np.linspace(0, 1, 21)
    right = [p.confidence for p in predictions if p.top == p.gold]
    wrong = [p.confidence for p in predictions if p.top != p.gold]
    axes.hist(
        [right, wrong],
        bins=bins,
        stacked=True,
        color=[CORRECT_COLOUR, WRONG_COLOUR],
        label=["correct", "wrong"],
    )
    axes.axvspan(
        policy.reject_threshold, policy.accept_threshold, color="#f1c40f", alpha=0.15, label="confirm band"
    )
    axes.axvline(policy.reject_threshold, color="black", label=f"policy reject {policy.reject_threshold:.2f}")
    axes.axvline(
        policy.accept_threshold,
        color="black",
        linestyle="-.",
        label=f"policy accept {policy.accept_threshold:.2f}",
    )
    if thresholds.accept is not None:
        label = f"data: >= {ACCURACY_TARGET:.0%} right above {thresholds.accept:.2f}"
        axes.axvline(thresholds.accept, color="#2c6fbb", linestyle="--", label=label)
    if thresholds.reject is not None:
        label = f"data: mostly wrong below {thresholds.reject:.2f}"
        axes.axvline(thresholds.reject, color="#8e44ad", linestyle=":", linewidth=2, label=label)
    axes.set_xlim(0, 1)
    axes.set_xlabel("confidence of the top intent")
    axes.set_ylabel("phrases")
    axes.set_title("Confidence: correct vs wrong predictions")
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)


# ----- the page -----------------------------------------------------------------------------------


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; vertical-align: top; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #ddd; }
td { unicode-bidi: plaintext; }  /* each phrase in its own direction (Persian right to left) */
.note { color: #555; font-size: 0.9em; }
"""


def _table(rows: list[list[object]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="html", floatfmt=".2f")  # escapes cell text


def _intent_table(report: NluReport) -> str:
    held_out = {s.intent: s for s in intent_scores(report.held_out)}
    rows: list[list[object]] = []
    for s in sorted(intent_scores(report.cross_validation), key=lambda s: s.f1):
        row: list[object] = [s.intent, s.support, s.precision, s.recall, s.f1]
        if report.held_out:
            h = held_out.get(s.intent)
            row += [h.support, h.precision, h.recall, h.f1] if h else ["-"] * 4
        rows.append(row)
    headers = ["intent", "CV n", "CV precision", "CV recall", "CV F1"]
    if report.held_out:
        headers += ["held-out n", "precision", "recall", "F1"]
    return _table(rows, headers)


def _summary_table(report: NluReport) -> str:
    rows: list[list[object]] = [
        [f"cross-validation ({report.folds} folds)", len(report.cross_validation),
         accuracy(report.cross_validation), macro_f1(report.cross_validation)],
    ]  # fmt: skip
    if report.held_out:
        rows.append(
            ["held-out set, text", len(report.held_out), accuracy(report.held_out), macro_f1(report.held_out)]
        )
    if report.spoken:
        for name, chosen in (
            ("held-out sample, text", [s.by_text for s in report.spoken]),
            (
                f"held-out sample, speech via telephone + {report.asr_name}",
                [s.by_speech for s in report.spoken],
            ),
        ):
            rows.append([name, len(chosen), accuracy(chosen), macro_f1(chosen)])
    return _table(rows, ["evaluation", "phrases", "intent accuracy", "macro F1"])


def _spoken_section(report: NluReport) -> str:
    if report.speech_skipped:
        return f"<p class='note'>Speech path not run: {html.escape(report.speech_skipped)}</p>"
    if not report.spoken:
        return "<p class='note'>Speech path not run (no held-out set, or --asr-sample 0).</p>"
    rows = [
        [s.by_text.text, s.transcript, s.by_text.gold, s.by_text.intent,
         f"{s.by_speech.intent} ({s.by_speech.confidence:.2f})"]
        for s in worst_spoken(report.spoken)
    ]  # fmt: skip
    return (
        "<p>Each phrase was spoken by Piper, sent through an 8 kHz G.711 telephone channel, recognised by "
        f"{html.escape(report.asr_name)} and parsed. Worst cases first (text understood, speech not):</p>"
        + _table(rows, ["original", "transcript", "meant", "understood from text", "understood from speech"])
    )


def _held_out_table(report: NluReport) -> str:
    if not report.held_out:
        return f"<p class='note'>No held-out set (nlu_data/test/{html.escape(report.language)}).</p>"
    rows = [
        [row.intent, row.phrases, f"{row.accuracy:.1%}",
         ", ".join(f"{name} ({n})" for name, n in row.mistaken_for[:CONFUSIONS_PER_INTENT]) or "-"]
        for row in accuracy_by_intent(report.held_out)
    ]  # fmt: skip
    return _table(rows, ["intent", "phrases", "accuracy", "mistaken for (times)"])


def _pairs_table(predictions: list[Prediction]) -> str:
    rows = [
        [gold, predicted, len(texts), " | ".join(texts[:EXAMPLES_PER_PAIR])]
        for gold, predicted, texts in confused_pairs(predictions)
    ]
    return _table(rows, ["meant", "understood as", "times", "example phrases"])


def render_html(report: NluReport) -> str:
    policy, thresholds = report.policy, report.thresholds
    bands = _table(confidence_bands(report.text_predictions, policy), ["policy band", "share", "correct"])
    headline = "".join(f"<li>{html.escape(line)}</li>" for line in report.headline())
    return f"""<!DOCTYPE html>
<html lang="{html.escape(report.language)}"><head><meta charset="utf-8">
<title>NLU report ({html.escape(report.language)})</title>
<style>{_STYLE}</style></head><body>
<h1>NLU report: {html.escape(report.language)}</h1>
<p class="note">Generated {datetime.now():%Y-%m-%d %H:%M} for model {html.escape(report.model.name)}.
Cross-validation scores each training phrase with a model trained on the other folds; the held-out set
(nlu_data/test/{html.escape(report.language)}) is never trained on. A prediction of nlu_fallback counts
as a miss.</p>
<ul>{headline}</ul>
{_summary_table(report)}
<h2>Confidence and thresholds</h2>
<p>The dialogue accepts at &ge; {policy.accept_threshold:.2f} (when the runner-up is
{policy.ambiguity_gap:.2f} behind), confirms between {policy.reject_threshold:.2f} and
{policy.accept_threshold:.2f} and rejects below {policy.reject_threshold:.2f} (voicebot.yml
<code>policy:</code>). From the {len(report.text_predictions)} out-of-sample text predictions, the data
supports an accept threshold of <b>{_fmt(thresholds.accept)}</b> (the lowest confidence above which
&ge; {ACCURACY_TARGET:.0%} of predictions are right) and a reject threshold of
<b>{_fmt(thresholds.reject)}</b> (rejecting below it removes more wrong predictions than right ones,
and no other cut gains more; "none": rejecting nothing is best).</p>
<img src="{CONFIDENCE_PNG}" alt="confidence histogram">
{bands}
<h2>Per intent</h2>
<p class="note">Weakest first (by cross-validation F1).</p>
{_intent_table(report)}
<h3>Held-out set: accuracy per intent</h3>
<p class="note">Least accurate first; "mistaken for" counts what its phrases were understood as
instead (nlu_fallback: below the fallback threshold).</p>
{_held_out_table(report)}
<h2>Confusions</h2>
<img src="{CONFUSION_PNG}" alt="confusion matrix">
<h3>Most confused pairs</h3>
{_pairs_table(report.text_predictions)}
<h2>Through the telephone and ASR</h2>
{_spoken_section(report)}
</body></html>
"""


def build_report(
    config: Config, language: str, folds: int, asr_sample: int | None, out_dir: Path, progress: Progress
) -> NluReport:
    """Trains (or reuses) the language's model, evaluates it three ways and writes out_dir/index.html."""
    data_dir = config.path(config.nlu.data_dir)
    model = train(
        language,
        data_dir,
        config.path(config.nlu.models_dir),
        progress=prefixed(progress, "model"),
    ).model_path
    cross_validation = cross_validate(language, data_dir, folds, progress)
    test_dir = data_dir / "test" / language
    labelled = labelled_phrases(test_dir, language) if test_dir.is_dir() else []
    nlu = RasaNlu.load(model)
    progress(f"scoring {len(labelled)} held-out phrases")
    held_out = parse_all(nlu, labelled)
    sample = (
        labelled
        if asr_sample is None or asr_sample >= len(labelled)
        else random.Random(SEED).sample(labelled, asr_sample)
    )
    asr_name, spoken, speech_skipped = "", [], ""
    if sample:
        try:
            asr_name, spoken = spoken_predictions(config, language, nlu, sample, progress)
        except ModelNotFoundError as exc:  # no recogniser or voice for this language here
            speech_skipped = str(exc)
    report = NluReport(
        language=language,
        model=model,
        folds=folds,
        cross_validation=cross_validation,
        held_out=held_out,
        spoken=spoken,
        asr_name=asr_name,
        policy=config.policy,
        thresholds=supported_thresholds(cross_validation + held_out),
        index=out_dir / "index.html",
        speech_skipped=speech_skipped,
    )
    progress("writing the report")
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(report.text_predictions, out_dir / CONFUSION_PNG)
    plot_confidence(report.text_predictions, report.policy, report.thresholds, out_dir / CONFIDENCE_PNG)
    report.index.write_text(render_html(report), encoding="utf-8")
    return report


def write_overview(out_dir: Path, reports: list[NluReport]) -> Path:
    """out_dir/index.html: one row per language's report, with its headline figures and a link."""
    rows = []
    for r in reports:
        page = html.escape(r.index.relative_to(out_dir).as_posix())
        link = f"<a href='{page}'>{html.escape(r.language)}</a>"
        speech = accuracy([s.by_speech for s in r.spoken]) if r.spoken else None
        rows.append(
            f"<tr><td>{link}</td><td>{len(r.cross_validation)}</td><td>{accuracy(r.cross_validation):.3f}</td>"
            f"<td>{len(r.held_out)}</td><td>{accuracy(r.held_out):.3f}</td><td>{macro_f1(r.held_out):.3f}</td>"
            f"<td>{'-' if speech is None else f'{speech:.3f}'}</td></tr>"
        )
    index = out_dir / "index.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    index.write_text(
        f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>NLU reports</title><style>{_STYLE}</style></head><body>
<h1>NLU reports</h1>
<p class="note">Generated {datetime.now():%Y-%m-%d %H:%M}; one page per language (intent accuracy).</p>
<table><tr><th>language</th><th>CV phrases</th><th>CV accuracy</th><th>held-out phrases</th>
<th>held-out accuracy</th><th>held-out macro F1</th><th>speech path accuracy</th></tr>
{"".join(rows)}
</table></body></html>
""",
        encoding="utf-8",
    )
    return index
