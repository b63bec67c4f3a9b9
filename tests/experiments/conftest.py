"""A real ablation on the small dataset (2 configurations × 2 seeds, subprocess runs), shared by the
experiments tests: its run directories feed the stats, report, export, submit and reproduce tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from experiments_kit import ablation_toml

from pgolf.experiments.ablate import AblationOutcome, run_ablation


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
