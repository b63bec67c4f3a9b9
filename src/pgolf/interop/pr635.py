"""PR #635 (preset `pr635`): the four Parallel-Muon shape banks, BigramHash and SmearGate under their
record names, the gated-attention Linear (weight and bias), and a value-residual λ in every layer."""

from __future__ import annotations

from types import ModuleType

from torch import nn

from pgolf.config import ModelConfig
from pgolf.interop.registry import (
    Link,
    RecordFormat,
    bank,
    layer_names,
    register,
    renamed,
    same,
)

# (record bank, pgolf per-layer names in bank order): q then out; k then v; MLP up; MLP down
BANKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("qo_bank", ("blocks.{}.attn.c_q.weight", "blocks.{}.attn.proj.weight")),
    ("kv_bank", ("blocks.{}.attn.c_k.weight", "blocks.{}.attn.c_v.weight")),
    ("mlp_up_bank", ("blocks.{}.mlp.fc.weight",)),
    ("mlp_down_bank", ("blocks.{}.mlp.proj.weight",)),
)


def features() -> list[Link]:
    """Embedding-side tensors of the PR #549 lineage: token table, skips, BigramHash and SmearGate v1."""
    return [*same("tok_emb.weight", "skip_weights"),
            renamed("bigram.embed.weight", "bigram.table"),
            *same("bigram.proj.weight"),
            renamed("bigram.scale", "bigram.bigram_scale"),
            renamed("smear.gate", "smear.smear_gate")]


def _block_controls(cfg: ModelConfig) -> list[Link]:
    out: list[Link] = []
    for i in range(cfg.num_layers):
        p = f"blocks.{i}"
        out += same(f"{p}.attn.q_gain", f"{p}.attn_scale", f"{p}.mlp_scale", f"{p}.resid_mix")
        out += [renamed(f"{p}.attn.attn_gate.weight", f"{p}.attn.gate.attn_gate_w"),
                renamed(f"{p}.attn.attn_gate.bias", f"{p}.attn.gate.attn_gate_b"),
                renamed(f"{p}.attn.vr_lambda", f"{p}.attn.value_residual.vr_lambda")]
    return out


def banks(cfg: ModelConfig) -> list[Link]:
    """The four Parallel-Muon shape banks of the PR #549 lineage (#635, #1289, #1855)."""
    return [bank(name, [n for template in templates for n in layer_names(cfg, template)]) for name, templates in BANKS]


def bank_slices(cfg: ModelConfig) -> list[Link]:
    """The banks after the records' `_unbank_state_dict`: every slice under pgolf's own per-layer name."""
    return same(*(n for _, templates in BANKS for template in templates for n in layer_names(cfg, template)))


def links(cfg: ModelConfig) -> list[Link]:
    return features() + banks(cfg) + _block_controls(cfg)


def unbanked(cfg: ModelConfig) -> list[Link]:
    return features() + bank_slices(cfg) + _block_controls(cfg)


def build_record(rec: ModuleType) -> nn.Module:
    h = rec.Hyperparameters()
    return rec.GPT(
        vocab_size=h.vocab_size, num_layers=h.num_layers, model_dim=h.model_dim, num_heads=h.num_heads,
        num_kv_heads=h.num_kv_heads, mlp_mult=h.mlp_mult, tie_embeddings=h.tie_embeddings,
        tied_embed_init_std=h.tied_embed_init_std, logit_softcap=h.logit_softcap, rope_base=h.rope_base,
        qk_gain_init=h.qk_gain_init, bigram_vocab_size=h.bigram_vocab_size if h.use_bigramhash else 0,
        bigram_dim=h.bigram_dim, xsa_last_n=h.xsa_last_n, rope_dims=h.rope_dims,
        gated_attention=h.use_gated_attention, value_residual=h.use_value_residual, use_smeargate=h.use_smeargate)


FORMAT = register(RecordFormat(preset="pr635", record="pr635", links=links, unbanked=unbanked,
                               build_record=build_record))
