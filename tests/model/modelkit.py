"""Helpers for the model tests: a small GQA model with techniques switched on, active weights."""

from __future__ import annotations

from typing import Any

import torch

from pgolf.config import ModelConfig, load_config
from pgolf.model.blocks import Block
from pgolf.model.gpt import GPT, build_model

# 4 layers so that encoder, decoder, recurrence and parallel lanes all exist; GQA with 2 query heads
# per KV head so that XSA's group broadcast is exercised.
SMALL_MODEL: dict[str, Any] = {
    "model.vocab_size": 1024, "model.num_layers": 4, "model.model_dim": 64, "model.num_heads": 4,
    "model.num_kv_heads": 2,
}


def small_config(**model_overrides: Any) -> ModelConfig:
    values = dict(SMALL_MODEL)
    values.update({k if k.startswith("model.") else f"model.{k}": v for k, v in model_overrides.items()})
    return load_config("tiny", env={}, overrides=[f"{k}={v}" for k, v in values.items()]).model


def active_model(cfg: ModelConfig, seed: int = 0, noise: float = 0.05) -> GPT:
    """Build the model and move every parameter off its init, so zero-init projections, identity gates
    and zero lambdas all take part (a technique at its identity init would pass any invariant)."""
    torch.manual_seed(seed)
    model = build_model(cfg, torch.device("cpu"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model.eval()


def blocks(model: GPT) -> list[Block]:
    """`model.blocks` as the Blocks they are (an nn.ModuleList hands its items back as plain Modules)."""
    found = list(model.blocks)
    assert all(isinstance(b, Block) for b in found)
    return [b for b in found if isinstance(b, Block)]


def random_ids(batch: int, seq: int, vocab: int = 1024, bos_id: int = 1, seed: int = 0) -> torch.Tensor:
    """Token ids with no accidental BOS."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (batch, seq), generator=gen)
    assert not (ids == bos_id).any()
    return ids
