"""How U-Net skips enter a residual state and how the final state becomes one hidden tensor.

Chosen once per model from the config (`skip_lanes`, `parallel_residual`, `lane_merge`); the forward
pass only calls them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pgolf.model.blocks import State
from pgolf.model.layers import declares_controls, row_scale

Combine = Callable[[Tensor], Tensor]
SkipPolicy = Callable[[State, Combine, bool], State]


def add_skip(x: Tensor, skip: Tensor, weight: Tensor, gate: Tensor | None) -> Tensor:
    """x + w⊙skip (baseline), or with a skip gate lerp(w⊙skip, x, σ(g)) = σ(g)⊙x + (1−σ(g))⊙w⊙skip."""
    scaled = row_scale(weight, x) * skip
    if gate is None:
        return x + scaled
    return torch.lerp(scaled, x, torch.sigmoid(row_scale(gate, x)))


def skip_into_attention_lane(state: State, combine: Combine, parallel_next: bool) -> State:
    """#1425 and the SOTA: the skip joins the attention lane only. Before the first parallel block the
    state is still one tensor: the MLP lane starts from it as it was before the skip."""
    if isinstance(state, tuple):
        return combine(state[0]), state[1]
    return (combine(state), state) if parallel_next else combine(state)


def skip_into_both_lanes(state: State, combine: Combine, parallel_next: bool) -> State:
    """#1289 and #1204: the skip joins both lanes."""
    if isinstance(state, tuple):
        return combine(state[0]), combine(state[1])
    return combine(state)


SKIP_POLICIES: dict[str, SkipPolicy] = {"attn": skip_into_attention_lane, "both": skip_into_both_lanes}


def single_lane(state: State) -> Tensor:
    return state  # type: ignore[return-value]


def mean_of_lanes(state: State) -> Tensor:
    """Record forms (E) and #1204: 0.5·(lane0 + lane1)."""
    return 0.5 * (state[0] + state[1])


def _identity(t: Tensor) -> Tensor:
    return t


@declares_controls("lane_merge")
class LaneMerge(nn.Module):
    """PROTEUS: μ·x_attn + (1−μ)·x_mlp with a learned scalar θ (`lane_merge`, init `init`):
    μ = θ in #1289 (`linear`), μ = σ(θ) in #1425 (`sigmoid`); both records start θ at 0.5."""

    def __init__(self, form: str, init: float) -> None:
        super().__init__()
        self.lane_merge = nn.Parameter(torch.tensor(init, dtype=torch.float32))
        self._weight = torch.sigmoid if form == "sigmoid" else _identity

    def forward(self, state: State) -> Tensor:
        mu = self._weight(self.lane_merge).to(state[0].dtype)
        return mu * state[0] + (1 - mu) * state[1]
