"""SLOT: a per-batch delta on the last hidden state, fitted with AdamW, re-initialised every batch."""

from __future__ import annotations

import numpy as np
import torch

from pgolf.evaluate.ledger import token_nll
from pgolf.evaluate.modes import VERIFY_MODES, run_mode
from pgolf.evaluate.slot import SlotSettings, fit_delta, slot_scorer
from pgolf.evaluate.windows import gather_batch, sliding_windows
from testkit import present


def _batch(fx, count: int = 4):
    return gather_batch(fx.tokens, sliding_windows(fx.tokens.numel() - 1, 32, 8)[:count], torch.device("cpu"))


def _masked_mean(nll: torch.Tensor, mask: torch.Tensor) -> float:
    return float((nll * mask).sum() / mask.sum())


def test_delta_lowers_the_loss_of_the_targets_it_is_fitted_on(eval_fixture) -> None:
    fx = eval_fixture
    model, batch = fx.model, _batch(fx)
    with torch.no_grad():
        hidden = model.hidden(batch.x)
        base = token_nll(model.logits(hidden), batch.y)
        for variant, mask in (("published", batch.valid), ("context", batch.context)):
            delta = fit_delta(model, hidden, batch, SlotSettings(variant, 8, 0.05, 1e-8, 1e-5))
            fitted = token_nll(model.logits(hidden + delta), batch.y)
            assert _masked_mean(fitted, mask) < _masked_mean(base, mask) - 0.01
            assert delta.shape == ((1, 1, 32) if variant == "published" else (4, 1, 32))
    assert torch.equal(delta[0], torch.zeros(1, 32))  # the first window has no context: its delta stays 0
    assert all(p.grad is None for p in model.parameters())  # the model itself is never trained


def test_delta_is_reinitialised_every_batch(eval_fixture) -> None:
    fx = eval_fixture
    score = slot_scorer(fx.model, SlotSettings("published", 3, 0.05, 1e-8, 1e-5))
    batch = _batch(fx)
    with torch.no_grad():
        first, _ = score(batch)
        score(_batch(fx, 2))
        again, _ = score(batch)
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_context_slot_first_window_scores_as_sliding(eval_fixture) -> None:
    fx = eval_fixture
    sliding = run_mode(fx.model, VERIFY_MODES["sliding"], fx.cfg, fx.scoring())
    slot = run_mode(fx.model, VERIFY_MODES["slot-context"], fx.cfg, fx.scoring())
    slot_losses, sliding_losses = present(slot.losses), present(sliding.losses)
    np.testing.assert_allclose(slot_losses[:32], sliding_losses[:32], rtol=1e-6)
    assert not np.allclose(slot_losses[32:], sliding_losses[32:])
    assert slot.bpb.val_bytes == sliding.bpb.val_bytes
