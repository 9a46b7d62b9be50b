"""The confidence ladder: accept, confirm or reject what the NLU understood."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from voicebot.config import PolicyConfig
from voicebot.nlu.base import NluResult

OUT_OF_SCOPE = "out_of_scope"
FALLBACK = "nlu_fallback"


class Decision(str, Enum):
    ACCEPT = "accept"
    CONFIRM = "confirm"
    REJECT = "reject"
    OUT_OF_SCOPE = "out_of_scope"


def decide(result: NluResult, policy: PolicyConfig) -> Decision:
    """Accept above the accept threshold unless the runner-up is too close; reject below the reject
    threshold (or Rasa's fallback); confirm in between. Out-of-scope is its own outcome because it
    escalates on a different count than plain no-matches."""
    top = result.intent
    if top.name == FALLBACK or not result.text.strip() or top.confidence < policy.reject_threshold:
        return Decision.REJECT
    if top.name == OUT_OF_SCOPE:
        return Decision.OUT_OF_SCOPE
    runner_up = next((r.confidence for r in result.ranking if r.name != top.name), 0.0)
    if top.confidence >= policy.accept_threshold and top.confidence - runner_up >= policy.ambiguity_gap:
        return Decision.ACCEPT
    return Decision.CONFIRM


def yes_or_no(result: NluResult, policy: PolicyConfig) -> bool | None:
    """Reads a yes/no answer; short answers are easy to confirm so the reject threshold suffices."""
    if result.intent.name in ("affirm", "deny") and result.intent.confidence >= policy.reject_threshold:
        return result.intent.name == "affirm"
    return None


def best_understood(hypotheses: Sequence[NluResult], policy: PolicyConfig) -> int:
    """Which of the recogniser's hypotheses (best first, each parsed) to act on: the best, unless it
    is not understood well enough to accept and a later one is, with at least
    ``n_best_accept_threshold``. On the phone the recogniser's best is often one wrong word away
    ("personal own") from a request its n-best list holds; measured with scripts/bench_asr.py
    (README): at 0.9 this adds right answers and no confidently wrong ones, at 0.7 it adds both."""
    if not hypotheses or decide(hypotheses[0], policy) is Decision.ACCEPT:
        return 0
    return next(
        (
            i
            for i, h in enumerate(hypotheses)
            if decide(h, policy) is Decision.ACCEPT and h.intent.confidence >= policy.n_best_accept_threshold
        ),
        0,
    )
