"""torchrun with 2 gloo processes trains exactly like 1 process with the same global batch.

Both Muon flavours are checked against the same single-process run of the baseline's Muon: the
round-robin one behind DDP, and Parallel Muon (banks, reduce-scatter / all-gather, no DDP).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pgolf.packing import load_packed_state
from pgolf.rundir import WEIGHTS_NAME
from testkit import read_metrics, tiny_overrides

STEPS = 5


def _run(nproc: int, sets: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    args = [*launcher, "-m", "pgolf", "train", *[a for s in sets for a in ("--set", s)]]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)


def _base(tmp: Path) -> dict[str, object]:
    # weight decay and MuonEq-R on, so the test also covers them on the sharded path
    return {"train.iterations": STEPS, "run.out_dir": str(tmp), "train.train_batch_tokens": 1024, "train.threads": 1,
            "optim.muon_weight_decay": 0.5, "optim.muon_row_normalize": True}


@pytest.fixture(scope="module")
def single_process_run(small_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("single")
    one = _run(1, tiny_overrides(small_dataset, **_base(tmp), **{"run.run_id": "one", "train.grad_accum_steps": 2}))
    assert one.returncode == 0, one.stderr[-2000:]
    return tmp / "one"


@pytest.mark.parametrize("muon_impl", ["round_robin", "parallel"])
def test_two_gloo_ranks_match_one_process(small_dataset, single_process_run: Path, tmp_path: Path,
                                          muon_impl: str) -> None:
    sets = tiny_overrides(small_dataset, **_base(tmp_path),
                          **{"run.run_id": "two", "train.grad_accum_steps": 1, "optim.muon_impl": muon_impl})
    two = _run(2, sets)
    assert two.returncode == 0, two.stderr[-2000:]
    single = [m["train_loss"] for m in read_metrics(single_process_run) if "train_loss" in m]
    double = [m["train_loss"] for m in read_metrics(tmp_path / "two") if "train_loss" in m]
    assert len(single) == len(double) == STEPS
    assert max(abs(a - b) for a, b in zip(single, double, strict=True)) < 1e-5
    assert len({round(x, 5) for x in single}) == STEPS  # the weights really changed every step
    reference, _ = load_packed_state(single_process_run / WEIGHTS_NAME)
    weights, _ = load_packed_state(tmp_path / "two" / WEIGHTS_NAME)
    assert reference.keys() == weights.keys()
    for name in reference:
        torch.testing.assert_close(weights[name], reference[name], rtol=1e-4, atol=1e-5, msg=name)
