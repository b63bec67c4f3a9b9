"""How gradients become identical on every rank before the optimizer step.

One `GradSync` is chosen in setup: none (one process), DDP's bucketed all-reduce (skipped on all
but the last micro-step), or Parallel Muon's banks (reduce-scatter of the matrices, all-reduce of
the rest, after backward: `pgolf.train.bank_sync`, imported only by runs that use Parallel Muon). The
training loop calls the same three methods whichever it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel


class GradSync(Protocol):
    def micro_step(self, last: bool) -> contextlib.AbstractContextManager: ...

    def after_backward(self) -> None: ...

    def clip(self, max_norm: float) -> None: ...


class LocalSync:
    """One process (or gradients already synchronised by the forward's wrapper): nothing to exchange."""

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)

    def micro_step(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def after_backward(self) -> None:
        return None

    def clip(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, max_norm)


class DDPSync(LocalSync):
    """DDP all-reduces during the last micro-step's backward; earlier micro-steps only accumulate."""

    def __init__(self, ddp: DistributedDataParallel, params: Iterable[Tensor]) -> None:
        super().__init__(params)
        self.ddp = ddp

    def micro_step(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if last else self.ddp.no_sync()
