"""A compiled run with EMA, SWA and late QAT: the switch flips inside the compiled graph without recompiling,
every average is scored, the applied one packed."""

from __future__ import annotations

import json
from pathlib import Path

from pgolf.config import load_config
from pgolf.pipeline import run_train
from testkit import read_metrics, tiny_overrides


def test_averaged_weights_are_scored_and_packed(small_dataset, tmp_path: Path) -> None:
    cfg = load_config(env={}, overrides=tiny_overrides(small_dataset, **{
        "run.out_dir": str(tmp_path), "run.run_id": "avg", "train.iterations": 8, "train.warmdown_iters": 4,
        "train.ema_decay": 0.5, "train.swa_every": 1, "train.swa_max_lr_scale": 0.8,
        "train.late_qat_threshold": 0.6, "train.qat_bits": 4, "optim.muon_impl": "parallel",
        # compiled (aot_eager: the graph capture without a C++ toolchain), primed with both QAT variants
        "train.compile": "on", "train.compile_backend": "aot_eager", "train.warmup_steps": 2}))
    summary = run_train(cfg)
    run = tmp_path / "avg"
    metrics = [m for m in read_metrics(run) if "train_loss" in m]
    # warmdown over steps 5-8: lr 1, .75, .5, .25 → QAT from the 7th step on
    assert [m["qat"] for m in metrics] == [False] * 6 + [True] * 2
    log = (run / "train.log").read_text().split("=" * 100)[-1]  # the run's lines, after the embedded source
    assert "switch:qat_active=True step:6" in log and "torch_compile:True (compiled)" in log
    assert "torch_compile:compile failed" not in log and "newton_schulz_compile:" not in log
    assert summary["averaged_weights"] == "ema"
    assert summary["pre_quant_val_bpb"] == summary["ema_val_bpb"] != summary["live_val_bpb"]
    assert summary["swa_val_bpb"] not in (summary["ema_val_bpb"], summary["live_val_bpb"])
    saved = json.loads((run / "summary.json").read_text())
    assert saved["ema_val_bpb"] == summary["ema_val_bpb"] and saved["recompiles_after_warmup"] == 0
