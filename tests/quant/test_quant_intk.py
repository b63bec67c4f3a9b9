"""Per-row int-k: grid, clip rules, pruning (TECHNIQUES §4.3.3, §4.4, §4.5.4, §4.8)."""

from __future__ import annotations

import pytest
import torch

from pgolf.quant.intk import (
    SEARCH_PERCENTILES,
    ClipRule,
    magnitude_prune,
    matrix_candidates,
    qmax,
    quantize_rows,
    reconstruction_mse,
    round_to_grid,
    row_scales,
)


def gaussian(rows: int = 48, cols: int = 96, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.logspace(-3, 0, rows)[:, None]
    w[::5, 7] *= 25.0  # outliers: the case clip search exists for
    return w


@pytest.mark.parametrize("bits", range(4, 9))
def test_max_clip_codes_stay_on_the_symmetric_grid_and_round_to_nearest(bits: int) -> None:
    w = gaussian()
    codes, scale = quantize_rows(w, bits, ClipRule("max"))
    r = qmax(bits)
    assert r == 2 ** (bits - 1) - 1 and codes.dtype == torch.int8 and scale.dtype == torch.float16
    assert int(codes.abs().max()) <= r and int(codes.abs().max()) >= r - 1  # the row max reaches the edge
    restored = codes.float() * scale.float()[:, None]
    # fp16 rounding of the scale may push the row max a hair past R·s; everything else is within half a step
    assert torch.all((w - restored).abs() <= scale.float()[:, None] * 0.5 + 1e-3 * w.abs())


def test_search_picks_for_each_row_the_best_percentile() -> None:
    w = gaussian()
    bits = 5
    chosen = row_scales(w, bits, ClipRule("search"))
    err = lambda s: (w - round_to_grid(w, s, bits).float() * s.float()[:, None]).square().sum(1)  # noqa: E731
    best = err(chosen)
    for p in SEARCH_PERCENTILES:
        candidate = (torch.quantile(w.abs(), p, dim=1) / qmax(bits)).to(torch.float16)
        assert torch.all(best <= err(candidate) + 1e-9)
    assert torch.any(best < err(row_scales(w, bits, ClipRule("max"))))  # outliers make clipping pay


def test_sd_clip_scale_is_k_standard_deviations() -> None:
    w = gaussian()
    scale = row_scales(w, 6, ClipRule.parse("sd:12.85"))
    assert torch.allclose(scale.float(), (12.85 * w.std(dim=1) / 31).half().float())


def test_clip_rule_parsing() -> None:
    assert str(ClipRule.parse("sd:14")) == "sd:14" and ClipRule.parse("search").kind == "search"
    for bad in ("sd:", "sd:-1", "median", "sd:x"):
        with pytest.raises(ValueError, match="max', 'search' or 'sd:K"):
            ClipRule.parse(bad)
    with pytest.raises(ValueError, match="4 ≤ bits ≤ 8"):
        qmax(3)
    with pytest.raises(ValueError, match="matrices"):
        quantize_rows(torch.ones(5), 6, ClipRule("max"))


def test_magnitude_prune_zeroes_exactly_the_smallest_fraction() -> None:
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(3))
    pruned = magnitude_prune(w, 0.25)
    zeroed = pruned == 0
    assert int(zeroed.sum()) == 1024
    assert w.abs()[zeroed].max() < w.abs()[~zeroed].min()
    assert torch.equal(pruned[~zeroed], w[~zeroed])
    assert magnitude_prune(w, 0.0) is w


def test_matrix_search_keeps_one_percentile_for_the_whole_matrix() -> None:
    """PR #1291's search: every candidate clips all rows at one percentile (scales floored at 1/R); the candidate
    with the smallest whole-matrix error wins."""
    w = gaussian()
    codes, scale = quantize_rows(w, 6, ClipRule.parse("matrix"))
    candidates = matrix_candidates(w, 6)
    errors = [reconstruction_mse(w, round_to_grid(w, s, 6), s) for s in candidates]
    assert torch.equal(scale, candidates[errors.index(min(errors))])
    assert torch.equal(codes, round_to_grid(w, scale, 6))
    assert float(scale.float().min()) >= 1 / 31 - 1e-6  # the floor: rows of small weights share the grid 1/31


def test_quantile_clip_at_the_baseline_level_is_the_int8_exports_per_row_rule() -> None:
    from pgolf.quant.int8 import quantize_per_row_int8

    w = gaussian() * 40.0  # rows above and below the scale floor 1/127
    codes, scale = quantize_rows(w, 8, ClipRule.parse("q:99.99984"))
    assert str(ClipRule.parse("q:99.99984")) == "q:99.99984"
    expected = quantize_per_row_int8(w)
    assert torch.equal(codes, expected[0]) and torch.equal(scale, expected[1])
