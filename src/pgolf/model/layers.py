"""Building blocks shared by the model modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Parameters whose names contain one of these substrings are "control" tensors: they go to Adam
# (not Muon), stay fp32 even when the body runs in bf16, and are exported as float.
CONTROL_TENSOR_NAME_PATTERNS: tuple[str, ...] = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
    "q_gain", "skip_weight", "skip_weights",
)


def is_control_name(name: str) -> bool:
    return any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS)


def rms_norm(x: Tensor) -> Tensor:
    """RMS normalisation over the last dimension, with no learnable weight."""
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    """A bias-free Linear whose (fp32) weight is cast to the activation dtype at call time."""

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.zero_init = zero_init
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


def row_scale(vector: Tensor, like: Tensor) -> Tensor:
    """A per-channel parameter cast and shaped to broadcast over (batch, seq, dim)."""
    return vector.to(dtype=like.dtype)[None, None, :]


def restore_fp32_controls(module: nn.Module) -> None:
    """After `module.bfloat16()`: matrices of Linear layers and control/low-dim params back to fp32."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, CastedLinear):
                sub.float()
        for name, param in module.named_parameters():
            if (param.ndim < 2 or is_control_name(name)) and param.dtype != torch.float32:
                param.data = param.data.float()
