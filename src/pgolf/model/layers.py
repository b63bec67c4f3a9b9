"""Building blocks shared by the model modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ModuleType = TypeVar("ModuleType", bound=type[nn.Module])


def declares_controls(*names: str) -> Callable[[ModuleType], ModuleType]:
    """Class decorator: the module's parameters `names` are control tensors.

    Control tensors (scales, gates, mixing weights) go to Adam, never Muon, even when 2-D; they stay
    fp32 when the body is stored in bf16. A subclass adds to its base's declaration.
    """
    def declare(cls: ModuleType) -> ModuleType:
        cls.control_params = (*getattr(cls, "control_params", ()), *names)  # type: ignore[attr-defined]
        return cls
    return declare


def control_parameter_names(module: nn.Module) -> set[str]:
    """Qualified names of the control parameters declared by `module` and its submodules."""
    found = set()
    for prefix, sub in module.named_modules():
        for attr in getattr(sub, "control_params", ()):
            if isinstance(getattr(sub, attr, None), nn.Parameter):
                found.add(f"{prefix}.{attr}" if prefix else attr)
    return found


def rms_norm(x: Tensor) -> Tensor:
    """RMS normalisation over the last dimension, with no learnable weight."""
    return F.rms_norm(x, (x.size(-1),))


class ScaledRMSNorm:
    """`rms_norm(x) · scale`: the "LN scale" of the records, 1/sqrt(i+1) for physical layer i."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),)) * self.scale


def sublayer_norm(layer: int, ln_scale: bool) -> Callable[[Tensor], Tensor]:
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
    controls = control_parameter_names(module)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, CastedLinear):
                sub.float()
        for name, param in module.named_parameters():
            if (param.ndim < 2 or name in controls) and param.dtype != torch.float32:
                param.data = param.data.float()
