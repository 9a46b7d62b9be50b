"""Compares candidate Rasa NLU pipelines on the held-out set nlu_data/test/<language>.

For each candidate: train time, load time and RSS (each in a fresh process so imports and memory are
not shared), intent accuracy, macro F1, out-of-scope recall, entity F1 by value, parse latency and
confidence calibration against the dialogue's thresholds. Prints JSON, then a table. No assertions:
read the numbers and put the winner in nlu_data/config/<language>.yml.

    .venv/bin/python scripts/bench_nlu.py [--language en] [--only logreg,diet]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

# Runnable from a plain checkout, without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebot.config import load_config
from voicebot.nlu.normalize import normalise
from voicebot.nlu.rasa_engine import FALLBACK_INTENT, RasaNlu, canonical_value, config_file, train

OUT_OF_SCOPE = "out_of_scope"
ENTITY_TYPES = ("amount", "account_type", "card_type", "branch")
CONFIDENCE_CUTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

_FEATURIZERS: list[dict[str, Any]] = [
    {"name": "WhitespaceTokenizer"},
    {"name": "RegexFeaturizer"},
    {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
]
# CRF features: Rasa's defaults plus "pattern", so the branch lookup table and amount regex count.
_CRF = {
    "name": "CRFEntityExtractor",
    "features": [
        ["low", "title", "upper"],
        [
            "low",
            "bias",
            "prefix5",
            "prefix2",
            "suffix5",
            "suffix3",
            "suffix2",
            "upper",
            "title",
            "digit",
            "pattern",
        ],
        ["low", "title", "upper"],
    ],
}
# Ambiguity is the dialogue's call (it confirms when the top two are close), so the fallback only
# fires below the dialogue's reject threshold.
_FALLBACK = {"name": "FallbackClassifier", "threshold": 0.4, "ambiguity_threshold": 0.0}
_TAIL = [{"name": "EntitySynonymMapper"}, _FALLBACK]

# (Rasa's SklearnIntentClassifier needs dense features, i.e. spaCy or a language model: not offline.)
CANDIDATES: dict[str, list[dict[str, Any]]] = {
    "logreg": [*_FEATURIZERS, {"name": "LogisticRegressionClassifier", "max_iter": 1000}, _CRF, *_TAIL],
    "logreg_bigrams": [
        *_FEATURIZERS[:3],
        {"name": "CountVectorsFeaturizer", "min_ngram": 1, "max_ngram": 2},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 2, "max_ngram": 5},
        {"name": "LogisticRegressionClassifier", "max_iter": 1000},
        _CRF,
        *_TAIL,
    ],
    "diet": [
        *_FEATURIZERS,
        {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True},
        *_TAIL,
    ],
}


def _write_candidate(name: str, language: str, data_dir: Path, work: Path) -> Path:
    """A data dir whose language folder is the real one and whose config is the candidate's."""
    candidate_dir = work / name
    (candidate_dir / "config").mkdir(parents=True, exist_ok=True)
    if not (candidate_dir / language).exists():
        (candidate_dir / language).symlink_to((data_dir / language).resolve(), target_is_directory=True)
    document = {
        "recipe": "default.v1",
        "assistant_id": f"bench-{name}",
        "language": language,
        "pipeline": CANDIDATES[name],
    }
    config_file(language, candidate_dir).write_text(yaml.safe_dump(document, sort_keys=False))
    return candidate_dir


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _gold_examples(test_dir: Path) -> list[tuple[str, str, set[tuple[str, Any]]]]:
    from rasa.shared.nlu.training_data.loading import load_data

    # Gold values mapped by the training data's synonyms, as the model's EntitySynonymMapper maps its own:
    # both in the normalised form the model is trained on and given (voicebot/nlu/normalize.py).
    language = test_dir.name
    trained = load_data(str(test_dir.parent.parent / language)).entity_synonyms
    synonyms = {normalise(variant, language): value for variant, value in trained.items()}

    def gold(entity: dict[str, Any], text: str) -> Any:
        value = str(entity["value"])
        said = value == text[entity["start"] : entity["end"]]  # else an explicit canonical value
        key = normalise(value, language)
        return canonical_value(entity["entity"], synonyms.get(key, key if said else value), language)

    examples = []
    for message in load_data(str(test_dir)).intent_examples:
        entities = {(e["entity"], gold(e, message.get("text"))) for e in message.get("entities", [])}
        examples.append((message.get("text"), message.get("intent"), entities))
    return examples


def _intent_scores(gold: list[str], predicted: list[str]) -> dict[str, float]:
    # Fallback and out_of_scope both mean "not handled here": one class for F1 and OOS recall.
    handled = [OUT_OF_SCOPE if p == FALLBACK_INTENT else p for p in predicted]
    labels = sorted(set(gold))
    f1s = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, handled, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, handled, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, handled, strict=True))
        f1s.append(_f1(tp, fp, fn))
    in_scope = [p for g, p in zip(gold, predicted, strict=True) if g != OUT_OF_SCOPE]
    oos = [p for g, p in zip(gold, handled, strict=True) if g == OUT_OF_SCOPE]
    return {
        "intent_accuracy": sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold),
        "macro_f1": statistics.mean(f1s),
        "oos_recall": sum(p == OUT_OF_SCOPE for p in oos) / len(oos),
        "in_scope_fallback_rate": sum(p == FALLBACK_INTENT for p in in_scope) / len(in_scope),
    }


def _calibration(gold: list[str], tops: list[tuple[str, float]]) -> dict[str, Any]:
    """Uses the classifier's own top intent (ignoring the fallback) to see how its confidence reads."""
    correct = [(conf, name == g) for g, (name, conf) in zip(gold, tops, strict=True)]
    high = [ok for conf, ok in correct if conf >= 0.7]
    middle = [ok for conf, ok in correct if 0.4 <= conf < 0.7]
    low = [ok for conf, ok in correct if conf < 0.4]
    return {
        "accuracy_above_0.7": sum(high) / len(high) if high else None,
        "share_above_0.7": len(high) / len(correct),
        "correct_in_0.4_0.7": sum(middle) / len(middle) if middle else None,
        "share_in_0.4_0.7": len(middle) / len(correct),
        "correct_below_0.4": sum(low) / len(low) if low else None,
        "share_below_0.4": len(low) / len(correct),
        # accuracy and coverage of predictions at or above each cut, to choose thresholds from
        "by_cut": {
            str(cut): {
                "accuracy": sum(ok for conf, ok in correct if conf >= cut)
                / max(1, sum(conf >= cut for conf, _ in correct)),
                "coverage": sum(conf >= cut for conf, _ in correct) / len(correct),
            }
            for cut in CONFIDENCE_CUTS
        },
    }


async def _evaluate(model: Path, test_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    # The agent step imports the same module first, so both load times are the model alone.
    import rasa.core.agent  # noqa: F401

    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    nlu = RasaNlu.load(model)
    load_seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    examples = _gold_examples(test_dir)
    await nlu.parse("warm up")
    gold, predicted, tops, latencies = [], [], [], []
    entity_counts: dict[str, Counter[str]] = {kind: Counter() for kind in ENTITY_TYPES}
    for text, intent, gold_entities in examples:
        started = time.perf_counter()
        result = await nlu.parse(text)
        latencies.append((time.perf_counter() - started) * 1000)
        gold.append(intent)
        predicted.append(result.intent.name)
        top = next((r for r in result.ranking if r.name != FALLBACK_INTENT), result.intent)
        tops.append((top.name, top.confidence))
        found = {(e.entity, e.value) for e in result.entities}
        for kind in ENTITY_TYPES:
            expected = {pair for pair in gold_entities if pair[0] == kind}
            got = {pair for pair in found if pair[0] == kind}
            entity_counts[kind].update(tp=len(expected & got), fp=len(got - expected), fn=len(expected - got))
    return {
        "import_s": import_seconds,
        "load_s": load_seconds,
        "rss_mb_after_load": rss_mb,
        **_intent_scores(gold, predicted),
        "entity_f1": {kind: _f1(c["tp"], c["fp"], c["fn"]) for kind, c in entity_counts.items()},
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_p95": _percentile(latencies, 0.95),
        "calibration": _calibration(gold, tops),
        "confusions": Counter(
            f"{g}->{p}" for g, p in zip(gold, predicted, strict=True) if g != p
        ).most_common(12),
    }


def _agent_load(model: Path) -> dict[str, float]:
    """Load time through rasa.core.agent.Agent, for comparison with the bare graph runner."""
    from rasa.core.agent import Agent

    started = time.perf_counter()
    Agent.load(model)
    return {"agent_load_s": time.perf_counter() - started}


def _in_fresh_process(*args: str) -> dict[str, Any]:
    """Runs one step of this script in a new interpreter; its last stdout line is the JSON result."""
    # No training cache, so train times are real; quiet TensorFlow; no telemetry attempts offline.
    env = {
        **os.environ,
        "RASA_MAX_CACHE_SIZE": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "RASA_TELEMETRY_ENABLED": "false",
    }
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"step {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, r in results.items():
        calibration = r["calibration"]
        rows.append(
            {
                "pipeline": name,
                "train s": f"{r['train_s']:.1f}",
                "load s (graph/agent)": f"{r['load_s']:.2f} / {r['agent_load_s']:.2f}",
                "RSS MB": f"{r['rss_mb_after_load']:.0f}",
                "intent acc": f"{r['intent_accuracy']:.3f}",
                "macro F1": f"{r['macro_f1']:.3f}",
                "OOS recall": f"{r['oos_recall']:.3f}",
                "fallback (in scope)": f"{r['in_scope_fallback_rate']:.3f}",
                "F1 amount/account": f"{r['entity_f1']['amount']:.2f} / {r['entity_f1']['account_type']:.2f}",
                "F1 card/branch": f"{r['entity_f1']['card_type']:.2f} / {r['entity_f1']['branch']:.2f}",
                "p50/p95 ms": f"{r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f}",
                "acc>=0.7 (share)": f"{calibration['accuracy_above_0.7'] or 0:.3f} "
                f"({calibration['share_above_0.7']:.2f})",
                "ok in 0.4-0.7 (share)": f"{calibration['correct_in_0.4_0.7'] or 0:.3f} "
                f"({calibration['share_in_0.4_0.7']:.2f})",
            }
        )
    return tabulate(rows, headers="keys", tablefmt="github")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--language", default="en")
    parser.add_argument("--only", help="comma-separated candidates (default: all)")
    parser.add_argument("--step", choices=("train", "evaluate", "agent-load"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = load_config()
    data_dir = config.path(config.nlu.data_dir)
    test_dir = data_dir / "test" / args.language

    if args.step == "train":
        trained = train(args.language, args.path, args.path / "models", force=True)
        print(json.dumps({"train_s": trained.seconds, "model": str(trained.model_path)}))
        return
    if args.step == "evaluate":
        print(json.dumps(asyncio.run(_evaluate(args.path, test_dir))))
        return
    if args.step == "agent-load":
        print(json.dumps(_agent_load(args.path)))
        return

    names = args.only.split(",") if args.only else list(CANDIDATES)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-nlu-") as work:
        for name in names:
            candidate_dir = _write_candidate(name, args.language, data_dir, Path(work))
            print(f"[bench] {name}: training and evaluating", file=sys.stderr)
            try:
                trained = _in_fresh_process(
                    "--step", "train", "--language", args.language, "--path", str(candidate_dir)
                )
                model = trained["model"]
                evaluated = _in_fresh_process(
                    "--step", "evaluate", "--language", args.language, "--path", model
                )
                agent = _in_fresh_process("--step", "agent-load", "--path", model)
            except RuntimeError as exc:  # one broken candidate should not cost the others' results
                print(f"[bench] {name}: {exc}", file=sys.stderr)
                continue
            results[name] = {"pipeline": CANDIDATES[name], **trained, **evaluated, **agent}
    print(json.dumps(results, indent=2))
    print(_table(results))


if __name__ == "__main__":
    main()
