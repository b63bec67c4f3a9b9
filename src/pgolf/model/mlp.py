"""Feed-forward block and its activation registry."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.model.layers import CastedLinear

Activation = Callable[[Tensor], Tensor]


def relu2(h: Tensor) -> Tensor:
    """The baseline's relu(h)²."""
    return torch.relu(h).square()


def leaky_relu2(h: Tensor, slope: float) -> Tensor:
    """leaky_relu(h, slope)²: negative pre-activations give slope²·h² and keep a gradient (PR #493)."""
    return F.leaky_relu(h, negative_slope=slope).square()


# name → factory(leaky_slope) → activation. config._CHOICES["model.activation"] lists the same names.
ACTIVATIONS: dict[str, Callable[[float], Activation]] = {
    "relu2": lambda slope: relu2,
    "leaky_relu2": lambda slope: partial(leaky_relu2, slope=slope),
}


def get_activation(name: str, leaky_slope: float = 0.5, fused: bool = False) -> Activation:
    """`fused`: the Triton LeakyReLU² op on CUDA tensors (relu² is its slope-0 case); the reference elsewhere."""
    if fused and name in ACTIVATIONS:
        from pgolf.model.kernels.leaky_relu2 import leaky_relu2_fused
        return partial(leaky_relu2_fused, slope=leaky_slope if name == "leaky_relu2" else 0.0)
    try:
        return ACTIVATIONS[name](leaky_slope)
    except KeyError:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str, leaky_slope: float = 0.5, fused: bool = False) -> None:
        super().__init__()
        self.fc = CastedLinear(dim, hidden)
        self.proj = CastedLinear(hidden, dim, zero_init=True)
        self.activation = get_activation(activation, leaky_slope, fused)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.activation(self.fc(x)))
