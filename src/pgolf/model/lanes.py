"""Parallel residual lanes (TECHNIQUES.md §4.20): the three published parallel block forms, how U-Net
skips enter two lanes, and how the final lanes become one hidden tensor.

Parallel blocks keep two lanes (an attention lane and an MLP lane) and accept a single tensor at the
first parallel layer, which they split into two equal lanes. In forms (E) and PROTEUS attention and MLP
read the lanes as they were when the block started, so neither sublayer sees the other's output of the
same layer; in the #1204 form the MLP reads its lane after attention wrote to it.

Chosen once per model from the config (`parallel_residual`, `skip_lanes`, `lane_merge`); the forward
pass only calls them. Imported only by models with `model.parallel_residual` on, so only their runs ship it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pgolf.model.attention import CausalSelfAttention
from pgolf.model.blocks import Block, Lanes, Norm, State, mix_x0
from pgolf.model.context import ForwardContext
from pgolf.model.layers import declares_controls, rms_norm, row_scale
from pgolf.model.mlp import MLP

Combine = Callable[[Tensor], Tensor]
SkipPolicy = Callable[[State, Combine, bool], State]


def _lanes(state: State) -> Lanes:
    return state if isinstance(state, tuple) else (state, state)


@declares_controls("parallel_resid", "parallel_post")
class RecordParallelBlock(Block):
    """Form (E) of PR #1529/#1530 and the SOTA: two lanes, attention from mix(lane0, x0), MLP from lane1,
    both outputs written into both lanes:

        lane_k ← ρ[k]·lane_k + π[0, k]·a + π[1, k]·m      ρ = parallel_resid (init 1.1), π = parallel_post (init 1)
    """

    def __init__(self, attn: CausalSelfAttention, mlp: MLP, dim: int, norm: Norm = rms_norm) -> None:
        super().__init__(attn, mlp, dim, norm)
        self.parallel_resid = nn.Parameter(torch.full((2,), 1.1, dtype=torch.float32))
        self.parallel_post = nn.Parameter(torch.ones(2, 2, dtype=torch.float32))  # [sublayer, lane]

    def forward(self, state: State, ctx: ForwardContext, mlp: MLP | None = None) -> Lanes:
        lane0, lane1 = _lanes(state)
        a = row_scale(self.attn_scale, lane0) * self.attn(self.norm(mix_x0(self.resid_mix, lane0, ctx.x0)), ctx)
        m = row_scale(self.mlp_scale, lane1) * (self.mlp if mlp is None else mlp)(self.norm(lane1))
        rho = self.parallel_resid.to(lane0.dtype)
        post = self.parallel_post.to(lane0.dtype)
        return (rho[0] * lane0 + post[0, 0] * a + post[1, 0] * m,
                rho[1] * lane1 + post[0, 1] * a + post[1, 1] * m)


@declares_controls("resid_mix_mlp", "lane_route")
class ProteusParallelBlock(Block):
    """Form (B), PROTEUS (PR #1289 / #1425): attention reads mix(x_attn, x0), the MLP reads mix_mlp(x_mlp, x0)
    (`resid_mix_mlp`, per dimension, init (1, 0)); a 4-element `lane_route` r (init 1) routes the outputs
    into the lanes as they entered the block (not the mixed reads):

        x_attn ← x_attn + r0·Δa + r2·Δm      x_mlp ← x_mlp + r1·Δa + r3·Δm
    """

    def __init__(self, attn: CausalSelfAttention, mlp: MLP, dim: int, norm: Norm = rms_norm) -> None:
        super().__init__(attn, mlp, dim, norm)
        self.resid_mix_mlp = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())
        self.lane_route = nn.Parameter(torch.ones(4, dtype=torch.float32))

    def forward(self, state: State, ctx: ForwardContext, mlp: MLP | None = None) -> Lanes:
        x_attn, x_mlp = _lanes(state)
        attn_in = mix_x0(self.resid_mix, x_attn, ctx.x0)
        mlp_in = mix_x0(self.resid_mix_mlp, x_mlp, ctx.x0)
        da = row_scale(self.attn_scale, attn_in) * self.attn(self.norm(attn_in), ctx)
        dm = row_scale(self.mlp_scale, mlp_in) * (self.mlp if mlp is None else mlp)(self.norm(mlp_in))
        r = self.lane_route.to(attn_in.dtype)
        return x_attn + r[0] * da + r[2] * dm, x_mlp + r[1] * da + r[3] * dm


class SequentialParallelBlock(Block):
    """The form of PR #1204 (modded-nanogpt #230): each sublayer writes into both lanes in turn, and the MLP
    reads the MLP lane after attention wrote to it. Both sublayers read through `resid_mix`:

        a = Attn(mix(lane0, x0))      lane_k ← ρ[0]·lane_k + π[0, k]·a
        m = MLP(mix(lane1, x0))       lane_k ← ρ[1]·lane_k + π[1, k]·m

    ρ = parallel_resid, one per sublayer, init √1.1 (so one block scales a lane by 1.1); π = parallel_post, init 1.
    """

    def __init__(self, attn: CausalSelfAttention, mlp: MLP, dim: int, norm: Norm = rms_norm) -> None:
        super().__init__(attn, mlp, dim, norm)
        self.parallel_resid = nn.Parameter(torch.full((2,), 1.1 ** 0.5, dtype=torch.float32))  # [sublayer]
        self.parallel_post = nn.Parameter(torch.ones(2, 2, dtype=torch.float32))  # [sublayer, lane]

    def forward(self, state: State, ctx: ForwardContext, mlp: MLP | None = None) -> Lanes:
        lane0, lane1 = _lanes(state)
        rho = self.parallel_resid.to(lane0.dtype)
        post = self.parallel_post.to(lane0.dtype)
        a = row_scale(self.attn_scale, lane0) * self.attn(self.norm(mix_x0(self.resid_mix, lane0, ctx.x0)), ctx)
        lane0, lane1 = rho[0] * lane0 + post[0, 0] * a, rho[0] * lane1 + post[0, 1] * a
        mlp_in = self.norm(mix_x0(self.resid_mix, lane1, ctx.x0))
        m = row_scale(self.mlp_scale, lane1) * (self.mlp if mlp is None else mlp)(mlp_in)
        return rho[1] * lane0 + post[1, 0] * m, rho[1] * lane1 + post[1, 1] * m


PARALLEL_BLOCKS: dict[str, type[Block]] = {
    "record": RecordParallelBlock, "proteus": ProteusParallelBlock, "pr1204": SequentialParallelBlock,
}


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
