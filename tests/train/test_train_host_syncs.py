"""The step loop never waits for the device except at log steps: pgolf's device→host reads are counted."""

from __future__ import annotations

import math
import sys
from collections import Counter

import pytest
import torch

from pgolf.config import load_config
from pgolf.pipeline import prepare_training
from pgolf.train.distributed import DistContext
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.trainer import DeviceLossWatch
from testkit import tiny_overrides

READS = ("item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy")


def _count_pgolf_reads(monkeypatch: pytest.MonkeyPatch, counts: Counter) -> None:
    """Wrap every Tensor method that moves a value to the host; count the calls made from pgolf code
    (torch's own CPU-side bookkeeping, e.g. Adam's step counter, is not a device sync and not counted)."""
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("pgolf"):
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)


def test_only_log_steps_read_the_device(small_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(overrides=tiny_overrides(small_dataset, **{"train.iterations": 25, "train.train_log_every": 10,
                                                                 "train.ema_decay": 0.9, "optim.grad_clip_norm": 1.0}),
                      env={})
    ctx = DistContext(0, 1, 0, torch.device("cpu"), None)
    syncs = Counter()
    clock = PhaseClock(sync=lambda: syncs.update(["sync"]))
    setup = prepare_training(cfg, ctx, None, RunLogger(None, enabled=False), clock)
    reads: Counter = Counter()
    _count_pgolf_reads(monkeypatch, reads)
    state = setup.trainer.fit()
    monkeypatch.undo()
    log_steps = 10 + 2  # steps 1..10, 20 and the last (25)
    assert state.step == 25 and torch.isfinite(torch.tensor(state.last_train_loss))
    assert sum(reads.values()) == log_steps, reads  # one read per log step: DeviceLossWatch.read
    assert reads["tolist"] == log_steps
    assert syncs["sync"] == log_steps


def test_the_watch_reports_the_first_non_finite_step_after_the_fact() -> None:
    watch = DeviceLossWatch(torch.device("cpu"))
    watch.reset(4)
    for value in (1.0, float("nan"), float("inf"), 2.0):
        watch.observe(torch.tensor(value))
    last, bad_step, bad_loss = watch.read()
    assert last == 2.0 and bad_step == 6 and math.isnan(bad_loss)  # step 6 is the NaN one
    watch.reset(8)
    watch.observe(torch.tensor(3.0))
    assert watch.read()[:2] == (3.0, None)
