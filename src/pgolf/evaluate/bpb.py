"""Exact bits per byte, as the challenge defines it.

    val_loss = Σ nll / T                      (nats per scored token)
    val_bpb  = (val_loss / ln 2) · (T / B)    (B = Σ bytes credited to the scored tokens)

Losses, token and byte counts are accumulated in float64 and summed over ranks before dividing,
in the same order of operations as the baseline, so the numbers agree to the last digit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from pgolf.data.tokenizer import ByteCounter
from pgolf.train.distributed import sum_across_group


@dataclass(frozen=True)
class BPBResult:
    val_loss: float
    val_bpb: float
    val_tokens: int
    val_bytes: int
    loss_sum_nats: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def bits_per_byte(loss_sum: float, tokens: float, num_bytes: float) -> tuple[float, float]:
    """(val_loss, val_bpb) from the three sums."""
    if tokens <= 0 or num_bytes <= 0:
        raise ValueError(f"cannot compute bpb from {tokens} tokens and {num_bytes} bytes")
    val_loss = loss_sum / tokens
    return val_loss, (val_loss / math.log(2.0)) * (tokens / num_bytes)


class BPBAccumulator:
    """Sums per-token losses and credited bytes; `result()` reduces across ranks once."""

    def __init__(self, lut: ByteCounter, device: torch.device) -> None:
        self.lut = lut.to(device)
        self.device = device
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, tokens, bytes

    def add(self, nll: Tensor, prev_ids: Tensor, target_ids: Tensor, target_positions: Tensor | None = None) -> Tensor:
        """Add scored tokens (nll in nats, same shape as the ids); returns their credited bytes.

        `target_positions` (indices of the targets in the val stream) is required by byte sidecars.
        """
        token_bytes = self.lut.token_bytes(prev_ids.reshape(-1), target_ids.reshape(-1), target_positions)
        self.sums[0] += nll.detach().reshape(-1).to(torch.float64).sum()
        self.sums[1] += target_ids.numel()
        self.sums[2] += token_bytes.to(torch.float64).sum()
        return token_bytes

    def result(self) -> BPBResult:
        sums = self.sums.clone()
        sum_across_group(sums)
        loss_sum, tokens, num_bytes = (float(v) for v in sums.tolist())
        val_loss, val_bpb = bits_per_byte(loss_sum, tokens, num_bytes)
        return BPBResult(val_loss, val_bpb, int(tokens), int(num_bytes), loss_sum)
