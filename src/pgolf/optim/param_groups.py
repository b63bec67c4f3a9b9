"""The one table of which parameters each optimizer trains, at which learning rate and decay.

Roles, in the baseline's optimizer order: `token` (embedding tables, Adam), `head` (an untied
lm_head, Adam), `matrix` (2-D weights, Muon), `scalar` (control tensors, gates, norms' scales, Adam), and
`route` (PR #1289's lane routes, Adam updating twice per step) only with `optim.route_adam_updates` > 1.
The model decides the roles (it knows its matrices and declared control parameters); the config
gives each role its optimizer settings. The optimizer factory and Parallel Muon both read this table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor, nn

from pgolf.config import Config
from pgolf.model.gpt import GPT

ADAM = "adam"
MUON = "muon"


@dataclass(frozen=True)
class ParamGroup:
    role: str  # token | head | matrix | scalar | route
    optimizer: str  # adam | muon
    names: tuple[str, ...]
    params: tuple[nn.Parameter, ...]
    lr: float
    weight_decay: float
    updates: int = 1  # Adam updates per step from one gradient (the `route` row: optim.route_adam_updates)


def adam_matrices(cfg: Config) -> frozenset[str]:
    """Matrices a record trains with its scalar Adam instead of Muon."""
    chosen = {"bigram.proj.weight": cfg.optim.bigram_proj_adam, "value_embed.proj.weight": cfg.optim.ve_proj_adam}
    return frozenset(name for name, to_adam in chosen.items() if to_adam)


def param_table(model: GPT, cfg: Config) -> tuple[ParamGroup, ...]:
    """Every trainable parameter in exactly one group; the head group only for an untied head."""
    o = cfg.optim
    roles = model.optimizer_groups()
    names = {id(p): name for name, p in model.named_parameters()}
    to_adam = adam_matrices(cfg)
    by_role = {"token": roles.token, "head": roles.head,
               "matrix": [p for p in roles.matrix if names[id(p)] not in to_adam],
               "scalar": [*roles.scalar, *sorted((p for p in roles.matrix if names[id(p)] in to_adam),
                                                 key=lambda p: names[id(p)])]}
    settings = {
        "token": (ADAM, o.tied_embed_lr if cfg.model.tie_embeddings else o.embed_lr, o.embed_weight_decay),
        "head": (ADAM, o.head_lr, o.embed_weight_decay),
        "matrix": (MUON, o.matrix_lr, o.muon_weight_decay),
        "scalar": (ADAM, o.scalar_lr, o.adam_weight_decay),
    }
    table = []
    for role, (optimizer, lr, weight_decay) in settings.items():
        params = tuple(by_role[role])
        if role == "head" and not params:
            continue
        table.append(ParamGroup(role, optimizer, tuple(names[id(p)] for p in params), params, lr, weight_decay))
    return _split_routes(tuple(table), o.route_adam_updates)


def _split_routes(table: tuple[ParamGroup, ...], updates: int) -> tuple[ParamGroup, ...]:
    """With `updates` > 1, the PROTEUS `lane_route` tensors leave the scalar row for a `route` row of their own
    (same LR and decay) whose Adam updates them `updates` times per step (PR #1289, `RepeatedAdamW`)."""
    scalar = group_of(table, "scalar")
    routes = [i for i, name in enumerate(scalar.names) if name.endswith(".lane_route")]
    if updates == 1 or not routes:
        return table
    keep = [i for i in range(len(scalar.names)) if i not in routes]
    rest = replace(scalar, names=tuple(scalar.names[i] for i in keep), params=tuple(scalar.params[i] for i in keep))
    route = replace(scalar, role="route", names=tuple(scalar.names[i] for i in routes),
                    params=tuple(scalar.params[i] for i in routes), updates=updates)
    return tuple(g for old in table for g in ((rest, route) if old is scalar else (old,)))


def group_of(table: tuple[ParamGroup, ...], role: str) -> ParamGroup:
    return next(g for g in table if g.role == role)


def replicated(table: tuple[ParamGroup, ...]) -> list[Tensor]:
    """The parameters Adam steps: their gradients are averaged whole (Parallel Muon shards only matrices)."""
    return [p for g in table if g.optimizer == ADAM for p in g.params]
