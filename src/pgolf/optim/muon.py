"""Muon: momentum SGD whose matrix updates are orthogonalised by a Newton–Schulz iteration."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

# Quintic Newton–Schulz coefficients of the baseline (tuned for speed of convergence, not exactness).
NS5_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz5(grad: Tensor, steps: int, dtype: torch.dtype = torch.bfloat16, eps: float = 1e-7) -> Tensor:
    """Approximately orthogonalise a 2-D matrix (its singular values are pushed towards 1)."""
    a, b, c = NS5_COEFFICIENTS
    x = grad.to(dtype)
    x = x / (x.norm() + eps)
    transposed = grad.size(0) > grad.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    """Muon as the baseline runs it.

    Under torch.distributed the matrices are assigned round-robin to ranks; each rank
    orthogonalises its share and one all-reduce of a flat buffer shares every update.
    """

    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        momentum: float,
        backend_steps: int,
        nesterov: bool = True,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov)
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        distributed = dist.is_available() and dist.is_initialized()
        world_size = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
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
            if distributed:
                dist.all_reduce(updates, op=dist.ReduceOp.SUM)
            offset = 0
            for p in params:
                p.add_(updates[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()
        return None

    def _update(self, p: Tensor, group: dict) -> Tensor:
        grad = p.grad
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buf = state["momentum_buffer"]
        buf.mul_(group["momentum"]).add_(grad)
        if group["nesterov"]:
            grad = grad.add(buf, alpha=group["momentum"])
        update = newton_schulz5(grad, group["backend_steps"], self.ns_dtype)
        return update * max(1.0, update.size(0) / update.size(1)) ** 0.5
