"""The official baseline: pgolf's parameter names and shapes are the script's own (no banks)."""

from __future__ import annotations

from types import ModuleType

from torch import nn

from pgolf.config import ModelConfig
from pgolf.interop.convert import pgolf_shapes
from pgolf.interop.registry import Link, RecordFormat, register, same


def links(cfg: ModelConfig) -> list[Link]:
    return same(*pgolf_shapes(cfg))


def build_record(rec: ModuleType) -> nn.Module:
    h = rec.Hyperparameters()
    return rec.GPT(vocab_size=h.vocab_size, num_layers=h.num_layers, model_dim=h.model_dim, num_heads=h.num_heads,
                   num_kv_heads=h.num_kv_heads, mlp_mult=h.mlp_mult, tie_embeddings=h.tie_embeddings,
                   tied_embed_init_std=h.tied_embed_init_std, logit_softcap=h.logit_softcap, rope_base=h.rope_base,
                   qk_gain_init=h.qk_gain_init)


FORMAT = register(RecordFormat(preset="baseline", record="baseline", links=links, build_record=build_record))
