"""A real ablation on the small dataset (2 configurations × 2 seeds, subprocess runs), shared by the
experiments tests: its run directories feed the stats, report, export, submit and reproduce tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from pgolf.experiments.ablate import AblationOutcome, run_ablation
from testkit import tiny_overrides


def ablation_toml(small_dataset, **extra: object) -> str:
    """An ablation file over the tiny test model: one feature (a third layer), checkpoints every 2 steps."""
    common = dict(item.split("=", 1) for item in tiny_overrides(small_dataset, **{"train.checkpoint_every": 2,
                                                                                   "train.threads": 1}))
    table = {"ablation": {"seeds": [1, 2], "design": "one_factor", **extra},
             "common": common,
             "features": {"deeper": {"description": "3 layers", "set": {"model.num_layers": 3}}}}
    return tomli_w.dumps(table)


@dataclass(frozen=True)
class FinishedAblation:
    folder: Path
    file: Path
    outcome: AblationOutcome
    log: list[str]

    def run_dir(self, run_id: str) -> Path:
        return self.folder / "runs" / run_id


@pytest.fixture(scope="session")
def finished_ablation(small_dataset, tmp_path_factory) -> FinishedAblation:
    root = tmp_path_factory.mktemp("ablation")
    file = root / "deeper.toml"
    file.write_text(ablation_toml(small_dataset), encoding="utf-8")
    log: list[str] = []
    patch = pytest.MonkeyPatch()
    patch.setenv("SEED", "999")  # official variables in the shell must not reach the runs
    patch.setenv("NUM_LAYERS", "1")
    try:
        outcome = run_ablation(file, out=root / "out", jobs=2, echo=log.append)
    finally:
        patch.undo()
    assert outcome is not None
    return FinishedAblation(root / "out", file, outcome, log)
