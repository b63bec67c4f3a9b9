"""The baseline's serial transformer block (the parallel-residual forms build on it in `pgolf.model.lanes`).

A block maps a residual state to a new one. The serial state is one tensor; parallel blocks keep
two lanes (an attention lane and an MLP lane).

Every block takes an optional `mlp`: depth recurrence with untied MLPs runs a block again with
another MLP in place of its own (`model.recur_untie_mlp`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pgolf.model.attention import CausalSelfAttention
from pgolf.model.context import ForwardContext
from pgolf.model.layers import declares_controls, rms_norm, row_scale
from pgolf.model.mlp import MLP

Lanes = tuple[Tensor, Tensor]
State = Tensor | Lanes
Norm = Callable[[Tensor], Tensor]
# The order blocks run in: a stage is (physical layer, pass) runs back to back, `pass` counting the earlier
# runs of the same layer (0 = first); a U-Net pushes a skip after each encoder stage and pops one before
# each decoder stage (depth recurrence: `pgolf.model.recurrence`).
Run = tuple[int, int]
Stage = list[Run]
Stages = tuple[list[Stage], list[Stage]]  # (encoder, decoder)


def mix_x0(mix: Tensor, x: Tensor, x0: Tensor) -> Tensor:
    """mix[0]⊙x + mix[1]⊙x0 for a (2, d) parameter."""
    m = mix.to(x.dtype)
    return m[0][None, None, :] * x + m[1][None, None, :] * x0


@declares_controls("attn_scale", "mlp_scale", "resid_mix")
class Block(nn.Module):
    """x ← mix(x, x0); x ← x + a ⊙ Attn(norm(x)); x ← x + m ⊙ MLP(norm(x))."""

    def __init__(self, attn: CausalSelfAttention, mlp: MLP, dim: int, norm: Norm = rms_norm) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp
        self.norm = norm
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def forward(self, x: Tensor, ctx: ForwardContext, mlp: MLP | None = None) -> Tensor:
        x = mix_x0(self.resid_mix, x, ctx.x0)
        x = x + row_scale(self.attn_scale, x) * self.attn(self.norm(x), ctx)
        return x + row_scale(self.mlp_scale, x) * (self.mlp if mlp is None else mlp)(self.norm(x))
