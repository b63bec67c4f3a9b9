"""Sliding-window scoring: every target once, the longest context, exact bpb, ranks and batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgolf.evaluate.plain import EvalSetup, evaluate_plain
from pgolf.evaluate.sliding import evaluate_windows, logits_scorer
from pgolf.evaluate.windows import rank_slice, sliding_windows
from pgolf.train.distributed import DistContext
from testkit import present


@pytest.mark.parametrize(("n", "context", "stride"), [(2048, 1024, 64), (1000, 64, 64), (1001, 64, 7), (5, 8, 3)])
def test_windows_score_every_target_once_with_the_longest_context(n: int, context: int, stride: int) -> None:
    windows = sliding_windows(n, context, stride)
    counts = np.zeros(n, dtype=int)
    for w in windows:
        counts[w.first_target : w.end] += 1
        assert w.length <= context and w.end <= n
        if w.start > 0:
            assert w.score_from == context - stride  # every target after the first window sees ≥ context − stride
    assert (counts == 1).all()
    assert windows[0].start == 0 and windows[0].score_from == 0


def test_stride_equal_to_context_is_the_plain_evaluation(eval_fixture) -> None:
    """Same blocks, same batches: the logits path reproduces the baseline's eval_val bit for bit."""
    fx = eval_fixture
    model = fx.model
    tokens = fx.tokens[:257]  # 8 blocks of 32
    plain, plain_losses = evaluate_plain(model.token_losses, tokens, fx.lut, EvalSetup(32, 96), torch.device("cpu"),
                                         collect_losses=True)
    windowed = evaluate_windows(logits_scorer(model), fx.scoring(tokens, batch_seqs=3), 32, 32)
    assert windowed.bpb == plain
    np.testing.assert_array_equal(windowed.losses, plain_losses)


def test_sliding_gives_more_context_and_counts_the_same_bytes(eval_fixture) -> None:
    fx = eval_fixture
    plain = evaluate_windows(logits_scorer(fx.model), fx.scoring(), 32, 32)
    sliding = evaluate_windows(logits_scorer(fx.model), fx.scoring(), 32, 8)
    assert (sliding.bpb.val_tokens, sliding.bpb.val_bytes) == (plain.bpb.val_tokens, plain.bpb.val_bytes)
    # the first 32 targets see the same context in both; the others differ
    near, far = present(sliding.losses), present(plain.losses)
    np.testing.assert_allclose(near[:32], far[:32], rtol=1e-6)
    assert not np.allclose(near[32:], far[32:])


def test_ranks_partition_the_windows_and_padding_is_never_scored(eval_fixture) -> None:
    fx = eval_fixture
    whole = evaluate_windows(logits_scorer(fx.model), fx.scoring(batch_seqs=1), 32, 5)
    parts = []
    for rank in range(3):
        scoring = fx.scoring(batch_seqs=4)
        scoring.dist_ctx = DistContext(rank, 3, 0, torch.device("cpu"), None)
        parts.append(evaluate_windows(logits_scorer(fx.model), scoring, 32, 5))
    assert sum(p.bpb.val_tokens for p in parts) == whole.bpb.val_tokens == fx.tokens.numel() - 1
    assert sum(p.bpb.val_bytes for p in parts) == whole.bpb.val_bytes
    assert sum(p.bpb.loss_sum_nats for p in parts) == pytest.approx(whole.bpb.loss_sum_nats, rel=1e-6)
    assert sum(present(p.coverage).once for p in parts) == present(whole.coverage).once == fx.tokens.numel() - 1
    windows = sliding_windows(10, 4, 2)
    assert [w for r in range(3) for w in rank_slice(windows, r, 3)] == windows
