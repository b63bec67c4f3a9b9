"""Parity of preset `proteus_ablation` with PR #1425's train_gpt_1218_slot.py (shared/records/proteus_ablation_1425)
at the record's full shape, under run_spark_comparison.sh's run 2 (VOCAB_SIZE=1024, PARALLEL_START_LAYER=6):
PROTEUS lanes on the PR #1218 stack, skips into the attention lane only, lane merge σ(θ)."""

from __future__ import annotations

import pytest
import torch
from lanes_kit import assert_count_and_names, assert_loss_and_gradients, pair, tokens
from recordkit import assert_close, build_record, fp32, import_format_record

from pgolf.config import load_config

PRESET = "proteus_ablation"
SEED = 1425
RECORD_PARAMS = 32_440_432  # the record's own count at this shape (5,141 of them in the parallel blocks)


@pytest.fixture(scope="module")
def rec():
    return import_format_record(PRESET)


@pytest.fixture(scope="module")
def cfg():
    return load_config(PRESET, env={})


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
