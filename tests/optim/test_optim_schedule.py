"""Every schedule value as a function of (step, elapsed time)."""

from __future__ import annotations

import pytest
import torch

from pgolf.config import load_config
from pgolf.optim.schedule import Schedule, SwitchTensors


def _schedule(**kw: object) -> Schedule:
    base = dict(iterations=100, warmdown_iters=20, max_wallclock_ms=None, momentum_start=0.85, momentum_end=0.95,
                momentum_warmup_steps=10)
    return Schedule(**(base | kw))  # type: ignore[arg-type]


def test_baseline_warmdown_and_momentum() -> None:
    s = _schedule()
    assert s.lr_multiplier(50, 0) == 1.0 and s.lr_multiplier(79, 0) == 1.0 and s.lr_multiplier(90, 0) == 0.5
    assert s.muon_momentum(0) == 0.85 and abs(s.muon_momentum(5) - 0.90) < 1e-12 and s.muon_momentum(50) == 0.95
    timed = _schedule(max_wallclock_ms=1000.0, momentum_warmup_steps=0)
    # 10 ms/step → warmdown spans 200 ms: full LR until 800 ms, then linear to 0 at the cap
    assert timed.lr_multiplier(50, 500.0) == 1.0
    assert abs(timed.lr_multiplier(90, 900.0) - 0.5) < 1e-12
    assert timed.lr_multiplier(100, 1000.0) == 0.0


def test_fractional_warmdown_with_floor_follows_progress() -> None:
    # the SOTA's rule: 1 until progress 0.15, then max((1 - p) / 0.85, 0.1)
    timed = _schedule(max_wallclock_ms=1000.0, warmdown_frac=0.85, min_lr_scale=0.1)
    assert timed.lr_multiplier(3, 100.0) == 1.0
    assert timed.lr_multiplier(3, 575.0) == pytest.approx(0.5)  # step count is irrelevant with a cap
    assert timed.lr_multiplier(9, 950.0) == pytest.approx(0.1)  # floor reached at progress 0.915
    stepped = _schedule(warmdown_frac=0.5)
    assert stepped.lr_multiplier(50, 1e9) == 1.0 and stepped.lr_multiplier(75, 0) == pytest.approx(0.5)
    assert stepped.lr_multiplier(100, 0) == 0.0


def test_weight_decay_taper() -> None:
    s = _schedule(wd_taper_start_frac=0.7, wd_taper_final_mult=0.5)
    assert s.at(50, 0).muon_wd_scale == 1.0 and s.at(70, 0).muon_wd_scale == 1.0
    assert s.at(85, 0).muon_wd_scale == pytest.approx(0.75) and s.at(100, 0).muon_wd_scale == pytest.approx(0.5)


def test_switches_late_qat_and_recurrence() -> None:
    s = _schedule(late_qat_threshold=0.15, recurrence_start_step=30)
    # lr 0.85, 0.15 (not below the threshold), 0.1
    assert [s.at(step, 0).qat_active for step in (83, 97, 98)] == [False, False, True]
    assert [s.at(step, 0).recurrence_active for step in (0, 29, 30, 99)] == [False, False, True, True]
    by_progress = _schedule(max_wallclock_ms=1000.0, recurrence_start_frac=0.35)
    assert not by_progress.at(500, 349.0).recurrence_active and by_progress.at(1, 350.0).recurrence_active
    off = _schedule()
    assert not any(off.at(step, 0).qat_active for step in range(101))
    # no start step or fraction: recurrence (if the model has any) runs from the first step
    assert all(off.at(step, 0).recurrence_active for step in range(101))


def test_late_qat_by_progress_is_the_last_fraction_of_the_wallclock() -> None:
    """PR #635's QAT_TIME_FRAC: on from 85 % of the cap whatever the LR multiplier (which is still 1 there)."""
    s = _schedule(max_wallclock_ms=1000.0, warmdown_iters=5, late_qat_threshold=0.15, late_qat_trigger="progress")
    assert [s.at(100, ms).qat_active for ms in (849.0, 850.0, 990.0)] == [False, True, True]
    assert s.at(100, 850.0).lr_scale == 1.0  # 8.5 ms a step: the 5-step warmdown is the last 42.5 ms
    stepped = _schedule(late_qat_threshold=0.15, late_qat_trigger="progress")  # no cap: by steps
    assert [stepped.at(step, 0).qat_active for step in (84, 85)] == [False, True]


def test_switch_tensors_are_written_in_place() -> None:
    switches = SwitchTensors(torch.device("cpu"))
    qat = switches.qat
    switches.write(_schedule(late_qat_threshold=0.5).at(95, 0))
    assert switches.qat is qat and float(qat) == 1.0 and float(switches.lr_scale) == pytest.approx(0.25)


def test_schedule_from_config() -> None:
    cfg = load_config("tiny", env={}, overrides=["train.warmdown_frac=0.85", "train.min_lr_scale=0.1",
                                                 "train.late_qat_threshold=0.15"])
    s = Schedule.from_config(cfg)
    assert (s.warmdown_frac, s.min_lr_scale, s.late_qat_threshold) == (0.85, 0.1, 0.15)
    assert s.max_wallclock_ms == 1000.0 * cfg.train.max_wallclock_seconds
