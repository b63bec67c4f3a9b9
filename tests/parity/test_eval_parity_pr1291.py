"""Eval parity of preset `pr1291` with PR #1291's own `eval_val_sliding` and `eval_val_slot`: per-token losses and
val_bpb on the same weights and val prefix. Default suite: a 2-layer model at seq 64 (the record's env vars);
`parity_full`: the record's full shape on a 16k-token prefix."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest
import torch
from evalkit import Setup, Shape, assert_stage_parity, fixed_rule_windows, make_setup, pgolf_stage, run_record

from pgolf.evaluate.modes import Mode

PRESET = "pr1291"
SEED = 1291
SHAPES = {
    "small": Shape({"VOCAB_SIZE": "512", "NUM_LAYERS": "2", "MODEL_DIM": "64", "EMBEDDING_DIM": "64",
                    "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "XSA_LAST_N": "2", "VE_LAYERS": "0,1", "VE_DIM": "16",
                    "TRAIN_SEQ_LEN": "64", "EVAL_SEQ_LEN": "64", "ROPE_TRAIN_SEQ_LEN": "64", "EVAL_STRIDE": "16"},
                   ["model.vocab_size=512", "model.num_layers=2", "model.model_dim=64", "model.num_heads=2",
                    "model.num_kv_heads=1", "model.value_embed_layers=0,1", "model.value_embed_dim=16",
                    "train.train_seq_len=64", "model.rope_train_seq_len=64", "eval.stride=16", "eval.batch_seqs=16"],
                   n_targets=512, batch_seqs=16, threads=1),
    "full": Shape({}, [], n_targets=16384),
}


@pytest.fixture(scope="module", params=["small", pytest.param("full", marks=pytest.mark.parity_full)])
def setup(request) -> Iterator[Setup]:
    yield from make_setup(PRESET, SHAPES[request.param], SEED)


def check(s: Setup, mode: Mode, record_fn) -> None:
    """The record's fixed window rule scores each target once, so its val_bpb is pgolf's, to the last digits."""
    base, lead, boundary = s.record_luts
    data = types.SimpleNamespace(val_tokens=s.tokens, base_bytes_lut=base, has_leading_space_lut=lead,
                                 is_boundary_token_lut=boundary)
    h = s.rec.Hyperparameters()
    record_bpb, spy = run_record(s.rec, lambda: record_fn(h, torch.device("cpu"), data, s.record, s.shape.batch_seqs))
    ours = pgolf_stage(s.ours, s.cfg, mode, s.tokens, s.lut)
    windows = fixed_rule_windows(s.tokens.numel() - 1, h.eval_seq_len, h.eval_stride)
    positions, _ = assert_stage_parity(record_bpb, spy, windows, ours, s.tokens, s.lut)
    assert positions.size == s.tokens.numel() - 1
    assert abs(ours.bpb.val_bpb - record_bpb) <= 1e-6 * record_bpb


def test_sliding_window(setup: Setup) -> None:
    check(setup, Mode("sliding"), setup.rec.eval_val_sliding)


def test_slot_as_published(setup: Setup) -> None:
    """One (1, 1, d) delta per batch of windows, 8 AdamW steps at lr 0.005 on every target of the batch."""
    check(setup, Mode("sliding", slot="published"), setup.rec.eval_val_slot)
