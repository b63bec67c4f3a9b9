"""Initialisations beyond PyTorch's defaults (TECHNIQUES.md §4.19)."""

from __future__ import annotations

import torch
from torch import nn

from pgolf.model.layers import CastedLinear


@torch.no_grad()
def orthogonal_init(model: nn.Module, min_dim: int = 64) -> None:
    """OrthoInit: every Linear weight with both dims ≥ `min_dim` becomes a (semi-)orthogonal matrix
    (gain 1); zero-initialised projections stay zero, embeddings keep their own init."""
    for module in model.modules():
        if isinstance(module, CastedLinear) and not module.zero_init and min(module.weight.shape) >= min_dim:
            nn.init.orthogonal_(module.weight, gain=1.0)
