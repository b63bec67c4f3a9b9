"""Greedy forward selection over feature toggles (how the 1.0611 record chose its 9 hyperparameters).

Start from no features; each round tries adding every remaining feature to the chosen set, keeps the
one that lowers the metric most, and stops when no candidate improves it by more than `min_gain`.
Worst case `n (n + 1) / 2` configurations after the baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

FeatureSet = tuple[str, ...]


@dataclass(frozen=True)
class SelectionRound:
    chosen: FeatureSet  # features switched on after this round
    added: str | None  # None: the starting point, or the round that found no improvement
    score: float  # metric of `chosen`
    candidates: dict[str, float] = field(default_factory=dict)  # feature tried → metric with it added


def forward_selection(features: Sequence[str], evaluate: Callable[[list[FeatureSet]], dict[FeatureSet, float]],
                      min_gain: float = 0.0) -> list[SelectionRound]:
    """Run the selection; `evaluate` scores a batch of feature sets (lower is better)."""
    chosen: FeatureSet = ()
    score = evaluate([chosen])[chosen]
    rounds = [SelectionRound(chosen, None, score)]
    remaining = list(features)
    while remaining:
        trials = {f: chosen + (f,) for f in remaining}
        scores = evaluate(list(trials.values()))
        candidates = {f: scores[trials[f]] for f in remaining}
        best = min(remaining, key=lambda f: candidates[f])
        if score - candidates[best] <= min_gain:
            rounds.append(SelectionRound(chosen, None, score, candidates))
            break
        chosen, score = trials[best], candidates[best]
        remaining.remove(best)
        rounds.append(SelectionRound(chosen, best, score, candidates))
    return rounds
