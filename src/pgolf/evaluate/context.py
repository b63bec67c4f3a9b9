"""What every scoring pass shares: the stream, the byte table, the device and rank, the time cap."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pgolf.data.tokenizer import ByteCounter
from pgolf.evaluate.ledger import NormalizationAudit, ScoreLedger
from pgolf.train.distributed import DistContext, any_rank


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Deadline:
    """A per-pass time cap (0 = none). `expired(agree=True)` is a collective: every rank must call it."""

    seconds: float
    dist_ctx: DistContext | None = None
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def expired(self, agree: bool = False) -> bool:
        late = self.seconds > 0 and self.elapsed() >= self.seconds
        if agree and self.seconds > 0 and self.dist_ctx is not None:
            return any_rank(self.dist_ctx, late)
        return late


@dataclass
class ScoringContext:
    """The inputs of one scoring pass over `tokens` (pairs [0, len − 1))."""

    tokens: Tensor  # int64 on the CPU
    lut: ByteCounter
    dist_ctx: DistContext
    autocast_dtype: torch.dtype | None = None
    batch_seqs: int = 32
    keep_losses: bool = False
    audit: NormalizationAudit | None = None
    max_seconds: float = 0.0

    @property
    def n_targets(self) -> int:
        return self.tokens.numel() - 1

    @property
    def device(self) -> torch.device:
        return self.dist_ctx.device

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.device, self.autocast_dtype)

    def new_ledger(self) -> ScoreLedger:
        return ScoreLedger(self.n_targets, self.lut, self.device, self.keep_losses, self.audit)

    def new_deadline(self) -> Deadline:
        return Deadline(self.max_seconds, self.dist_ctx)
