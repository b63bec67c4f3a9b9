"""Training loop: exact resume after kill -9, non-finite loss detection, periodic outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from pgolf.config import load_config
from pgolf.errors import NonFiniteLossError
from pgolf.train.distributed import DistContext
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.setup import prepare_training
from testkit import read_metrics, tiny_overrides

PGOLF = [sys.executable, "-m", "pgolf"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _train(sets: list[str], extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    args = [*PGOLF, "train", "--json", *[a for s in sets for a in ("--set", s)], *extra]
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300, check=False)


def test_resume_after_kill_is_bit_identical(small_dataset, tmp_path: Path) -> None:
    # averaging, late QAT and weight decay on, so their state and switches are part of what must resume exactly
    common = dict(**{"train.iterations": 40, "train.checkpoint_every": 4, "run.out_dir": str(tmp_path),
                     "train.ema_decay": 0.9, "train.swa_every": 2, "train.swa_max_lr_scale": 0.9,
                     "train.late_qat_threshold": 0.5, "optim.muon_weight_decay": 0.1})
    full = _train(tiny_overrides(small_dataset, **common, **{"run.run_id": "full"}))
    assert full.returncode == 0, full.stderr
    reference = json.loads(full.stdout.strip().splitlines()[-1])

    sets = tiny_overrides(small_dataset, **common, **{"run.run_id": "killed"})
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([*PGOLF, "train", *[a for s in sets for a in ("--set", s)]], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "summary.json").exists()
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 40

    resumed = subprocess.run([*PGOLF, "train", "--json", "--resume", str(run_dir)], capture_output=True, text=True,
                             env=_env(), timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["steps"] == reference["steps"] == 40
    assert result["weights_sha256"] == reference["weights_sha256"]
    assert result["val_bpb"] == reference["val_bpb"]


def test_non_finite_loss_names_step_and_tensor(small_dataset, tmp_path: Path) -> None:
    cfg = load_config(overrides=tiny_overrides(small_dataset), env={})
    ctx = DistContext(0, 1, 0, torch.device("cpu"), None)
    setup = prepare_training(cfg, ctx, None, RunLogger(None, enabled=False), PhaseClock())
    with torch.no_grad():
        setup.model.get_parameter("blocks.1.mlp.fc.weight")[0, 0] = float("nan")
    message = r"step 1; first non-finite tensor: parameter blocks\.1\.mlp\.fc\.weight"
    with pytest.raises(NonFiniteLossError, match=message):
        setup.trainer.fit()


def test_cli_reports_non_finite_loss_as_user_error(small_dataset, tmp_path: Path) -> None:
    # an absurd learning rate on the control tensors overflows the residual stream within two steps
    sets = tiny_overrides(small_dataset, **{"optim.scalar_lr": 1e36,
                                            "run.out_dir": str(tmp_path), "run.run_id": "nan"})
    proc = _train(sets)
    assert proc.returncode == 2, proc.stderr
    assert "pgolf: error: training loss became" in proc.stderr and "first non-finite tensor" in proc.stderr
    assert not (tmp_path / "nan" / "summary.json").exists()


def test_run_outputs(small_dataset, tmp_path: Path) -> None:
    proc = _train(tiny_overrides(small_dataset, **{"run.out_dir": str(tmp_path), "run.run_id": "r",
                                                   "train.val_loss_every": 3}))
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "r"
    for name in ("config.toml", "train.log", "metrics.jsonl", "summary.json", "artifact.pgolf", "weights.pgolf"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    required = ("val_loss", "val_bpb", "pre_quant_val_bpb", "post_quant_val_bpb", "artifact_bytes", "code_bytes",
                "model_bytes", "params", "steps", "train_tokens", "train_tokens_per_s", "wallclock_s", "seed",
                "preset", "git_commit", "weights_sha256", "val_tokens", "val_bytes")
    assert not [k for k in required if k not in summary]
    assert summary["artifact_bytes"] == summary["code_bytes"] + summary["model_bytes"]
    assert summary["model_bytes"] == (run / "artifact.pgolf").stat().st_size
    assert summary["steps"] == 6 and summary["train_tokens"] == 6 * 512
    manifest = summary["manifest"]
    assert manifest["data"]["train_shards"] and len(manifest["data"]["tokenizer"]["sha256"]) == 64
    assert manifest["environment"]["attention_backend"] == "sdpa"
    assert {"train", "pack", "eval_artifact"} <= set(summary["phases"])
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics if "train_loss" in m] == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in metrics if "val_bpb" in m] == [3]
    log = (run / "train.log").read_text()
    assert "# ==== pgolf/train/trainer.py ====" in log and "final_int8_zlib_roundtrip_exact" in log
