"""Parallel Muon: matrices of equal shape form 3-D banks, orthogonalised with batched Newton–Schulz.

Under torchrun it replaces DDP. After `backward()` (gradients still local to each rank):

1. `sync_gradients()` launches, per bank (largest first), an async reduce-scatter of the stacked
   gradients, so rank r receives the averaged rows [r·B/W, (r+1)·B/W) of the bank (B padded with zero
   matrices to a multiple of W); meanwhile the replicated parameters' gradients (embedding, control
   tensors) are all-reduced and averaged in one flat buffer, ready for Adam.
2. `step()` waits for each bank's shard, updates the sharded momentum, runs Newton–Schulz on the
   shard (one bmm chain for all its matrices) and launches an async all-gather of the result; the
   previous bank's gathered update is applied while the next bank is orthogonalised.

Every rank applies the same gathered updates, so weights stay identical without broadcasts. In a
single process the same code runs with W = 1 (no communication, batched Newton–Schulz only).

The stacking, shard and gather buffers are allocated once per bank and reused every step. With
`comm_dtype=torch.bfloat16` both collectives move bf16 (half the bytes, as the records do): the stacked
gradients and the gathered updates are rounded to bf16, the momentum stays in the parameters' dtype.
The trainer steps Adam before this optimizer, so Adam's kernels run while the reduce-scatters are in
flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from pgolf.optim.muon import (
    MuonOptimizer,
    Orthogonalizer,
    apply_update,
    aspect_scale,
    banked_newton_schulz,
    momentum_direction,
)

MOMENTUM_KEY = "bank_momentum"


@dataclass
class Bank:
    """The parameters of one shape, and this step's in-flight communication for them."""

    params: list[Tensor]
    world_size: int
    grad_shard: Tensor | None = None
    pending: Any = None  # async work handle of the reduce-scatter
    in_flight: list[Tensor] | None = None  # buffers an async collective reads or writes: alive until its wait
    gathered: Tensor | None = None
    gather_work: Any = None
    buffers: dict[str, Tensor] | None = None  # persistent: "stacked", "shard", "gathered" (allocated on first use)

    @property
    def rows(self) -> int:
        return self.params[0].size(0)

    @property
    def cols(self) -> int:
        return self.params[0].size(1)

    @property
    def padded(self) -> int:
        return -(-len(self.params) // self.world_size) * self.world_size

    @property
    def shard(self) -> int:
        return self.padded // self.world_size

    def buffer(self, name: str, count: int, dtype: torch.dtype) -> Tensor:
        """A persistent (count, rows, cols) buffer; zero-filled once, so the padding rows stay zero."""
        if self.buffers is None:
            self.buffers = {}
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype:
            buf = torch.zeros(count, self.rows, self.cols, device=self.params[0].device, dtype=dtype)
            self.buffers[name] = buf
        return buf

    def stacked_grads(self, dtype: torch.dtype | None = None) -> Tensor:
        out = self.buffer("stacked", self.padded, dtype or self.params[0].dtype)
        for i, p in enumerate(self.params):
            if p.grad is not None:
                out[i].copy_(p.grad)
            else:
                out[i].zero_()
        return out


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def make_banks(params: list[Tensor], world_size: int) -> list[Bank]:
    """Group 2-D parameters by shape; largest banks first (all ranks use the same order)."""
    by_shape: dict[tuple[int, ...], list[Tensor]] = {}
    for p in params:
        if p.ndim != 2:
            raise ValueError(f"Parallel Muon takes 2-D matrices only, got shape {tuple(p.shape)}")
        by_shape.setdefault(tuple(p.shape), []).append(p)
    order = sorted(by_shape, key=lambda s: (-len(by_shape[s]) * s[0] * s[1], s))
    return [Bank(by_shape[shape], world_size) for shape in order]


class ParallelMuon(MuonOptimizer):
    """Muon over shape banks with sharded momentum and reduce-scatter / all-gather communication.

    `replicated` are the other trainable parameters: their gradients are averaged here too (this
    optimizer replaces DDP), but Adam steps them.
    """

    def __init__(self, params: list[Tensor], replicated: list[Tensor] | None = None,
                 comm_dtype: torch.dtype | None = None, momentum_dtype: torch.dtype = torch.float32,
                 orthogonalize: Orthogonalizer = banked_newton_schulz, **hyperparameters: Any) -> None:
        """`hyperparameters`: `MuonOptimizer`'s (lr, momentum, backend_steps, ...)."""
        super().__init__(params, orthogonalize=orthogonalize, **hyperparameters)
        if len(self.param_groups) != 1:
            raise ValueError("Parallel Muon supports one parameter group")
        self.world_size, self.rank = _world()
        self.banks = make_banks(self.param_groups[0]["params"], self.world_size)
        self.replicated = list(replicated or [])
        self.momentum_dtype = momentum_dtype  # PR #635 casts the gradient to bf16 and keeps a bf16 momentum
        self.comm_dtype = comm_dtype  # None: the parameters' dtype

    # ---- gradient synchronisation (replaces DDP) --------------------------------------------
    @torch.no_grad()
    def sync_gradients(self) -> None:
        """Launch the banks' reduce-scatters and average the replicated gradients (blocking)."""
        for bank in self.banks:
            bank.grad_shard = self._launch_reduce_scatter(bank)
        if self.world_size > 1:
            average_gradients(self.replicated, self.world_size)

    def _launch_reduce_scatter(self, bank: Bank) -> Tensor:
        """This rank's (summed, in flight) gradient shard; the whole stack in a single process."""
        stacked = bank.stacked_grads(self.comm_dtype)
        if self.world_size == 1:
            return stacked
        shard = bank.buffer("shard", bank.shard, stacked.dtype)
        bank.pending = dist.reduce_scatter_tensor(shard, stacked, op=dist.ReduceOp.SUM, async_op=True)
        bank.in_flight = [stacked]
        return shard

    def _wait_grad(self, bank: Bank) -> Tensor:
        if bank.grad_shard is None:
            raise RuntimeError("ParallelMuon.step() called before sync_gradients()")
        if bank.pending is not None:
            bank.pending.wait()
            bank.pending = None
            bank.grad_shard.div_(self.world_size)
        param_dtype = bank.params[0].dtype
        if bank.grad_shard.dtype != param_dtype:  # bf16 on the wire; momentum and clipping in the params' dtype
            bank.grad_shard = bank.grad_shard.to(param_dtype)
        return bank.grad_shard

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Clip the global norm of the *averaged* gradient (bank shards + replicated), like DDP + clip_grad_norm_."""
        shards = [self._wait_grad(bank) for bank in self.banks]
        squares = [shard.float().square().sum() for shard in shards]
        bank_sq = torch.stack(squares).sum() if squares else torch.zeros(())
        if self.world_size > 1:
            dist.all_reduce(bank_sq, op=dist.ReduceOp.SUM)
        grads = [p.grad for p in self.replicated if p.grad is not None]
        total = bank_sq + sum((g.float().square().sum() for g in grads), torch.zeros((), device=bank_sq.device))
        norm = total.sqrt()
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for shard in shards:
            shard.mul_(coef.to(shard.dtype))
        for g in grads:
            g.mul_(coef.to(g.dtype))
        return norm

    # ---- the update --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        group = self.param_groups[0]
        previous: Bank | None = None
        for bank in self.banks:
            update = self._orthogonal_shard(bank, group)
            if self.world_size > 1:
                send = update.to(self.comm_dtype or update.dtype).contiguous()
                bank.gathered = bank.buffer("gathered", bank.padded, send.dtype)
                bank.gather_work = dist.all_gather_into_tensor(bank.gathered, send, async_op=True)
                bank.in_flight = [send]
            else:
                bank.gathered = update
            if previous is not None:
                self._apply(previous, group)
            previous = bank
        if previous is not None:
            self._apply(previous, group)

    def _orthogonal_shard(self, bank: Bank, group: dict) -> Tensor:
        grad = self._wait_grad(bank).to(self.momentum_dtype)
        state = self.state[bank.params[0]]
        if MOMENTUM_KEY not in state:
            state[MOMENTUM_KEY] = torch.zeros_like(grad)
        direction = momentum_direction(grad, state[MOMENTUM_KEY], group["momentum"], group["nesterov"],
                                       group["row_normalize"])
        return self.orthogonalize(direction, group["backend_steps"], self.ns_dtype, group["ns_variant"])

    def _apply(self, bank: Bank, group: dict) -> None:
        if bank.gather_work is not None:
            bank.gather_work.wait()
        assert bank.gathered is not None, "step() gathers every bank before applying it"
        for p, update in zip(bank.params, bank.gathered, strict=False):
            apply_update(p, update, group["lr"], group["weight_decay"], aspect_scale(bank.rows, bank.cols))
        bank.grad_shard = bank.gathered = bank.gather_work = bank.in_flight = None

    # ---- checkpoints: momentum is saved whole, so a checkpoint does not depend on the world size ----
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        packed = super().state_dict()
        index = {id(p): i for i, p in enumerate(self.param_groups[0]["params"])}
        for bank in self.banks:
            key = index[id(bank.params[0])]
            entry = packed["state"].get(key)
            if entry is not None and MOMENTUM_KEY in entry:
                packed["state"][key] = {**entry, MOMENTUM_KEY: self._gather(entry[MOMENTUM_KEY], bank)}
        return packed

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        super().load_state_dict(state_dict)
        for bank in self.banks:
            state = self.state.get(bank.params[0])
            if state and MOMENTUM_KEY in state:
                full = state[MOMENTUM_KEY]
                padded = torch.zeros(bank.padded, *full.shape[1:], dtype=full.dtype, device=full.device)
                padded[: full.size(0)] = full
                state[MOMENTUM_KEY] = padded[self.rank * bank.shard : (self.rank + 1) * bank.shard].clone()

    def _gather(self, shard: Tensor, bank: Bank) -> Tensor:
        if self.world_size == 1:
            return shard[: len(bank.params)].clone()
        full = torch.empty(bank.padded, *shard.shape[1:], dtype=shard.dtype, device=shard.device)
        dist.all_gather_into_tensor(full, shard.contiguous())
        return full[: len(bank.params)]


@torch.no_grad()
def average_gradients(params: list[Tensor], world_size: int) -> None:
    """All-reduce and average the gradients of `params`, one flat buffer per dtype."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
