"""Legal score-first full-model test-time training over the stream (TECHNIQUES §4.25.1).

The val pairs are cut into chunks of `chunk_tokens`; every sliding window belongs to the chunk that
holds its first scored target. For each chunk, in order: SCORE its windows with the current weights
(recorded in the ledger), then — unless it is the last chunk — TRAIN on the chunk's tokens, which
the ledger releases only once they are all scored: SGD with momentum at a cosine learning rate over
chunks (`pgolf.evaluate.ttt.sgd_on_tokens`). Imported only by runs whose eval.ttt is `full`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pgolf.evaluate.context import ScoringContext
from pgolf.evaluate.ledger import LedgerResult
from pgolf.evaluate.sliding import ScoreFn, score_windows
from pgolf.evaluate.ttt import SGDSettings, cosine_lr, sgd_on_tokens, trainable_copy
from pgolf.evaluate.windows import Window, rank_slice, sliding_windows
from pgolf.model.gpt import GPT


@dataclass(frozen=True)
class FullTTTSettings:
    context: int
    stride: int
    chunk_tokens: int
    lr: float
    freeze_blocks: int
    sgd: SGDSettings


def chunk_windows(windows: list[Window], chunk_tokens: int, n_chunks: int) -> list[list[Window]]:
    """Windows grouped by the chunk holding their first scored target."""
    groups: list[list[Window]] = [[] for _ in range(n_chunks)]
    for w in windows:
        groups[w.first_target // chunk_tokens].append(w)
    return groups


def evaluate_ttt_full(model: GPT, scoring: ScoringContext, settings: FullTTTSettings,
                      make_scorer: Callable[[GPT], ScoreFn]) -> LedgerResult:
    """Score-first chunked full-model TTT; `make_scorer` builds the scoring function (plain or SLOT)."""
    ctx = scoring.dist_ctx
    adapted, params = trainable_copy(model, settings.freeze_blocks)
    adapted.eval()
    optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=settings.sgd.momentum)
    score_fn = make_scorer(adapted)
    n = scoring.n_targets
    n_chunks = math.ceil(n / settings.chunk_tokens)
    groups = chunk_windows(sliding_windows(n, settings.context, settings.stride), settings.chunk_tokens, n_chunks)
    ledger, deadline = scoring.new_ledger(), scoring.new_deadline()
    for index, windows in enumerate(groups):
        if index > 0 and deadline.expired(agree=True):
            break
        score_windows(score_fn, scoring, rank_slice(windows, ctx.rank, ctx.world_size), ledger)
        if index == n_chunks - 1:
            break
        begin, end = index * settings.chunk_tokens, min((index + 1) * settings.chunk_tokens, n)
        segment = ledger.released(scoring.tokens, begin, end)
        sgd_on_tokens(adapted, optimizer, params, segment, cosine_lr(settings.lr, index, n_chunks), settings.sgd,
                      scoring)
    return ledger.finish()
