"""Bit allocation under a byte budget (the knapsack of `quant.fit`)."""

from __future__ import annotations

import itertools

import pytest

from pgolf.errors import ArtifactError
from pgolf.quant.fit import Sensitivity, allocate_bits

SIZES = {"a": {8: 1000.0, 6: 700.0, 5: 550.0}, "b": {8: 800.0, 6: 600.0, 5: 500.0}, "c": {8: 400.0, 6: 300.0, 5: 250.0}}
LOSS = {"a": {8: 0.0, 6: 0.001, 5: 0.010}, "b": {8: 0.0, 6: 0.020, 5: 0.050}, "c": {8: 0.0, 6: 0.0005, 5: 0.0008}}


def sensitivity() -> Sensitivity:
    return Sensitivity(3.0, LOSS, SIZES, {}, {})


def brute_force(target: float) -> float:
    best = float("inf")
    for combo in itertools.product(*(SIZES[n] for n in SIZES)):
        choice = dict(zip(SIZES, combo, strict=True))
        if sum(SIZES[n][b] for n, b in choice.items()) <= target:
            best = min(best, sum(LOSS[n][b] for n, b in choice.items()))
    return best


@pytest.mark.parametrize("target", [2200, 2000, 1800, 1700, 1500, 1400, 1310])
def test_allocation_fits_the_target_and_is_optimal_up_to_bucket_rounding(target: float) -> None:
    choice = allocate_bits(sensitivity(), target, resolution=4096)
    assert sum(SIZES[n][b] for n, b in choice.items()) <= target
    rounding = len(SIZES) * target / 4096  # each size is rounded up to a whole bucket
    loss = sum(LOSS[n][b] for n, b in choice.items())
    assert brute_force(target) - 1e-12 <= loss <= brute_force(target - rounding) + 1e-12


def test_generous_budget_keeps_the_widest_and_impossible_budget_is_an_error() -> None:
    assert allocate_bits(sensitivity(), 10_000) == {"a": 8, "b": 8, "c": 8}
    assert allocate_bits(sensitivity(), 2060) == {"a": 8, "b": 8, "c": 5}  # c is nearly free to shrink
    with pytest.raises(ArtifactError, match="narrowest candidate widths"):
        allocate_bits(sensitivity(), 1000)
