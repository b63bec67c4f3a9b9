"""Eval parity of preset `proteus_v16` with PR #1289's own `eval_val_sliding` (its headline, stride 64): per-token
losses and val_bpb of what it scores, on the same weights and val prefix. Default suite: a 5-layer model at seq 64
with the lanes from layer 3 and layers 1–2 recurred (the record's env vars); `parity_full`: the record's run shape
on a 16k-token prefix. The record keeps every start whose window holds a target (the old rule of TECHNIQUES §2.7
P5), so its tail windows re-score targets; each target's first score is compared, and pgolf scores it once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from evalkit import Scored, Setup, Shape, assert_stage_parity, bpb_of, first_scores, make_setup, pgolf_stage, run_record
from test_parity_proteus_v16 import PRESET

from pgolf.evaluate.modes import Mode

SEED = 1289
SMALL = {"VOCAB_SIZE": "512", "NUM_LAYERS": "5", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1",
         "XSA_LAST_N": "2", "BIGRAM_VOCAB_SIZE": "64", "BIGRAM_DIM": "32", "VE_LAYERS": "3,4", "VE_DIM": "16",
         "PARALLEL_START_LAYER": "3", "RECUR_LAYERS": "1,2", "TRAIN_SEQ_LEN": "64", "EVAL_SEQ_LEN": "64",
         "EVAL_STRIDE": "16"}
SHAPES = {
    "small": Shape(SMALL, ["model.vocab_size=512", "model.num_layers=5", "model.model_dim=64", "model.num_heads=2",
                           "model.num_kv_heads=1", "model.xsa_last_n=2", "model.bigram_vocab=64", "model.bigram_dim=32",
                           "model.value_embed_layers=3,4", "model.value_embed_dim=16", "model.parallel_start=3",
                           "model.recur_start=1", "model.recur_end=2", "train.train_seq_len=64", "eval.stride=16"],
                   n_targets=512, threads=1),
    "full": Shape({}, [], n_targets=16384),
}


@pytest.fixture(scope="module", params=["small", pytest.param("full", marks=pytest.mark.parity_full)])
def setup(request) -> Iterator[Setup]:
    yield from make_setup(PRESET, SHAPES[request.param], SEED)


def record_windows(n: int, seq_len: int, stride: int) -> list[Scored]:
    """`eval_val_sliding`: every start holding a target; the first scores all, the others their last ≤ stride."""
    windows = []
    for ws in range(0, n, stride):
        length = min(ws + seq_len, n) - ws
        windows.append(Scored(ws, seq_len, 0 if ws == 0 else max(length - stride, 0), length))
    return windows


def test_sliding_window(setup: Setup) -> None:
    s = setup
    h = s.rec.Hyperparameters()
    stride, seq_len, n = h.eval_stride, h.eval_seq_len, s.tokens.numel() - 1
    record_bpb, spy = run_record(s.rec, lambda: s.rec.eval_val_sliding(
        h, s.record, 0, 1, torch.device("cpu"), s.tokens, *s.record_luts, stride=stride, eval_seq_len=seq_len))
    ours = pgolf_stage(s.ours, s.cfg, Mode("sliding"), s.tokens, s.lut)
    positions, nll = assert_stage_parity(record_bpb, spy, record_windows(n, seq_len, stride), ours, s.tokens, s.lut)
    first, first_nll = first_scores(positions, nll)
    assert np.array_equal(first, np.arange(n)) and positions.size > n, "the record's P5 tail re-scores"
    mine = bpb_of(first, first_nll, s.tokens, s.lut)
    assert abs(ours.bpb.val_bpb - mine) <= 1e-6 * mine
