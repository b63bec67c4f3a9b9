"""Every step- and wallclock-driven schedule of a run, in one place.

`Schedule.at(step, elapsed_ms)` returns the values of one step: the LR multiplier (warmdown by
iterations as the baseline, or as a fraction of the run, with a floor), Muon momentum warm-up, the
Muon weight-decay taper, and the on/off switches (late QAT, depth recurrence). It is a pure function
of (step, elapsed time), so a resumed run gets the same values.

`SwitchTensors` carries the values that compiled code reads. They are 0-d tensors updated in place,
never Python constants: `torch.compile` would fold a constant into the graph and a later change
would be silently ignored (a record's late-QAT flag stayed off this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from pgolf.config import Config


@dataclass(frozen=True)
class StepValues:
    progress: float  # fraction of the run done: wallclock share when capped, else step share
    lr_scale: float
    muon_momentum: float
    muon_wd_scale: float
    qat_active: bool
    recurrence_active: bool


@dataclass(frozen=True)
class Schedule:
    iterations: int
    warmdown_iters: int
    max_wallclock_ms: float | None
    momentum_start: float
    momentum_end: float
    momentum_warmup_steps: int
    warmdown_frac: float = 0.0  # > 0: warmdown over this final fraction of the run (replaces warmdown_iters)
    min_lr_scale: float = 0.0  # floor of the LR multiplier once warmdown has started
    wd_taper_start_frac: float = 1.0
    wd_taper_final_mult: float = 1.0
    late_qat_threshold: float = 0.0  # QAT: lr_scale below it, or progress in its last fraction (0 = never)
    late_qat_trigger: Literal["lr_scale", "progress"] = "lr_scale"  # `train.late_qat_trigger`
    recurrence_start_step: int = 0  # 0 = not scheduled by step
    recurrence_start_frac: float = 0.0  # 0 = not scheduled by progress

    @classmethod
    def from_config(cls, cfg: Config) -> Schedule:
        t, o = cfg.train, cfg.optim
        cap = t.max_wallclock_seconds
        return cls(
            iterations=t.iterations,
            warmdown_iters=t.warmdown_iters,
            max_wallclock_ms=1000.0 * cap if cap > 0 else None,
            momentum_start=o.muon_momentum_warmup_start,
            momentum_end=o.muon_momentum,
            momentum_warmup_steps=o.muon_momentum_warmup_steps,
            warmdown_frac=t.warmdown_frac,
            min_lr_scale=t.min_lr_scale,
            wd_taper_start_frac=o.wd_taper_start_frac,
            wd_taper_final_mult=o.wd_taper_final_mult,
            late_qat_threshold=t.late_qat_threshold,
            late_qat_trigger=t.late_qat_trigger,
            recurrence_start_step=t.recurrence_start_step,
            recurrence_start_frac=t.recurrence_start_frac,
        )

    def at(self, step: int, elapsed_ms: float) -> StepValues:
        lr_scale = self.lr_multiplier(step, elapsed_ms)
        progress = self.progress(step, elapsed_ms)
        return StepValues(
            progress=progress,
            lr_scale=lr_scale,
            muon_momentum=self.muon_momentum(step),
            muon_wd_scale=self.wd_multiplier(progress),
            qat_active=self.qat_active(lr_scale, progress),
            recurrence_active=self.recurrence_active(step, progress),
        )

    def progress(self, step: int, elapsed_ms: float) -> float:
        if self.max_wallclock_ms is None:
            return min(step / self.iterations, 1.0)
        return min(elapsed_ms / self.max_wallclock_ms, 1.0)

    def lr_multiplier(self, step: int, elapsed_ms: float) -> float:
        """1 until the end nears, then linear to 0 (never below `min_lr_scale` once decaying)."""
        if self.warmdown_frac > 0:
            raw = self._fraction_warmdown(step, elapsed_ms)
        else:
            raw = self._iters_warmdown(step, elapsed_ms)
        return raw if raw >= 1.0 else max(raw, self.min_lr_scale)

    def _fraction_warmdown(self, step: int, elapsed_ms: float) -> float:
        """The records' rule: `max((1 − progress) / warmdown_frac, min_lr)` in the final fraction."""
        return min((1.0 - self.progress(step, elapsed_ms)) / self.warmdown_frac, 1.0)

    def _iters_warmdown(self, step: int, elapsed_ms: float) -> float:
        """The baseline's rule: the last `warmdown_iters` steps.

        With a wallclock cap the warmdown length is converted to time using the average step time
        so far; without one it counts steps.
        """
        if self.warmdown_iters <= 0:
            return 1.0
        if self.max_wallclock_ms is None:
            start = max(self.iterations - self.warmdown_iters, 0)
            if start <= step < self.iterations:
                return max((self.iterations - step) / max(self.warmdown_iters, 1), 0.0)
            return 1.0
        step_ms = elapsed_ms / max(step, 1)
        warmdown_ms = self.warmdown_iters * step_ms
        remaining_ms = max(self.max_wallclock_ms - elapsed_ms, 0.0)
        return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0

    def muon_momentum(self, step: int) -> float:
        frac = min(step / self.momentum_warmup_steps, 1.0) if self.momentum_warmup_steps > 0 else 1.0
        return (1 - frac) * self.momentum_start + frac * self.momentum_end

    def wd_multiplier(self, progress: float) -> float:
        """1 until `wd_taper_start_frac`, then linear to `wd_taper_final_mult` at the end of the run."""
        if progress <= self.wd_taper_start_frac or self.wd_taper_start_frac >= 1.0:
            return 1.0
        t = (progress - self.wd_taper_start_frac) / (1.0 - self.wd_taper_start_frac)
        return 1.0 + t * (self.wd_taper_final_mult - 1.0)

    def qat_active(self, lr_scale: float, progress: float) -> bool:
        if self.late_qat_threshold <= 0:
            return False
        if self.late_qat_trigger == "progress":
            return progress >= 1.0 - self.late_qat_threshold
        return lr_scale < self.late_qat_threshold

    def recurrence_active(self, step: int, progress: float) -> bool:
        """Depth recurrence runs from the first step unless a start step or fraction is set."""
        if self.recurrence_start_step == 0 and self.recurrence_start_frac == 0:
            return True
        by_step = self.recurrence_start_step > 0 and step >= self.recurrence_start_step
        by_progress = self.recurrence_start_frac > 0 and progress >= self.recurrence_start_frac
        return by_step or by_progress


class SwitchTensors:
    """The schedule values compiled code reads, as 0-d device tensors written in place each step."""

    def __init__(self, device: torch.device) -> None:
        self.lr_scale: Tensor = torch.ones((), device=device)
        self.qat: Tensor = torch.zeros((), device=device)
        self.recurrence: Tensor = torch.zeros((), device=device)

    def write(self, values: StepValues) -> None:
        self.lr_scale.fill_(values.lr_scale)
        self.qat.fill_(float(values.qat_active))
        self.recurrence.fill_(float(values.recurrence_active))
