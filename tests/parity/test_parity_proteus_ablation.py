"""Parity of preset `proteus_ablation` with PR #1425's train_gpt_1218_slot.py (shared/records/proteus_ablation_1425)
at the record's full shape, under run_spark_comparison.sh's run 2 (VOCAB_SIZE=1024, PARALLEL_START_LAYER=6):
PROTEUS lanes on the PR #1218 stack, skips into the attention lane only, lane merge σ(θ)."""

from __future__ import annotations

import pytest
import torch
from lanes_kit import assert_count_and_names, assert_loss_and_gradients, assert_one_step, pair, tokens
from recordkit import assert_close, assert_payloads, build_record, fp32, import_format_record, sample_weights

from pgolf.config import load_config

PRESET = "proteus_ablation"
SEED = 1425
RECORD_PARAMS = 32_440_432  # the record's own count at this shape (5,141 of them in the parallel blocks)
# a small width of the same layer layout (11 layers, parallel from 6, VE on 9-10) for the default suite
SMALL = {"MODEL_DIM": "32", "EMBEDDING_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "VOCAB_SIZE": "64",
         "VE_DIM": "8"}
SMALL_CFG = ["model.model_dim=32", "model.num_heads=2", "model.num_kv_heads=1", "model.vocab_size=64",
             "model.value_embed_dim=8"]


@pytest.fixture(scope="module")
def models(rec, cfg):
    return pair(lambda: fp32(build_record(PRESET, rec)), PRESET, cfg, SEED)


def test_parameter_count_and_names_map_one_to_one(rec, cfg, models) -> None:
    record, ours, state = models
    assert_count_and_names(record, ours, state, PRESET, cfg, RECORD_PARAMS)


def test_logits(cfg, models) -> None:
    record, ours, _ = models
    x, _ = tokens(cfg.model.vocab_size, 1, 256, low=0)  # no BOS-dependent feature in this stack: any token
    with torch.no_grad():
        assert_close(ours.logits(ours.hidden(x)), record.forward_logits(x), "logits")


@pytest.mark.slow  # float64 backward through the full-shape model
def test_loss_and_gradients(cfg, models) -> None:
    record, ours, _ = models
    x, y = tokens(cfg.model.vocab_size, 1, 64, seed=1, low=0)
    assert_loss_and_gradients(record, ours, x, y, PRESET, cfg)


def record_optimizers(rec, record) -> tuple[torch.optim.Optimizer, list[torch.optim.Optimizer]]:
    """The record's own `Optimizers` (round-robin Muon on the block matrices and ve_shared.proj, fused AdamWs)."""
    opts = rec.Optimizers(rec.Hyperparameters(), record)
    return opts.optimizer_muon, [opts.optimizer_tok, opts.optimizer_scalar]


def step_case(rec, cfg, models, seq_len: int) -> None:
    batch = tokens(cfg.model.vocab_size, 1, seq_len, seed=2, low=0)
    assert_one_step(models, lambda record: record_optimizers(rec, record), rec.Hyperparameters(), batch, PRESET, cfg)


@pytest.mark.parity_full
def test_one_optimizer_step(rec, cfg, models) -> None:
    """Round-robin Muon (bf16 Newton–Schulz, (c·A)·A, weight decay 0.085), AdamW on the embeddings (EMBED_WD) and the
    controls (ADAM_WD), step 0, at the full shape."""
    step_case(rec, cfg, models, 64)


def test_one_optimizer_step_small() -> None:
    """The same step at a small width of the record's layer layout."""
    rec = import_format_record(PRESET, SMALL)
    cfg = load_config(PRESET, env={}, overrides=SMALL_CFG)
    step_case(rec, cfg, pair(lambda: fp32(build_record(PRESET, rec)), PRESET, cfg, SEED), 32)


# one tensor of each kind the export distinguishes (the records' fp16 control tensors are fp32 in pgolf: left out)
QUANT_SAMPLE = ("blocks.6.attn.c_k.weight", "blocks.3.mlp.proj.weight", "blocks.8.mlp.fc.weight", "tok_emb.weight",
                "value_embed.proj.weight", "blocks.6.lane_route")


def test_quantizer_payloads(rec, cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    """Policy `proteus` stores what the record's `mixed_quantize_int6` does (phase 1: GPTQ off, round-to-nearest;
    int5 middle MLPs 3-7, int6 attention and edge MLPs, int8 embeddings, fp16 ≤ 65,536 elements) exactly."""
    sample = sample_weights(PRESET, cfg, QUANT_SAMPLE, SEED)
    monkeypatch.setattr(rec, "log", lambda *args, **kwargs: None)  # the record logs through its run's globals
    stored, _ = rec.mixed_quantize_int6(sample, {"mlp", "attn"}, num_layers=11, n_int6_mlp_layers=6)
    codes = {name: (stored[f"{name}.q"], stored[f"{name}.scale"]) for name in sample if f"{name}.q" in stored}
    assert_payloads(PRESET, cfg, sample, codes, {name: stored[name] for name in sample if name in stored})
