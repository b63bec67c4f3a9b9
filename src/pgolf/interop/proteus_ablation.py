"""PR #1425 (preset `proteus_ablation`): the PR #1218 stack, unbanked (every Linear under pgolf's own name),
with skip gates, the shared value embedding and PROTEUS lanes (`route`, scalar `lane_merge`) from PR #1289."""

from __future__ import annotations

from types import ModuleType

from torch import nn

from pgolf.config import ModelConfig
from pgolf.interop.proteus_v16 import proteus_block_controls, value_embeddings
from pgolf.interop.registry import (
    Link,
    RecordFormat,
    layer_names,
    register,
    renamed,
    same,
)

MATRICES = ("blocks.{}.attn.c_q.weight", "blocks.{}.attn.c_k.weight", "blocks.{}.attn.c_v.weight",
            "blocks.{}.attn.proj.weight", "blocks.{}.mlp.fc.weight", "blocks.{}.mlp.proj.weight")


def links(cfg: ModelConfig) -> list[Link]:
    matrices = [n for template in MATRICES for n in layer_names(cfg, template)]
    return (same("tok_emb.weight", "skip_weights", "skip_gates", *matrices) + value_embeddings(cfg)
            + proteus_block_controls(cfg) + [renamed("lane_merge", "lane_merge.lane_merge")])


# Run 2 of phase 1 of run_spark_comparison.sh: COMMON (VOCAB_SIZE=1024) with PARALLEL_START_LAYER=6.
RUN_ENV = {"VOCAB_SIZE": "1024", "PARALLEL_START_LAYER": "6", "TORCH_COMPILE_DISABLE": "1"}


def build_record(rec: ModuleType) -> nn.Module:
    return rec.GPT(rec.Hyperparameters())


FORMAT = register(RecordFormat(preset="proteus_ablation", record="proteus_ablation_1425", links=links,
                               build_record=build_record, env=RUN_ENV, script="train_gpt_1218_slot.py"))
