"""Weight averaging over training: EMA (exponential) and SWA (uniform over low-LR snapshots).

Both keep fp32 copies of *every* state-dict entry (weights, gains, mixes), updated after optimizer
steps, and are part of the checkpoint so a resumed run averages exactly like an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _float_copy(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().float().clone() for k, v in model.state_dict().items()}


class EMA:
    """`ema ← d·ema + (1 − d)·w` after every step from `start_step` on (a plain copy before it)."""

    def __init__(self, model: nn.Module, decay: float, start_step: int = 0) -> None:
        self.decay = decay
        self.start_step = start_step
        self.shadow = _float_copy(model)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """`step` is the number of optimizer steps done, this one included."""
        live = [v.float() for v in model.state_dict().values()]
        shadow = list(self.shadow.values())
        if step <= self.start_step:
            torch._foreach_copy_(shadow, live)  # pyright: ignore[reportPrivateImportUsage] - fused foreach op
        else:
            torch._foreach_lerp_(shadow, live, 1.0 - self.decay)  # pyright: ignore[reportPrivateImportUsage] - fused foreach op

    def weights(self) -> dict[str, Tensor]:
        return self.shadow

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


class SWA:
    """Mean of snapshots taken every `every` steps while the LR multiplier is below `max_lr_scale`.

    Snapshots taken while the LR is high hurt, so the window is the low-LR tail of warmdown.
    """

    def __init__(self, model: nn.Module, every: int, max_lr_scale: float) -> None:
        self.every = every
        self.max_lr_scale = max_lr_scale
        self.total = {k: torch.zeros_like(v) for k, v in _float_copy(model).items()}
        self.count = 0

    def takes(self, step: int, lr_scale: float) -> bool:
        """Whether this step's weights are a snapshot: the low-LR window is open and the step is on the cadence."""
        return lr_scale < self.max_lr_scale and step % self.every == 0

    @torch.no_grad()
    def update(self, weights: dict[str, Tensor], step: int, lr_scale: float) -> None:
        """Add a snapshot of `weights` (the model's state dict, or the EMA's) when the window is open."""
        if not self.takes(step, lr_scale):
            return
        torch._foreach_add_(list(self.total.values()), [v.float() for v in weights.values()])  # pyright: ignore[reportPrivateImportUsage] - fused foreach op
        self.count += 1

    def weights(self) -> dict[str, Tensor] | None:
        """The average, or None if the window never opened (no snapshot)."""
        if self.count == 0:
            return None
        return {k: v / self.count for k, v in self.total.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"total": {k: v.cpu() for k, v in self.total.items()}, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["total"].items():
            self.total[k].copy_(v)
        self.count = int(state["count"])


class Averagers:
    """The averages a run keeps (either may be absent), updated and checkpointed together."""

    def __init__(self, ema: EMA | None, swa: SWA | None, swa_of_ema: bool = False) -> None:
        self.ema = ema
        self.swa = swa
        self.swa_of_ema = swa_of_ema  # SWA snapshots the EMA's weights (PR #635), not the live ones

    @classmethod
    def for_model(cls, model: nn.Module, ema_decay: float, ema_start_step: int, swa_every: int,
                  swa_max_lr_scale: float, swa_source: str = "raw") -> Averagers:
        return cls(EMA(model, ema_decay, ema_start_step) if ema_decay > 0 else None,
                   SWA(model, swa_every, swa_max_lr_scale) if swa_every > 0 else None, swa_source == "ema")

    @property
    def enabled(self) -> bool:
        return self.ema is not None or self.swa is not None

    def update(self, model: nn.Module, step: int, lr_scale: float) -> None:
        if self.ema is not None:
            self.ema.update(model, step)
        if self.swa is not None and self.swa.takes(step, lr_scale):  # no state dict built on the other steps
            source = self.ema.weights() if self.swa_of_ema and self.ema is not None else model.state_dict()
            self.swa.update(source, step, lr_scale)

    def averages(self) -> dict[str, dict[str, Tensor]]:
        """{"ema": weights, "swa": weights} for those that exist and hold an average."""
        out = {}
        if self.ema is not None:
            out["ema"] = self.ema.weights()
        if self.swa is not None and (swa := self.swa.weights()) is not None:
            out["swa"] = swa
        return out

    def state_dict(self) -> dict[str, Any]:
        return {name: avg.state_dict() for name, avg in (("ema", self.ema), ("swa", self.swa)) if avg is not None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, avg in (("ema", self.ema), ("swa", self.swa)):
            if avg is not None:
                avg.load_state_dict(state[name])
