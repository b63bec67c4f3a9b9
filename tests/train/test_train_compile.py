"""torch.compile(fullgraph=True) traces the model on CPU and trains exactly like eager."""

from __future__ import annotations

import pytest
import torch

from pgolf.config import load_config
from pgolf.pipeline import prepare_training
from pgolf.train.distributed import DistContext
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.runtime import compile_enabled
from testkit import tiny_overrides


def _losses(small_dataset, compile_mode: str) -> list[float]:
    cfg = load_config(overrides=tiny_overrides(small_dataset, **{"train.compile": compile_mode, "train.iterations": 3}),
                      env={})
    ctx = DistContext(0, 1, 0, torch.device("cpu"), None)
    setup = prepare_training(cfg, ctx, None, RunLogger(None, enabled=False), PhaseClock())
    losses = []
    for step in range(1, 4):
        cfg.train.iterations = step
        losses.append(setup.trainer.fit().last_train_loss)
    return losses


def test_compiled_training_matches_eager(small_dataset) -> None:
    eager = _losses(small_dataset, "off")
    compiled = _losses(small_dataset, "on")
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-4)


def test_compile_switches(monkeypatch) -> None:
    cfg = load_config(env={}, overrides=["train.compile=on"])
    assert compile_enabled(cfg, torch.device("cpu"))
    monkeypatch.setenv("TORCH_COMPILE_DISABLE", "1")
    assert not compile_enabled(cfg, torch.device("cpu"))
    monkeypatch.delenv("TORCH_COMPILE_DISABLE")
    auto = load_config(env={})
    assert not compile_enabled(auto, torch.device("cpu")) and compile_enabled(auto, torch.device("cuda"))
