"""Eval parity of preset `pr635` with PR #635's own `eval_val` (sliding window, stride 64) and `eval_val_ttt` (legal
score-first TTT): per-token losses and val_bpb on the same weights and val prefix. Default suite: a 2-layer model at
seq 64 with 128-token TTT chunks (the record's env vars); `parity_full`: the record's full shape on a 16k-token
prefix with 4,096-token chunks (at the preset's 32,768 a 16k prefix is one chunk: nothing would be trained).

Two differences of the record's window rules are kept out of pgolf on purpose (each target is scored exactly once
there) and asserted here as the record's: `eval_val` scores only the first `stride` targets of its first window
(targets [stride, seq_len) are never scored), and `eval_val_ttt` keeps every start whose window holds ≥ stride
targets, so its tail windows re-score the last `stride` targets (TECHNIQUES §2.7 P5)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from evalkit import (
    Scored,
    Setup,
    Shape,
    assert_stage_parity,
    bpb_of,
    first_scores,
    make_setup,
    pgolf_stage,
    run_record,
)

from pgolf.evaluate.modes import Mode

PRESET = "pr635"
SEED = 635
SMALL = {"VOCAB_SIZE": "512", "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1",
         "XSA_LAST_N": "1", "BIGRAM_VOCAB_SIZE": "64", "BIGRAM_DIM": "32", "TRAIN_SEQ_LEN": "64", "EVAL_STRIDE": "16",
         "TTT_CHUNK_TOKENS": "128", "TTT_BATCH_SEQS": "1", "TTT_LR": "0.05"}
SHAPES = {
    "small": Shape(SMALL, ["model.vocab_size=512", "model.num_layers=2", "model.model_dim=64", "model.num_heads=2",
                           "model.num_kv_heads=1", "model.xsa_last_n=1", "model.bigram_vocab=64", "model.bigram_dim=32",
                           "train.train_seq_len=64", "eval.stride=16", "eval.ttt_chunk_tokens=128",
                           "eval.ttt_batch_seqs=1", "eval.ttt_lr=0.05"],
                   n_targets=512, threads=1),
    "full": Shape({"TTT_CHUNK_TOKENS": "4096"}, ["eval.ttt_chunk_tokens=4096"], n_targets=16384),
}


@pytest.fixture(scope="module", params=["small", pytest.param("full", marks=pytest.mark.parity_full)])
def setup(request) -> Iterator[Setup]:
    yield from make_setup(PRESET, SHAPES[request.param], SEED)


def sliding_windows(n: int, seq_len: int, stride: int) -> list[Scored]:
    """`eval_val`: full windows only; the first scores its first `stride` targets, every other its last."""
    return [Scored(ws, seq_len, 0, min(seq_len, stride)) if ws == 0 else Scored(ws, seq_len, seq_len - stride, seq_len)
            for ws in range(0, n - seq_len + 1, stride)]


def ttt_windows(n: int, seq_len: int, stride: int, chunk: int) -> list[Scored]:
    """`eval_val_ttt`: starts holding ≥ stride targets, grouped by the chunk of their first scored target."""
    chunks: list[list[Scored]] = [[] for _ in range((n + chunk - 1) // chunk)]
    for ws in range(0, n, stride):
        length = min(ws + seq_len, n) - ws
        if length >= stride or ws == 0:
            begin = 0 if ws == 0 else max(length - stride, 0)
            chunks[min((ws + begin) // chunk, len(chunks) - 1)].append(Scored(ws, seq_len, begin, length))
    return [w for group in chunks for w in group]


def record_call(s: Setup, fn):
    s.reset()
    h = s.rec.Hyperparameters()
    return run_record(s.rec, lambda: fn(h, s.record, 0, 1, torch.device("cpu"), s.tokens, *s.record_luts)), h


def test_sliding_window(setup: Setup) -> None:
    (record_bpb, spy), h = record_call(setup, setup.rec.eval_val)
    ours = pgolf_stage(setup.ours, setup.cfg, Mode("sliding"), setup.tokens, setup.lut)
    n = setup.tokens.numel() - 1
    positions, _ = assert_stage_parity(record_bpb, spy, sliding_windows(n, h.train_seq_len, h.eval_stride), ours,
                                       setup.tokens, setup.lut)
    skipped = np.setdiff1d(np.arange(n), positions)
    assert np.array_equal(skipped, np.arange(h.eval_stride, h.train_seq_len)), "the record's first-window gap"


def test_legal_ttt(setup: Setup) -> None:
    """SGD (momentum 0.9) over every parameter, cosine LR over chunks, 3 epochs per scored chunk, clip 1.0.

    The record's late-QAT switch is a class flag that training turned on and nothing turns off: its TTT trains in
    train mode, so bigram.proj (its one CastedLinear) is fake-quantized in every TTT step (eval.ttt_qat_params)."""
    setup.rec.CastedLinear._qat_enabled = True
    try:
        (record_bpb, spy), h = record_call(setup, setup.rec.eval_val_ttt)
    finally:
        setup.rec.CastedLinear._qat_enabled = False
    ours = pgolf_stage(setup.ours, setup.cfg, Mode("sliding", ttt="full"), setup.tokens, setup.lut)
    n = setup.tokens.numel() - 1
    windows = ttt_windows(n, h.train_seq_len, h.eval_stride, h.ttt_chunk_tokens)
    positions, nll = assert_stage_parity(record_bpb, spy, windows, ours, setup.tokens, setup.lut)
    first, first_nll = first_scores(positions, nll)
    assert np.array_equal(first, np.arange(n))
    rescored = positions.size - n
    assert rescored == (h.train_seq_len // h.eval_stride - 1) * h.eval_stride, "the record's P5 tail re-scores"
    mine = bpb_of(first, first_nll, setup.tokens, setup.lut)
    assert abs(ours.bpb.val_bpb - mine) <= 1e-6 * mine
