"""Non-overlapping evaluation at a fixed sequence length (the baseline's `eval_val`).

The trimmed val stream is cut into consecutive `seq_len` blocks; ranks take disjoint contiguous
ranges of blocks; every position of every block is scored once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pgolf.data.tokenizer import ByteCounter
from pgolf.evaluate.bpb import BPBAccumulator, BPBResult

TokenLossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class EvalSetup:
    seq_len: int
    batch_tokens: int  # global tokens per eval batch (VAL_BATCH_SIZE)
    rank: int = 0
    world_size: int = 1
    autocast_dtype: torch.dtype | None = None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def evaluate_plain(
    token_losses: TokenLossFn,
    val_tokens: Tensor,
    lut: ByteCounter,
    setup: EvalSetup,
    device: torch.device,
    collect_losses: bool = False,
) -> tuple[BPBResult, np.ndarray | None]:
    """Score `val_tokens` (already trimmed to k·seq_len + 1) with a per-token loss function.

    Returns the result and, if asked, this rank's per-token losses (float64 nats) in stream order.
    """
    seq_len = setup.seq_len
    local_seqs = max(setup.batch_tokens // (setup.world_size * seq_len), 1)
    total_seqs = (val_tokens.numel() - 1) // seq_len
    first = total_seqs * setup.rank // setup.world_size
    last = total_seqs * (setup.rank + 1) // setup.world_size
    acc = BPBAccumulator(lut, device)
    collected: list[np.ndarray] = []
    with torch.inference_mode(), _autocast(device, setup.autocast_dtype):
        for start in range(first, last, local_seqs):
            end = min(start + local_seqs, last)
            chunk = val_tokens[start * seq_len : end * seq_len + 1].to(device=device, dtype=torch.int64)
            x = chunk[:-1].view(-1, seq_len)
            y = chunk[1:].view(-1, seq_len)
            nll = token_losses(x, y)
            positions = torch.arange(start * seq_len + 1, end * seq_len + 1, device=device)
            acc.add(nll, x, y, positions)
            if collect_losses:
                collected.append(nll.double().reshape(-1).cpu().numpy())
    losses = np.concatenate(collected) if collect_losses and collected else None
    return acc.result(), losses
