"""Transformer blocks: pre-norm attention and MLP with learned residual mixing and output scales."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pgolf.model.attention import CausalSelfAttention
from pgolf.model.layers import rms_norm, row_scale
from pgolf.model.mlp import MLP


class Block(nn.Module):
    """x ← mix(x, x0); x ← x + a ⊙ Attn(rms(x)); x ← x + m ⊙ MLP(rms(x))."""

    def __init__(self, attn: CausalSelfAttention, mlp: MLP, dim: int) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        x = x + row_scale(self.attn_scale, x) * self.attn(rms_norm(x))
        return x + row_scale(self.mlp_scale, x) * self.mlp(rms_norm(x))
