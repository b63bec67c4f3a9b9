"""Per-forward inputs that blocks share: x0, the document mask, value embeddings, first-layer values."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ForwardContext:
    """Built once per forward by `GPT.hidden`; only the features that are switched on fill their field."""

    x0: Tensor  # the normalised embedding stream every block mixes back in (resid_mix)
    attn_mask: Tensor | None = None  # (batch, 1, seq, seq) bool, True = may attend (doc-isolated attention)
    value_embed: Tensor | None = None  # (batch, seq, kv_dim) value embeddings, already globally scaled
    first_values: Tensor | None = None  # the first attention layer's values (value residual)
