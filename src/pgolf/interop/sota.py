"""PR #1855 (preset `sota`): the four Parallel-Muon shape banks, SmearGate v2 (`smear_gate.weight`, a (1,)
`smear_lambda`), the sparse attention gate `attn_gate_w` per block, skip weights and gates, and the lane λ of
the parallel blocks, which the record allocates for every layer (`parallel_resid_lambdas` (L, 2),
`parallel_post_lambdas` (L, 2, 2)) and pgolf only for the parallel ones (`blocks.<i>.parallel_resid/_post`)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from torch import Tensor, nn

from pgolf.config import ModelConfig
from pgolf.interop.pr635 import bank_slices, banks
from pgolf.interop.registry import Link, RecordFormat, register, renamed, same, some_rows
from pgolf.model.gpt import is_parallel_layer

# The record's init of its lane λ (train_gpt.py lines 1236-1241): the rows of its serial layers keep it on export.
RESID_LAMBDA_INIT = 1.1
POST_LAMBDA_INIT = 1.0

# The #1855 run's environment where it differs from the script's defaults and shapes the model, its optimizer or
# its quantizer (train_seed*.log "Hyperparameters"); the Triton cross-entropy off: its eager form is the same loss.
RUN_ENV = {"SMEAR_GATE_ENABLED": "1", "SPARSE_ATTN_GATE_ENABLED": "1", "SPARSE_ATTN_GATE_SCALE": "0.5",
           "BETA2": "0.99", "MIN_LR": "0.1", "WARMDOWN_FRAC": "0.85", "FUSED_CE_ENABLED": "0",
           "EMBED_BITS": "7", "EMBED_CLIP_SIGMAS": "14.0", "MLP_CLIP_SIGMAS": "11.5", "GATED_ATTN_QUANT_GATE": "1"}


def _embedding_side() -> list[Link]:
    return [*same("tok_emb.weight", "skip_weights", "skip_gates"),
            renamed("smear_gate.weight", "smear.smear_w"),
            renamed("smear_lambda", "smear.smear_lambda", record_shape=(1,))]


def _block_controls(cfg: ModelConfig) -> list[Link]:
    out: list[Link] = []
    for i in range(cfg.num_layers):
        p = f"blocks.{i}"
        out += same(f"{p}.attn.q_gain", f"{p}.attn_scale", f"{p}.mlp_scale", f"{p}.resid_mix")
        out.append(renamed(f"{p}.attn.attn_gate_w", f"{p}.attn.gate.attn_gate_w"))
    return out


def lane_lambdas(cfg: ModelConfig) -> list[Link]:
    """The record's per-layer λ tensors, whose rows of the parallel layers are pgolf's per-block ones."""
    layers = [i for i in range(cfg.num_layers) if is_parallel_layer(cfg, i)]
    n = cfg.num_layers
    return [some_rows("parallel_resid_lambdas", [f"blocks.{i}.parallel_resid" for i in layers], layers, (n, 2),
                      RESID_LAMBDA_INIT),
            some_rows("parallel_post_lambdas", [f"blocks.{i}.parallel_post" for i in layers], layers, (n, 2, 2),
                      POST_LAMBDA_INIT)]


def links(cfg: ModelConfig) -> list[Link]:
    return _embedding_side() + banks(cfg) + lane_lambdas(cfg) + _block_controls(cfg)


def unbanked(cfg: ModelConfig) -> list[Link]:
    return _embedding_side() + bank_slices(cfg) + lane_lambdas(cfg) + _block_controls(cfg)


def build_record(rec: ModuleType, hparams: object | None = None) -> nn.Module:
    """The record's GPT from its `Hyperparameters` (or `hparams`), looping on (as at the end of its training and
    in its eval), with its eager MLP (the Triton kernel computes the same on CUDA) and its BOS id, which its
    loaders set."""
    if rec.BOS_ID is None:
        vars(rec)["BOS_ID"] = 1  # the module global its loaders set before any forward
    model = rec.GPT(hparams if hparams is not None else rec.Hyperparameters())
    model.looping_active = True
    for block in model.blocks:
        block.mlp.use_fused = False
    return model


def documents(rec: ModuleType, x: Tensor) -> dict[str, Any]:
    """The record's varlen document boundaries for one row of tokens (its own `_build_cu_seqlens` over the BOS
    positions): without them its attention crosses documents, pgolf's (`doc_isolated_attention`) does not."""
    assert x.size(0) == 1, "the record's varlen path takes one packed row"
    bos = (x[0] == rec.BOS_ID).nonzero(as_tuple=True)[0].tolist()
    cu_seqlens, max_seqlen = rec._build_cu_seqlens(bos, x.size(1), x.device)
    return {"cu_seqlens": cu_seqlens, "max_seqlen": max_seqlen}


FORMAT = register(RecordFormat(preset="sota", record="sota_1855", links=links, unbanked=unbanked,
                               build_record=build_record, env=RUN_ENV, record_inputs=documents))
