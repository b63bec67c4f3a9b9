"""How gradients become identical on every rank before the optimizer step.

One `GradSync` is chosen in setup: none (one process), DDP's bucketed all-reduce (skipped on all
but the last micro-step), or Parallel Muon's banks (reduce-scatter of the matrices, all-reduce of
the rest, after backward). The training loop calls the same three methods whichever it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from pgolf.optim.parallel_muon import ParallelMuon


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


class BankSync:
    """Parallel Muon synchronises every gradient itself.

    It clips by the global norm of its shards after the exchange, or, with `local_clip_norm` (the
    records' form, `optim.muon_clip = "local"`), each rank clips its own gradient before it, so no rank
    waits on the others' shards to know the norm.
    """

    def __init__(self, muon: ParallelMuon, params: Iterable[Tensor] = (), local_clip_norm: float = 0.0) -> None:
        self.muon = muon
        self.params = list(params)
        self.local_clip_norm = local_clip_norm

    def micro_step(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def after_backward(self) -> None:
        if self.local_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.local_clip_norm)
        self.muon.sync_gradients()

    def clip(self, max_norm: float) -> None:
        if self.local_clip_norm == 0:
            self.muon.clip_grad_norm_(max_norm)
