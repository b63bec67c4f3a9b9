"""The baseline's Muon: round-robin over ranks, behind DDP (`optim.muon_impl = "round_robin"`).

Under torch.distributed (after DDP has averaged the gradients) the matrices are assigned round-robin to
ranks; each rank orthogonalises its share with the update rule of `pgolf.optim.muon`, and one all-reduce of
a flat buffer shares every update. Runs of Parallel Muon neither import nor ship it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pgolf.optim.muon import (
    MuonOptimizer,
    apply_update,
    aspect_scale,
    momentum_direction,
)
from pgolf.train.distributed import group_world, sum_across_group


class Muon(MuonOptimizer):
    """Muon as the baseline runs it, plus the records' options (Polar Express, MuonEq-R, weight decay).

    Under torch.distributed (after DDP has averaged the gradients) the matrices are assigned
    round-robin to ranks; each rank orthogonalises its share and one all-reduce of a flat buffer
    shares every update.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        world_size, rank = group_world()
        for group in self.param_groups:
            params: list[Tensor] = group["params"]
            if not params:
                continue
            total = sum(p.numel() for p in params)
            updates = torch.zeros(total, device=params[0].device, dtype=self.ns_dtype)
            offset = 0
            for index, p in enumerate(params):
                if index % world_size == rank and p.grad is not None:
                    updates[offset : offset + p.numel()] = self._update(p, group).reshape(-1)
                offset += p.numel()
            sum_across_group(updates)
            offset = 0
            for p in params:
                apply_update(p, updates[offset : offset + p.numel()].view_as(p), group["lr"], group["weight_decay"])
                offset += p.numel()

    def _update(self, p: Tensor, group: dict) -> Tensor:
        grad = p.grad
        assert grad is not None, "step() updates only parameters with a gradient"
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        direction = momentum_direction(grad, state["momentum_buffer"], group["momentum"], group["nesterov"],
                                       group["row_normalize"])
        update = self.orthogonalize(direction, group["backend_steps"], self.ns_dtype, group["ns_variant"])
        return update * aspect_scale(update.size(0), update.size(1))
