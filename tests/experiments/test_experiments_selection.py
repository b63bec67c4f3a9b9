"""Greedy forward selection: the path it takes and where it stops, on an objective with a known answer."""

from __future__ import annotations

import pytest

from pgolf.experiments.selection import FeatureSet, forward_selection

# Additive gains with one interaction: c is worth 0.5 alone but nothing once a is chosen.
GAINS = {"a": 1.0, "b": 0.3, "c": 0.5, "d": -0.2}


def _objective(calls: list[list[FeatureSet]]):
    def evaluate(sets: list[FeatureSet]) -> dict[FeatureSet, float]:
        calls.append(sets)
        return {s: 10.0 - sum(GAINS[f] for f in s if not (f == "c" and "a" in s)) for s in sets}
    return evaluate


def test_picks_the_best_feature_each_round_and_stops_when_nothing_helps() -> None:
    calls: list[list[FeatureSet]] = []
    rounds = forward_selection(["a", "b", "c", "d"], _objective(calls))
    assert [r.added for r in rounds] == [None, "a", "b", None]
    assert rounds[-1].chosen == ("a", "b") and rounds[-1].score == pytest.approx(8.7)
    assert rounds[-1].candidates == pytest.approx({"c": 8.7, "d": 8.9})  # c no longer helps after a; d hurts
    assert [len(batch) for batch in calls] == [1, 4, 3, 2]  # one batch per round: runs can go N at a time


def test_min_gain_stops_earlier() -> None:
    rounds = forward_selection(["a", "b", "c", "d"], _objective([]), min_gain=0.4)
    assert [r.added for r in rounds] == [None, "a", None]
