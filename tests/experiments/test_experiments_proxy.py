"""Proxy mode: the global batch kept through accumulation, the wallclock scaled by the GPU ratio, and
the whole thing recorded in the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgolf.config import load_config, read_toml_file
from pgolf.errors import ConfigError
from pgolf.pipeline import run_train
from pgolf.train.setup import apply_proxy
from testkit import present, tiny_overrides


def test_one_gpu_emulating_eight_keeps_the_batch_and_scales_the_clock() -> None:
    cfg = load_config("baseline", overrides=["train.proxy_world_size=8"], env={})
    proxied, info = apply_proxy(cfg, world_size=1)
    assert proxied.train.grad_accum_steps == 8  # 8 GPUs × 1 micro-batch each → 1 GPU × 8
    assert proxied.train.max_wallclock_seconds == 4800.0
    assert proxied.train.proxy_world_size == 0  # resolved: re-applying changes nothing
    assert apply_proxy(proxied, 1)[1] is None
    assert (present(info).time_scale, present(info).target_grad_accum_steps) == (8.0, 1)
    two, _ = apply_proxy(cfg, world_size=2)
    assert (two.train.grad_accum_steps, two.train.max_wallclock_seconds) == (4, 2400.0)


def test_a_gpu_count_the_world_does_not_divide_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"train\.proxy_world_size: 6 is not a multiple of the world size 4"):
        load_config("baseline", overrides=["train.proxy_world_size=6"], env={}, world_size=4)


def test_the_run_records_the_proxy_and_keeps_the_request(small_dataset, tmp_path: Path) -> None:
    overrides = tiny_overrides(small_dataset, **{"run.out_dir": str(tmp_path), "run.run_id": "proxy",
                                                 "train.proxy_world_size": 2, "train.iterations": 2,
                                                 "train.max_wallclock_seconds": 30, "train.threads": 1})
    summary = run_train(load_config(overrides=overrides, env={}))
    assert summary["proxy"] == {"target_world_size": 2, "world_size": 1, "time_scale": 2.0, "grad_accum_steps": 2,
                                "target_grad_accum_steps": 1, "max_wallclock_seconds": 60.0,
                                "target_max_wallclock_seconds": 30.0}
    trained = summary["manifest"]["config"]["train"]
    assert (trained["grad_accum_steps"], trained["max_wallclock_seconds"], trained["proxy_world_size"]) == (2, 60.0, 0)
    requested = read_toml_file(tmp_path / "proxy" / "config.toml")["train"]
    assert (requested["proxy_world_size"], requested["max_wallclock_seconds"]) == (2, 30.0)
    assert "proxy: emulating 2 GPUs on 1" in (tmp_path / "proxy" / "train.log").read_text()
    assert json.loads((tmp_path / "proxy" / "summary.json").read_text())["proxy"]["time_scale"] == 2.0
