"""Step- and wallclock-driven schedules: LR multiplier (warmdown) and Muon momentum warm-up."""

from __future__ import annotations

from dataclasses import dataclass

from pgolf.config import Config


@dataclass(frozen=True)
class Schedule:
    iterations: int
    warmdown_iters: int
    max_wallclock_ms: float | None
    momentum_start: float
    momentum_end: float
    momentum_warmup_steps: int

    @classmethod
    def from_config(cls, cfg: Config) -> "Schedule":
        cap = cfg.train.max_wallclock_seconds
        return cls(
            iterations=cfg.train.iterations,
            warmdown_iters=cfg.train.warmdown_iters,
            max_wallclock_ms=1000.0 * cap if cap > 0 else None,
            momentum_start=cfg.optim.muon_momentum_warmup_start,
            momentum_end=cfg.optim.muon_momentum,
            momentum_warmup_steps=cfg.optim.muon_momentum_warmup_steps,
        )

    def lr_multiplier(self, step: int, elapsed_ms: float) -> float:
        """1 until the end nears, then a linear decay to 0 over the last `warmdown_iters` steps.

        With a wallclock cap the warmdown length is converted to time using the average step time
        so far (the baseline's rule); without one it counts steps.
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
