"""Per-forward inputs that blocks share: x0, the document layout, value embeddings, first-layer values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


class DocumentAttention(Protocol):
    """One batch's document-isolated attention (its layouts are in `pgolf.model.documents`)."""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(batch, seq, heads, head_dim) q and k/v with ≤ heads (GQA) → (batch, seq, heads, head_dim)."""
        ...


@dataclass
class ForwardContext:
    """Built once per forward by `GPT.hidden`; only the features that are switched on fill their field."""

    x0: Tensor  # the normalised embedding stream every block mixes back in (resid_mix)
    documents: DocumentAttention | None = None  # this batch's document-isolated attention (one layout for all layers)
    value_embed: Tensor | None = None  # (batch, seq, kv_dim) value embeddings, already globally scaled
    first_values: Tensor | None = None  # the first attention layer's values (value residual)
