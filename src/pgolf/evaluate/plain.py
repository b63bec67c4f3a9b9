"""Non-overlapping evaluation at a fixed sequence length (the baseline's `eval_val`).

The trimmed val stream is cut into consecutive `seq_len` blocks; ranks take disjoint contiguous
ranges of blocks; every position of every block is scored once. It is sliding-window scoring with
stride = context, batched as the baseline batches (VAL_BATCH_SIZE tokens over all ranks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pgolf.data.tokenizer import ByteCounter
from pgolf.evaluate.bpb import BPBResult
from pgolf.evaluate.context import ScoringContext
from pgolf.evaluate.sliding import TokenLossFn, evaluate_windows, losses_scorer
from pgolf.train.distributed import DistContext


@dataclass(frozen=True)
class EvalSetup:
    seq_len: int
    batch_tokens: int  # global tokens per eval batch (VAL_BATCH_SIZE)
    rank: int = 0
    world_size: int = 1
    autocast_dtype: torch.dtype | None = None

    @property
    def local_seqs(self) -> int:
        """Sequences per forward pass on each rank."""
        return max(self.batch_tokens // (self.world_size * self.seq_len), 1)


def evaluate_plain(
    token_losses: TokenLossFn,
    val_tokens: Tensor,
    lut: ByteCounter,
    setup: EvalSetup,
    device: torch.device,
    collect_losses: bool = False,
) -> tuple[BPBResult, np.ndarray | None]:
    """Score `val_tokens` (already trimmed to k·seq_len + 1) with a per-token loss function.

    Returns the result and, if asked, the per-token losses (float64 nats) of all ranks in stream order.
    """
    dist_ctx = DistContext(setup.rank, setup.world_size, 0, device, None)
    scoring = ScoringContext(val_tokens, lut, dist_ctx, setup.autocast_dtype, setup.local_seqs, collect_losses)
    result = evaluate_windows(losses_scorer(token_losses), scoring, setup.seq_len, setup.seq_len)
    return result.bpb, result.losses
