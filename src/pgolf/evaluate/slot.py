"""SLOT (TECHNIQUES §4.25.5): an additive delta on the final hidden state, fitted per batch.

For each batch of windows the frozen model gives hidden states h; a zero-initialised δ is fitted
with AdamW for `steps` steps so that `logits(h + δ)` lowers the cross-entropy of chosen targets;
the batch is then scored with `logits(h + δ)` (a full softmax). δ is re-initialised every batch.

* `published` (PR #1176): one δ of shape (1, 1, d) shared by the batch, fitted on every target of
  every window — including the ones it then scores. Non-compliant: a changed target moves the
  scores of every position of its batch (#1240). Kept for research, labelled in every output.
* `context`: one δ per window, fitted only on the window's context targets (positions before
  `score_from`, already scored by earlier windows). The score of a target then depends only on
  earlier tokens. The first window has no context, so its δ stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pgolf.evaluate.ledger import token_nll
from pgolf.evaluate.sliding import ScoreFn
from pgolf.evaluate.windows import WindowBatch
from pgolf.model.gpt import GPT


@dataclass(frozen=True)
class SlotSettings:
    variant: str  # context | published
    steps: int
    lr: float
    weight_decay: float
    eps: float


def _fit_loss(nll: Tensor, mask: Tensor, per_window: bool) -> Tensor:
    weights = mask.to(nll.dtype)
    if per_window:  # a sum of per-window means keeps each window's δ independent of the others
        return ((nll * weights).sum(1) / weights.sum(1).clamp_min(1.0)).sum()
    return (nll * weights).sum() / weights.sum().clamp_min(1.0)


def fit_delta(model: GPT, hidden: Tensor, batch: WindowBatch, settings: SlotSettings) -> Tensor:
    """The fitted δ for a batch (hidden states are treated as constants)."""
    per_window = settings.variant == "context"
    mask = batch.context if per_window else batch.valid
    shape = (hidden.size(0) if per_window else 1, 1, hidden.size(-1))
    delta = torch.zeros(shape, device=hidden.device, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.AdamW([delta], lr=settings.lr, weight_decay=settings.weight_decay, eps=settings.eps)
    hidden = hidden.detach()
    with torch.enable_grad():
        for _ in range(settings.steps):
            loss = _fit_loss(token_nll(model.logits(hidden + delta), batch.y), mask, per_window)
            (delta.grad,) = torch.autograd.grad(loss, [delta])  # the model's own parameters get no gradient
            optimizer.step()
    return delta.detach()


def slot_scorer(model: GPT, settings: SlotSettings) -> ScoreFn:
    def score(batch: WindowBatch) -> tuple[Tensor, Tensor]:
        hidden = model.hidden(batch.x)
        logits = model.logits(hidden + fit_delta(model, hidden, batch, settings))
        return token_nll(logits, batch.y), logits

    return score
