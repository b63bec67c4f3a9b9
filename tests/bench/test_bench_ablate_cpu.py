"""The ablation matrix: baseline, each catalog technique alone, all together; names checked."""

from __future__ import annotations

import pytest

from pgolf.bench.ablate_cpu import ablation_matrix, budget_overrides, markdown_table
from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.model.techniques import TECHNIQUES


def test_matrix_is_baseline_each_technique_then_all() -> None:
    matrix = ablation_matrix("tiny")
    names = [name for name, _, _ in matrix]
    assert names == ["baseline", *(t.name for t in TECHNIQUES), "all"]
    assert matrix[0][2] == {}
    for name, _, overrides in matrix[1:]:  # every configuration is valid on the base preset
        load_config("tiny", env={}, overrides=[f"{k}={v}" for k, v in overrides.items()])
        assert overrides, name


def test_only_selects_and_unknown_names_fail() -> None:
    assert [n for n, _, _ in ablation_matrix("tiny", ["xsa_all"])] == ["baseline", "xsa_all", "all"]
    with pytest.raises(UserError, match="xsa_everywhere"):
        ablation_matrix("tiny", ["xsa_everywhere"])


def test_markdown_table_lists_every_row() -> None:
    row = {"technique": "baseline", "val_bpb_mean": 2.5, "val_bpb_std": 0.01, "delta_bpb_vs_baseline": 0.0,
           "tokens_per_s_mean": 1000.0, "tokens_per_s_vs_baseline": 1.0, "steps_mean": 10, "params": 5,
           "artifact_bytes_mean": 100.0}
    result = {"preset": "tiny", "machine": "cpu-2core", "threads": 1, "jobs": 2, "torch": "x", "seconds": 45,
              "seeds": [1, 2], "val_tokens": 8192, "rows": [row, {**row, "technique": "xsa_all"}]}
    table = markdown_table(result)
    assert "| baseline | 2.5000 ± 0.0100 |" in table and "| xsa_all |" in table


def test_equal_steps_budget_removes_the_wallclock_cap() -> None:
    assert budget_overrides(45.0, 0) == {"train.max_wallclock_seconds": 45.0}
    steps = budget_overrides(45.0, 30)
    assert steps == {"train.max_wallclock_seconds": 0, "train.iterations": 30, "train.warmdown_iters": 10}
    cfg = load_config("tiny", env={}, overrides=[f"{k}={v}" for k, v in steps.items()])
    assert (cfg.train.iterations, cfg.train.max_wallclock_seconds) == (30, 0)
