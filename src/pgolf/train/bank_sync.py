"""The `GradSync` of Parallel Muon (`optim.muon_impl = "parallel"`): its banks exchange every gradient.

A module of its own so that only the runs that use Parallel Muon import (and ship) it and the optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import Tensor

from pgolf.config import Config
from pgolf.optim.parallel_muon import ParallelMuon


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


def bank_sync(muon: ParallelMuon, params: Iterable[Tensor], cfg: Config) -> BankSync:
    """The run's bank synchronisation: clipping before the exchange with `optim.muon_clip = "local"`, else after."""
    o = cfg.optim
    return BankSync(muon, params, o.grad_clip_norm if o.muon_clip == "local" else 0.0)
