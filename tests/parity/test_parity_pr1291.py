"""Parity of preset `pr1291` with PR #1291's train_gpt.py (shared/records/pr1291, on the #1218 base), at the
record's full shape: 11L × 512, MLP 4×, vocab 4096, value embeddings on layers 9–10, skip gates."""

from __future__ import annotations

import pytest
import torch
from recordkit import (
    assert_close,
    assert_states_close,
    build_record,
    cheap_init,
    fp32,
    import_record,
    perturbed,
    pgolf_model,
    pgolf_step,
    record_grads_as_pgolf,
    record_step,
    val_batch,
)

from pgolf.config import load_config
from pgolf.interop import from_pgolf, to_pgolf

SEED = 1291
RECORD_PARAMS = 34_401_371  # "model_params:34401371" in the record's train_seed*.log


@pytest.fixture(scope="module")
def rec():
    return import_record("pr1291")


@pytest.fixture(scope="module")
def cfg():
    return load_config("pr1291", env={})


@pytest.fixture(scope="module")
def models(rec, cfg):
    torch.manual_seed(SEED)
    with cheap_init():
        record = fp32(build_record("pr1291", rec))
    state = perturbed(record, SEED)
    return record, pgolf_model(cfg, to_pgolf(state, "pr1291")), state


def reset(models):
    record, ours, state = models
    record.load_state_dict(state, strict=True)
    ours.load_state_dict(to_pgolf(state, "pr1291"), strict=True)
    record.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    return record, ours


def test_parameter_count_and_names_map_one_to_one(models) -> None:
    record, ours = reset(models)
    state = models[2]
    assert sum(p.numel() for p in record.parameters()) == RECORD_PARAMS
    assert sum(p.numel() for p in ours.parameters()) == RECORD_PARAMS
    back = from_pgolf(ours.state_dict(), "pr1291")
    assert sorted(back) == sorted(state)
    assert_states_close(back, state, "round trip", tol=0.0)


def test_value_embedding_projection_is_orthogonal_at_init() -> None:
    """The record's init loop orthogonalises ve_shared.proj (it carries no zero-init flag); a 2-layer model of the
    preset suffices."""
    from pgolf.model.gpt import GPT

    small = load_config("pr1291", env={}, overrides=["model.num_layers=2", "model.value_embed_layers=0,1"])
    model = GPT(small.model)
    assert model.value_embed is not None
    w = model.value_embed.proj.weight  # (kv_dim, ve_dim): orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(w.size(1)), atol=1e-4)


def test_logits(cfg, models) -> None:
    record, ours = reset(models)
    x, _ = val_batch(cfg.model.vocab_size, 2, 128)
    with torch.no_grad():
        assert_close(ours.logits(ours.hidden(x)), record.forward_logits(x), "logits")


@pytest.mark.parity_full
def test_loss_and_gradients(cfg, models) -> None:
    record, ours = reset(models)
    x, y = val_batch(cfg.model.vocab_size, 2, 128, seed=1)
    loss_r, loss_o = record(x, y), ours(x, y)
    assert_close(loss_o, loss_r, "loss")
    loss_r.backward()
    loss_o.backward()
    grads_o = {n: p.grad for n, p in ours.named_parameters()}
    assert_states_close(grads_o, record_grads_as_pgolf(record, "pr1291"), "gradients")


@pytest.mark.parity_full
def test_one_optimizer_step(rec, cfg, models) -> None:
    """The record's own Optimizers (round-robin Muon with WD, AdamW groups with EMBED_WD / ADAM_WD) at step 0."""
    record, ours = reset(models)
    h = rec.Hyperparameters()
    optimizers = rec.Optimizers(h, record)
    muon = optimizers.optimizer_muon
    batch = val_batch(cfg.model.vocab_size, 1, 128, seed=2)
    grads = record_step(record, h, muon, [opt for opt in optimizers if opt is not muon], batch, "pr1291")
    pgolf_step(ours, load_config("pr1291", env={}, overrides=["optim.grad_clip_norm=0"]), grads)
    assert_states_close(ours.state_dict(), to_pgolf(record.state_dict(), "pr1291"), "weights after one step")
