"""Sliding-window scoring (TECHNIQUES §4.1) and the window-scoring loop every fixed-model mode uses.

A `ScoreFn` turns a `WindowBatch` into per-token losses (and, when it has them, the full logits the
losses came from, so the normalization audit can check them). Plain evaluation is the special case
stride = context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from pgolf.evaluate.context import Deadline, ScoringContext
from pgolf.evaluate.ledger import LedgerResult, ScoreLedger, token_nll
from pgolf.evaluate.windows import Window, WindowBatch, batched, gather_batch, rank_slice, sliding_windows
from pgolf.model.gpt import GPT

ScoreFn = Callable[[WindowBatch], tuple[Tensor, Tensor | None]]
TokenLossFn = Callable[[Tensor, Tensor], Tensor]


def logits_scorer(model: GPT) -> ScoreFn:
    """Score with the model's full softmax: hidden states → logits → −log p(target)."""

    def score(batch: WindowBatch) -> tuple[Tensor, Tensor]:
        logits = model.logits(model.hidden(batch.x))
        return token_nll(logits, batch.y), logits

    return score


def losses_scorer(token_losses: TokenLossFn) -> ScoreFn:
    """Score with a per-token loss function (no logits to audit)."""
    return lambda batch: (token_losses(batch.x, batch.y), None)


def score_windows(score_fn: ScoreFn, scoring: ScoringContext, windows: Sequence[Window], ledger: ScoreLedger,
                  deadline: Deadline | None = None) -> bool:
    """Score this rank's `windows` in batches; False if the deadline stopped it first (a rank-local check,
    made after the first batch, so a stopped pass still reports a score)."""
    with torch.no_grad(), scoring.autocast():
        for index, group in enumerate(batched(windows, scoring.batch_seqs)):
            if index > 0 and deadline is not None and deadline.expired():
                return False
            batch = gather_batch(scoring.tokens, group, scoring.device)
            nll, logits = score_fn(batch)
            ledger.record(batch, nll, logits)
    return True


def evaluate_windows(score_fn: ScoreFn, scoring: ScoringContext, context: int, stride: int) -> LedgerResult:
    """Score every target once with windows of `context` inputs advancing by `stride`, split over ranks."""
    ctx = scoring.dist_ctx
    windows = rank_slice(sliding_windows(scoring.n_targets, context, stride), ctx.rank, ctx.world_size)
    ledger = scoring.new_ledger()
    score_windows(score_fn, scoring, windows, ledger, scoring.new_deadline())
    return ledger.finish()
