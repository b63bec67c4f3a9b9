"""PR #1289 PROTEUS v1.6 (preset `proteus_v16`): the four Parallel-Muon shape banks of PR #549, BigramHash,
SmearGate v1, the shared value embedding with per-layer (1,) scales, PROTEUS lanes (`route` per parallel block,
a scalar `lane_merge`) and the untied MLPs of the repeated layers (`recur_mlp_up/down.<layer>`)."""

from __future__ import annotations

from types import ModuleType

from torch import nn

from pgolf.config import ModelConfig, parse_layer_list
from pgolf.interop.pr635 import bank_slices, banks, features
from pgolf.interop.registry import Link, RecordFormat, register, renamed, same
from pgolf.model.gpt import is_parallel_layer


def value_embeddings(cfg: ModelConfig) -> list[Link]:
    """The shared table `ve_shared` and one (1,)-shaped `ve_layer_scales.<k>` per VE layer, in layer order."""
    out = [renamed("ve_shared.embed.weight", "value_embed.table"),
           renamed("ve_shared.proj.weight", "value_embed.proj.weight"),
           renamed("ve_shared.scale", "value_embed.ve_scale")]
    for k, layer in enumerate(parse_layer_list(cfg.value_embed_layers)):
        out.append(renamed(f"ve_layer_scales.{k}", f"blocks.{layer}.attn.value_embed_mix.ve_layer_scale", (1,)))
    return out


def proteus_block_controls(cfg: ModelConfig) -> list[Link]:
    """Per-block scalars; parallel blocks add `resid_mix_mlp` and the 4-element `route` (pgolf: `lane_route`)."""
    out: list[Link] = []
    for i in range(cfg.num_layers):
        p = f"blocks.{i}"
        out += same(f"{p}.attn.q_gain", f"{p}.attn_scale", f"{p}.mlp_scale", f"{p}.resid_mix")
        if is_parallel_layer(cfg, i):
            out += [*same(f"{p}.resid_mix_mlp"), renamed(f"{p}.route", f"{p}.lane_route")]
    return out


def _recurrence(cfg: ModelConfig) -> list[Link]:
    layers = range(cfg.recur_start, cfg.recur_end + 1) if cfg.recur_untie_mlp else range(0)
    return ([renamed(f"recur_mlp_up.{i}", f"recur_mlps.{i}_1.fc.weight") for i in layers]
            + [renamed(f"recur_mlp_down.{i}", f"recur_mlps.{i}_1.proj.weight") for i in layers])


def _rest(cfg: ModelConfig) -> list[Link]:
    return (value_embeddings(cfg) + proteus_block_controls(cfg) + _recurrence(cfg)
            + [renamed("lane_merge", "lane_merge.lane_merge")])


def links(cfg: ModelConfig) -> list[Link]:
    return features() + banks(cfg) + _rest(cfg)


def unbanked(cfg: ModelConfig) -> list[Link]:
    """After the record's `_unbank_state_dict`: every bank slice under pgolf's own per-layer name."""
    return features() + bank_slices(cfg) + _rest(cfg)


# The PR's run: PARALLEL_START_LAYER=7 and RECUR_LAYERS=4,5 (its README); vocab 1024 (it ran Scylla's 998 tokens).
RUN_ENV = {"PARALLEL_START_LAYER": "7", "RECUR_LAYERS": "4,5"}


def build_record(rec: ModuleType) -> nn.Module:
    h = rec.Hyperparameters()
    return rec.GPT(
        vocab_size=h.vocab_size, num_layers=h.num_layers, model_dim=h.model_dim, num_heads=h.num_heads,
        num_kv_heads=h.num_kv_heads, mlp_mult=h.mlp_mult, tie_embeddings=h.tie_embeddings,
        tied_embed_init_std=h.tied_embed_init_std, logit_softcap=h.logit_softcap, rope_base=h.rope_base,
        qk_gain_init=h.qk_gain_init, bigram_vocab_size=h.bigram_vocab_size, bigram_dim=h.bigram_dim,
        xsa_last_n=h.xsa_last_n, rope_dims=h.rope_dims, ln_scale=h.ln_scale, ve_enabled=h.ve_enabled,
        ve_dim=h.ve_dim, ve_layers=h.ve_layers, activation_mode=h.activation_mode,
        activation_neg_slope=h.activation_neg_slope, parallel_start_layer=h.parallel_start_layer,
        recur_layers=h.recur_layers, recur_untie_mlp=h.recur_untie_mlp)


FORMAT = register(RecordFormat(preset="proteus_v16", record="proteus_v16", links=links, unbanked=unbanked,
                               build_record=build_record, env=RUN_ENV))
