"""The baseline's parameter partition: Adam for embeddings, head and control tensors, Muon for matrices."""

from __future__ import annotations

import torch

from pgolf.config import Config
from pgolf.model.gpt import GPT
from pgolf.optim.muon import Muon
from pgolf.precision import autocast_dtype


def _adam(params: list[torch.Tensor], lr: float, cfg: Config, fused: bool) -> torch.optim.Adam:
    group = {"params": params, "lr": lr, "base_lr": lr}
    o = cfg.optim
    return torch.optim.Adam([group], betas=(o.beta1, o.beta2), eps=o.adam_eps, fused=fused)


def ns_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """`auto`: Newton–Schulz runs in the compute dtype (bf16 as the baseline; fp32 for fp32 runs)."""
    choice = cfg.optim.muon_ns_dtype
    if choice == "auto":
        return autocast_dtype(cfg, device) or torch.float32
    return torch.bfloat16 if choice == "bf16" else torch.float32


def build_optimizers(model: GPT, cfg: Config, device: torch.device) -> tuple[list[torch.optim.Optimizer], Muon]:
    """Return all optimizers (token, [head], muon, scalar order as the baseline) and the Muon one."""
    groups = model.optimizer_groups()  # the partition lives with the model, which knows its techniques
    matrix, scalar = groups.matrix, groups.scalar
    fused = device.type == "cuda"
    o = cfg.optim
    token_lr = o.tied_embed_lr if cfg.model.tie_embeddings else o.embed_lr
    optimizers: list[torch.optim.Optimizer] = [_adam(groups.token, token_lr, cfg, fused)]
    if groups.head:
        optimizers.append(_adam(groups.head, o.head_lr, cfg, fused))
    muon = Muon(matrix, lr=o.matrix_lr, momentum=o.muon_momentum, backend_steps=o.muon_backend_steps,
                ns_dtype=ns_dtype(cfg, device))
    for group in muon.param_groups:
        group["base_lr"] = o.matrix_lr
    optimizers += [muon, _adam(scalar, o.scalar_lr, cfg, fused)]
    return optimizers, muon


def set_learning_rates(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * multiplier
