"""Building blocks shared by the model modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Parameters whose names contain one of these substrings are "control" tensors: they go to Adam
# (not Muon), stay fp32 even when the body runs in bf16, and are exported as float. The first nine
# are the baseline's; the rest name the small gates and mixing weights of the record techniques.
CONTROL_TENSOR_NAME_PATTERNS: tuple[str, ...] = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
    "q_gain", "skip_weight", "skip_weights",
    "skip_gates", "attn_gate_w", "attn_gate_b", "smear_", "parallel_resid", "parallel_post", "lane_route", "lane_merge",
    "vr_lambda", "ve_scale", "ve_layer_scale", "bigram_scale",
)


def is_control_name(name: str) -> bool:
    return any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS)


def rms_norm(x: Tensor) -> Tensor:
    """RMS normalisation over the last dimension, with no learnable weight."""
    return F.rms_norm(x, (x.size(-1),))


class ScaledRMSNorm:
    """`rms_norm(x) · scale`: the "LN scale" of the records, 1/sqrt(i+1) for physical layer i."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),)) * self.scale


def sublayer_norm(layer: int, ln_scale: bool):
    """The norm feeding a block's sublayers: plain RMSNorm unless LN scale is on."""
    return ScaledRMSNorm(1.0 / (layer + 1) ** 0.5) if ln_scale else rms_norm


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
