"""Proxy mode: approximate an N-GPU run on fewer GPUs (USER_NEEDS need 8).

Per-GPU throughput of these models is nearly flat from 1 to 8 H100s (PERF_ANCHORS Table 3), so a run
on `w` GPUs that keeps the global batch (more gradient accumulation) and gets `N / w` times the
wallclock reaches about the step count of the N-GPU run, with the same batches and schedule.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

from pgolf.config import Config, resolve_grad_accum, validate


@dataclass(frozen=True)
class ProxyInfo:
    """What the proxy changed, recorded in the run's manifest and summary."""

    target_world_size: int
    world_size: int
    time_scale: float
    grad_accum_steps: int
    target_grad_accum_steps: int
    max_wallclock_seconds: float
    target_max_wallclock_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        cap = (f"wallclock cap {self.target_max_wallclock_seconds:g}s × {self.time_scale:g} = "
               f"{self.max_wallclock_seconds:g}s" if self.max_wallclock_seconds > 0 else "no wallclock cap")
        return (f"proxy: emulating {self.target_world_size} GPUs on {self.world_size}; grad_accum "
                f"{self.target_grad_accum_steps} → {self.grad_accum_steps} (same global batch); {cap}")


def apply_proxy(cfg: Config, world_size: int) -> tuple[Config, ProxyInfo | None]:
    """The equivalent plain config for this world size (proxy switched off), and what changed.

    The returned config has `proxy_world_size = 0`, explicit accumulation and the scaled cap, so
    re-running it (e.g. `pgolf reproduce`) does not scale twice.
    """
    target = cfg.train.proxy_world_size
    if target == 0:
        return cfg, None
    scale = target / world_size
    target_accum = resolve_grad_accum(cfg, target)
    proxied = copy.deepcopy(cfg)
    proxied.train.proxy_world_size = 0
    proxied.train.grad_accum_steps = target_accum * target // world_size
    proxied.train.max_wallclock_seconds = cfg.train.max_wallclock_seconds * scale
    validate(proxied, world_size=world_size)
    info = ProxyInfo(target_world_size=target, world_size=world_size, time_scale=scale,
                     grad_accum_steps=proxied.train.grad_accum_steps, target_grad_accum_steps=target_accum,
                     max_wallclock_seconds=proxied.train.max_wallclock_seconds,
                     target_max_wallclock_seconds=cfg.train.max_wallclock_seconds)
    return proxied, info
