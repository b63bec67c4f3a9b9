"""AdamW that applies its update several times per step from the same gradient (PR #1289's `route`).

PR #1289 puts each parallel block's `route` into its scalar AdamW list twice (once as a block tensor with
ndim < 2, once appended by name; its train_gpt.py lines 2223-2236). torch's fused AdamW, which the record uses,
then advances the parameter's step count by two and applies two AdamW updates from the same gradient, both
with the bias corrections of the advanced count. This optimizer does exactly that for `updates` copies, without
relying on torch's handling of duplicate parameters (deprecated, and different in its foreach and for-loop
forms).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


class RepeatedAdamW(torch.optim.Optimizer):
    """Decoupled-decay Adam, `updates` updates per step, the step count advanced by `updates` before them."""

    def __init__(self, params: list[Tensor] | list[dict], lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, updates: int) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.updates = updates

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)

    def _update(self, p: Tensor, group: dict) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += self.updates
        step = float(state["step"])
        bias1, bias2_sqrt = 1 - beta1 ** step, math.sqrt(1 - beta2 ** step)
        grad, exp_avg, exp_avg_sq = p.grad, state["exp_avg"], state["exp_avg_sq"]
        for _ in range(self.updates):
            p.mul_(1 - lr * wd)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            p.addcdiv_(exp_avg, exp_avg_sq.sqrt().div_(bias2_sqrt).add_(eps), value=-lr / bias1)
