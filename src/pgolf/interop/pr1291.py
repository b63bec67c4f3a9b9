"""PR #1291 (preset `pr1291`, on the #1218 base): unbanked per-layer Linears under pgolf's own names; the
shared value embedding is `ve_shared` and its per-layer scales are (1,)-shaped `ve_layer_scales.k`."""

from __future__ import annotations

from pgolf.config import ModelConfig, parse_layer_list
from pgolf.interop.convert import pgolf_shapes
from pgolf.interop.registry import Link, RecordFormat, register, renamed, same

_VALUE_EMBED = {"ve_shared.embed.weight": "value_embed.table", "ve_shared.proj.weight": "value_embed.proj.weight",
                "ve_shared.scale": "value_embed.ve_scale"}


def links(cfg: ModelConfig) -> list[Link]:
    layers = parse_layer_list(cfg.value_embed_layers)
    layer_scales = {f"blocks.{layer}.attn.value_embed_mix.ve_layer_scale": k for k, layer in enumerate(layers)}
    special = set(_VALUE_EMBED.values()) | set(layer_scales)
    out = same(*(name for name in pgolf_shapes(cfg) if name not in special))
    out += [renamed(record, ours) for record, ours in _VALUE_EMBED.items()]
    out += [renamed(f"ve_layer_scales.{k}", name, record_shape=(1,)) for name, k in layer_scales.items()]
    return out


FORMAT = register(RecordFormat(preset="pr1291", record="pr1291", links=links))
