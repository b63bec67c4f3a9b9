"""torchrun with 2 gloo processes trains exactly like 1 process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testkit import read_metrics, tiny_overrides


def _run(nproc: int, sets: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    args = [*launcher, "-m", "pgolf", "train", *[a for s in sets for a in ("--set", s)]]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def test_two_gloo_ranks_match_one_process(small_dataset, tmp_path: Path) -> None:
    base = {"train.iterations": 5, "run.out_dir": str(tmp_path), "train.train_batch_tokens": 1024, "train.threads": 1}
    one = _run(1, tiny_overrides(small_dataset, **base, **{"run.run_id": "one", "train.grad_accum_steps": 2}))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run(2, tiny_overrides(small_dataset, **base, **{"run.run_id": "two", "train.grad_accum_steps": 1}))
    assert two.returncode == 0, two.stderr[-2000:]
    single = [m["train_loss"] for m in read_metrics(tmp_path / "one") if "train_loss" in m]
    double = [m["train_loss"] for m in read_metrics(tmp_path / "two") if "train_loss" in m]
    assert len(single) == len(double) == 5
    assert max(abs(a - b) for a, b in zip(single, double)) < 1e-5
    assert len({round(x, 5) for x in single}) == 5  # the weights really changed every step
