"""How U-Net skips enter a residual state and how the final state becomes one hidden tensor.

Chosen once per model from the config (`skip_policy`, `final_merge`); the forward pass only calls them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pgolf.model.blocks import State
from pgolf.model.layers import declares_controls, row_scale

Combine = Callable[[Tensor], Tensor]


def add_skip(x: Tensor, skip: Tensor, weight: Tensor, gate: Tensor | None) -> Tensor:
    """x + w⊙skip (baseline), or with a skip gate lerp(w⊙skip, x, σ(g)) = σ(g)⊙x + (1−σ(g))⊙w⊙skip."""
    scaled = row_scale(weight, x) * skip
    if gate is None:
        return x + scaled
    return torch.lerp(scaled, x, torch.sigmoid(row_scale(gate, x)))


def skip_into_state(state: State, combine: Combine) -> State:
    """Serial state: the skip joins the stream."""
    return combine(state)


def skip_into_lane0(state: State, combine: Combine) -> State:
    """Record form (E): skips join the attention lane only."""
    if isinstance(state, tuple):
        return combine(state[0]), state[1]
    return combine(state)


def skip_into_both_lanes(state: State, combine: Combine) -> State:
    """PROTEUS form (B): skips join both lanes."""
    if isinstance(state, tuple):
        return combine(state[0]), combine(state[1])
    return combine(state)


SKIP_POLICIES: dict[str, Callable[[State, Combine], State]] = {
    "off": skip_into_state, "record": skip_into_lane0, "proteus": skip_into_both_lanes,
}


def single_lane(state: State) -> Tensor:
    return state  # type: ignore[return-value]


def mean_of_lanes(state: State) -> Tensor:
    """Record form: 0.5·(lane0 + lane1)."""
    return 0.5 * (state[0] + state[1])


@declares_controls("lane_merge")
class LaneMerge(nn.Module):
    """PROTEUS: μ·x_attn + (1−μ)·x_mlp with μ = σ(lane_merge), lane_merge init 0 (μ = 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.lane_merge = nn.Parameter(torch.zeros((), dtype=torch.float32))

    def forward(self, state: State) -> Tensor:
        mu = torch.sigmoid(self.lane_merge).to(state[0].dtype)
        return mu * state[0] + (1 - mu) * state[1]
