"""Feed-forward block and its activation registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pgolf.model.layers import CastedLinear

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu2": lambda h: torch.relu(h).square(),
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.fc = CastedLinear(dim, hidden)
        self.proj = CastedLinear(hidden, dim, zero_init=True)
        self.activation = get_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.activation(self.fc(x)))
