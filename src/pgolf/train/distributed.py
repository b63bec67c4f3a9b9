"""torchrun integration: process group, device and backend choice, seeding, and the collectives.

Every `torch.distributed` call of pgolf is here or in `optim.parallel_muon` (its overlapped bank
communication). The helpers without a `DistContext` act on the current process group and do nothing
when there is none, so the same code runs as a single process. This module imports nothing from
pgolf's stages, so every stage may use it.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from pgolf.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None when not distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def choose_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was asked for but no CUDA device is available; use auto or cpu")
    if torch.cuda.is_available() and preference in ("auto", "cuda"):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the torchrun process group if RANK/WORLD_SIZE are set (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size <= 1 or "RANK" not in os.environ:
        return DistContext(0, 1, 0, device, None)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistContext(rank, world_size, local_rank, device, backend)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True if the flag is set on any rank (used for the wallclock stop)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor(int(flag), device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def average_across_ranks(ctx: DistContext, value: torch.Tensor) -> None:
    """In place: the mean of `value` over the ranks."""
    if ctx.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.AVG)


def broadcast_from_main(ctx: DistContext, obj: T) -> T:
    """Rank 0's `obj` on every rank (picklable objects only; used for the run id)."""
    if not ctx.distributed:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---- the current process group (for code that is handed no DistContext) -------------------------
def group_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def group_world() -> tuple[int, int]:
    """(world size, rank) of the current process group; (1, 0) without one."""
    if group_active():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def sum_across_group(*tensors: torch.Tensor, device: torch.device | None = None) -> None:
    """In place: each tensor summed over the current group's ranks (no-op without a group).

    With `device`, tensors travel through it when the backend is NCCL (gloo reduces CPU tensors).
    """
    if not group_active():
        return
    via = device if device is not None and dist.get_backend() == "nccl" else None
    for tensor in tensors:
        if via is None:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        else:
            moved = tensor.to(via)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            tensor.copy_(moved.to(tensor.device))


def group_barrier() -> None:
    if group_active():
        dist.barrier()


def backends_available() -> dict[str, bool]:
    """Which process-group backends this torch build has (for `pgolf doctor`)."""
    return {"nccl": dist.is_available() and dist.is_nccl_available(),
            "gloo": dist.is_available() and dist.is_gloo_available()}


def join_gloo_group(rank: int, world_size: int) -> None:
    """Join a CPU (gloo) group from a spawned worker (MASTER_ADDR/PORT already set)."""
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def leave_group() -> None:
    if group_active():
        dist.destroy_process_group()
