"""Parity of preset `baseline` with the official train_gpt.py (shared/records/baseline)."""

from __future__ import annotations

import pytest
import torch
from recordkit import assert_close, assert_states_close, build_record, fp32, import_record, val_batch

from pgolf.config import load_config
from pgolf.interop import from_pgolf, to_pgolf
from pgolf.model.gpt import GPT

SEED = 1234


@pytest.fixture(scope="module")
def pair():
    """(record model, pgolf model, cfg) with the same weights: the record's seeded init converted to pgolf."""
    rec = import_record("baseline")
    cfg = load_config("baseline", env={})
    torch.manual_seed(SEED)
    record = fp32(build_record("baseline", rec))
    ours = fp32(GPT(cfg.model))
    ours.load_state_dict(to_pgolf(record.state_dict(), "baseline"), strict=True)
    return rec, record, ours, cfg


def test_names_and_count_map_one_to_one(pair) -> None:
    _, record, ours, _ = pair
    assert sum(p.numel() for p in record.parameters()) == sum(p.numel() for p in ours.parameters())
    back = from_pgolf(ours.state_dict(), "baseline")
    assert list(back) == list(record.state_dict())
    assert_states_close(back, record.state_dict(), "round trip")


def test_same_seed_same_init(pair) -> None:
    """pgolf draws the baseline's random numbers in the baseline's order."""
    _, record, _, cfg = pair
    torch.manual_seed(SEED)
    fresh = fp32(GPT(cfg.model))
    assert_states_close(fresh.state_dict(), record.state_dict(), "init")


def test_loss_and_gradients(pair) -> None:
    _, record, ours, cfg = pair
    x, y = val_batch(cfg.model.vocab_size, 2, 128)
    record.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    loss_r = record(x, y)
    loss_o = ours(x, y)
    assert_close(loss_o, loss_r, "loss")
    loss_r.backward()
    loss_o.backward()
    grads_r = {n: p.grad for n, p in record.named_parameters()}
    grads_o = {n: p.grad for n, p in ours.named_parameters()}
    assert_states_close(grads_o, grads_r, "gradients")
