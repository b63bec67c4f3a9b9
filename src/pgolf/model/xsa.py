"""XSA, exclusive self attention (records/2026-03-20_11L_EfficientPartialXSA…, TECHNIQUES.md §4.17.1)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """Remove from each head's output its component along the token's own value vector.

    y: (batch, seq, heads, head_dim); v: (batch, seq, kv_heads, head_dim). Query head h is served by
    KV head h // (heads / kv_heads); the heads of a group are handled by a broadcast, not a repeat.
    """
    bsz, seq, heads, head_dim = y.shape
    kv_heads = v.size(2)
    grouped = y.view(bsz, seq, kv_heads, heads // kv_heads, head_dim)
    direction = F.normalize(v, dim=-1).unsqueeze(3)
    grouped = grouped - (grouped * direction).sum(dim=-1, keepdim=True) * direction
    return grouped.view(bsz, seq, heads, head_dim)


def xsa_transform(y: Tensor, v: Tensor, x: Tensor) -> Tensor:
    """`exclusive_self_attention` as an attention output transform."""
    return exclusive_self_attention(y, v)
