"""Value embeddings and value residual (TECHNIQUES.md §4.16), as value mixers of the attention.

* Value embeddings (PR #374): one shared table V×d_ve (init N(0, 0.01²)), a zero-init projection
  d_ve → kv_dim and a global scale (init 0.1) give `ve = scale · Proj(VE[token])` once per forward;
  each chosen layer adds `ve_layer_scale · ve` (init 1) to its values.
* Value residual: the first attention layer's values are kept; every later layer uses
  `λ0·v_first + λ1·v` with (λ0, λ1) learned per layer, init (0.5, 0.5).
Both act per position, so they cannot move information between tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.model.context import ForwardContext
from pgolf.model.layers import CastedLinear, declares_controls


@declares_controls("ve_scale")
class ValueEmbedding(nn.Module):
    """`zero_proj=False` leaves the projection to the model's OrthoInit (PR #1218/#1291's init loop reaches it)."""

    def __init__(self, vocab_size: int, dim: int, kv_dim: int, zero_proj: bool = True) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab_size, dim) * 0.01)
        self.proj = CastedLinear(dim, kv_dim, zero_init=zero_proj)
        self.ve_scale = nn.Parameter(torch.tensor(0.1, dtype=torch.float32))

    def forward(self, input_ids: Tensor, dtype: torch.dtype) -> Tensor:
        """(batch, seq, kv_dim) in `dtype`."""
        return self.ve_scale.to(dtype) * self.proj(F.embedding(input_ids, self.table).to(dtype))


@declares_controls("ve_layer_scale")
class ValueEmbeddingMix(nn.Module):
    """v ← v + ve_layer_scale · ve for one layer."""

    def __init__(self) -> None:
        super().__init__()
        self.ve_layer_scale = nn.Parameter(torch.ones((), dtype=torch.float32))

    def forward(self, v: Tensor, ctx: ForwardContext) -> Tensor:
        assert ctx.value_embed is not None, "the model computes value embeddings for layers that mix them"
        return v + self.ve_layer_scale.to(v.dtype) * ctx.value_embed.view_as(v).to(v.dtype)


def keep_first_values(v: Tensor, ctx: ForwardContext) -> Tensor:
    """The first attention layer's value mixer under value residual: remember v, change nothing."""
    ctx.first_values = v
    return v


@declares_controls("vr_lambda")
class FirstValues(nn.Module):
    """`keep_first_values` holding the (λ0, λ1) that PR #635 allocates in every layer, layer 0 included.

    Layer 0 has no earlier values to mix, so the λ never enters the forward and gets no gradient; it exists
    so that the parameter count and names equal the record's (`model.vr_lambda_first_layer`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.vr_lambda = nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float32))

    def forward(self, v: Tensor, ctx: ForwardContext) -> Tensor:
        return keep_first_values(v, ctx)


@declares_controls("vr_lambda")
class ValueResidualMix(nn.Module):
    """v ← λ0·v_first + λ1·v."""

    def __init__(self) -> None:
        super().__init__()
        self.vr_lambda = nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float32))

    def forward(self, v: Tensor, ctx: ForwardContext) -> Tensor:
        lam = self.vr_lambda.to(v.dtype)
        assert ctx.first_values is not None, "layer 0 keeps its values before later layers mix them"
        return lam[0] * ctx.first_values + lam[1] * v
