"""Per-head gates on the attention output (TECHNIQUES.md §4.17.4–4.17.6).

All three are `g[t, h] = multiplier · σ(scale · W[h] · x_t[:in_features])`, multiplying head h's
output after XSA and before the projection; x is the normalised block input fed to attention.

* dense (gated attention, PR #1736): W ∈ R^{H×d}, init N(0, 0.005²), g ≈ 0.5 at init; with `bias` the form
  of PR #635: σ(W·x + b), W zero-init and b = 4, g ≈ 0.98 at init;
* sparse (SparseAttnGate, PR #1787): W ∈ R^{H×window} zero-init, scale α (0.5 in the SOTA);
* out (AttnOutGate, PR #1667): 2σ(W·x[:window]), W zero-init, so g = 1 (identity) at init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttentionGate(nn.Module):
    def __init__(self, num_heads: int, in_features: int, scale: float, multiplier: float, init_std: float,
                 bias_init: float | None = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.scale = scale
        self.multiplier = multiplier
        self.attn_gate_w = nn.Parameter(torch.zeros(num_heads, in_features, dtype=torch.float32))
        if init_std > 0:
            nn.init.normal_(self.attn_gate_w, mean=0.0, std=init_std)
        if bias_init is None:
            self.register_parameter("attn_gate_b", None)
        else:
            self.attn_gate_b = nn.Parameter(torch.full((num_heads,), bias_init, dtype=torch.float32))

    def gate(self, x: Tensor) -> Tensor:
        """(batch, seq, heads) gate values for the block input x."""
        bias = None if self.attn_gate_b is None else self.attn_gate_b.to(x.dtype)
        logits = F.linear(x[..., : self.in_features], self.attn_gate_w.to(x.dtype), bias)
        return self.multiplier * torch.sigmoid(self.scale * logits)

    def forward(self, y: Tensor, v: Tensor, x: Tensor) -> Tensor:
        return y * self.gate(x).to(y.dtype)[..., None]


PR635_GATE_BIAS = 4.0


def build_attention_gate(kind: str, num_heads: int, dim: int, window: int, scale: float,
                         bias: bool = False) -> AttentionGate:
    if kind == "dense" and bias:
        return AttentionGate(num_heads, dim, scale=1.0, multiplier=1.0, init_std=0.0, bias_init=PR635_GATE_BIAS)
    if kind == "dense":
        return AttentionGate(num_heads, dim, scale=1.0, multiplier=1.0, init_std=0.005)
    if kind == "sparse":
        return AttentionGate(num_heads, window, scale=scale, multiplier=1.0, init_std=0.0)
    if kind == "out":
        return AttentionGate(num_heads, window, scale=1.0, multiplier=2.0, init_std=0.0)
    raise ValueError(f"unknown attention gate {kind!r}: choose dense, sparse or out")
