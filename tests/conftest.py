"""Session fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgolf.data.build import DatasetPaths
from testkit import build_small_dataset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetPaths:
    return build_small_dataset(tmp_path_factory.mktemp("small_dataset"))


@pytest.fixture(scope="session")
def tiny_run(small_dataset: DatasetPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step training run of a 2×128 model (big enough that policies quantize its matrices),
    packed by the training pipeline with the int6 policy."""
    from pgolf.cli import main
    from testkit import tiny_overrides

    out = tmp_path_factory.mktemp("quant_runs")
    sets = [arg for item in tiny_overrides(small_dataset, **{"run.out_dir": str(out), "run.run_id": "q",
                                                                   "model.model_dim": 128, "quant.scheme": "policy",
                                                                   "quant.policy": "int6"})
            for arg in ("--set", item)]
    assert main(["train", *sets]) == 0
    return out / "q"
