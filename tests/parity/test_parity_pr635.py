"""Parity of preset `pr635` with PR #635's train_gpt.py (shared/records/pr635), at the record's full shape."""

from __future__ import annotations

import pytest
import torch
from recordkit import (
    assert_close,
    assert_states_close,
    cheap_init,
    fp32,
    import_record,
    perturbed,
    pgolf_model,
    pgolf_step,
    val_batch,
)

from pgolf.config import load_config
from pgolf.interop import from_pgolf, to_pgolf
from pgolf.model.attention import Rotary

SEED = 635
RECORD_PARAMS = 26_809_543  # "model_params:26809543" in the record's train_seed*.log


def record_model(rec, h):
    return fp32(rec.GPT(
        vocab_size=h.vocab_size, num_layers=h.num_layers, model_dim=h.model_dim, num_heads=h.num_heads,
        num_kv_heads=h.num_kv_heads, mlp_mult=h.mlp_mult, tie_embeddings=h.tie_embeddings,
        tied_embed_init_std=h.tied_embed_init_std, logit_softcap=h.logit_softcap, rope_base=h.rope_base,
        qk_gain_init=h.qk_gain_init, bigram_vocab_size=h.bigram_vocab_size if h.use_bigramhash else 0,
        bigram_dim=h.bigram_dim, xsa_last_n=h.xsa_last_n, rope_dims=h.rope_dims,
        gated_attention=h.use_gated_attention, value_residual=h.use_value_residual, use_smeargate=h.use_smeargate))


@pytest.fixture(scope="module")
def rec():
    return import_record("pr635")


@pytest.fixture(scope="module")
def cfg():
    return load_config("pr635", env={}, overrides=["optim.muon_ns_dtype=bf16"])


@pytest.fixture(scope="module")
def models(rec, cfg):
    """(record model, pgolf model, shared weights): the record's seeded init, perturbed, converted to pgolf."""
    torch.manual_seed(SEED)
    with cheap_init():
        record = record_model(rec, rec.Hyperparameters())
    state = perturbed(record, SEED)
    return record, pgolf_model(cfg, to_pgolf(state, "pr635")), state


def reset(models):
    record, ours, state = models
    record.load_state_dict(state, strict=True)
    ours.load_state_dict(to_pgolf(state, "pr635"), strict=True)
    record.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    return record, ours


def test_parameter_count_and_names_map_one_to_one(rec, cfg, models) -> None:
    record, ours = reset(models)
    state = models[2]
    assert sum(p.numel() for p in record.parameters()) == RECORD_PARAMS
    assert sum(p.numel() for p in ours.parameters()) == RECORD_PARAMS
    back = from_pgolf(ours.state_dict(), "pr635")
    assert sorted(back) == sorted(state)
    assert_states_close(back, state, "round trip", tol=0.0)
    unbanked = rec._unbank_state_dict(state, cfg.model.num_layers)
    assert_states_close(to_pgolf(unbanked, "pr635"), ours.state_dict(), "unbanked checkpoint", tol=0.0)


def test_ntk_rotary_tables(rec, cfg) -> None:
    """Past the record's Rotary train_seq_len (1024) the base is NTK-rescaled; below it the tables are plain."""
    m = cfg.model
    head_dim = m.model_dim // m.num_heads
    theirs = rec.Rotary(head_dim, base=m.rope_base, train_seq_len=1024, rope_dims=m.rope_dims)
    ours = Rotary(m.rope_dims, m.rope_base, m.rope_train_seq_len)
    for seq_len in (512, 2048):
        for a, b in zip(ours(seq_len, torch.device("cpu"), torch.float32), theirs(seq_len, torch.device("cpu"), torch.float32)):
            assert_close(a, b, f"rotary tables at seq {seq_len}")


def test_logits(cfg, models) -> None:
    record, ours = reset(models)
    x, _ = val_batch(cfg.model.vocab_size, 2, 128)
    with torch.no_grad():
        assert_close(ours.logits(ours.hidden(x)), record.forward_logits(x), "logits")


def test_loss_and_gradients(cfg, models) -> None:
    record, ours = reset(models)
    x, y = val_batch(cfg.model.vocab_size, 2, 128, seed=1)
    loss_r, loss_o = record(x, y), ours(x, y)
    assert_close(loss_o, loss_r, "loss")
    loss_r.backward()
    loss_o.backward()
    grads_r = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in record.named_parameters()}
    grads_o = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in ours.named_parameters()}
    assert_states_close(to_pgolf(grads_r, "pr635"), grads_o, "gradients")


def record_step(rec, record, x, y) -> None:
    """One step of the record's training loop at step 0, with its optimizer split (the record builds these inline
    in main(); the split below follows it: banks → Parallel Muon, tok_emb + bigram table → AdamW, block controls,
    skip weights, smear gate, bigram scale and bigram.proj → AdamW, all with ADAM_WD)."""
    h = rec.Hyperparameters()
    banks = [record.qo_bank, record.kv_bank, record.mlp_up_bank, record.mlp_down_bank]
    scalars = [p for n, p in record.blocks.named_parameters()
               if p.ndim < 2 or any(pat in n for pat in rec.CONTROL_TENSOR_NAME_PATTERNS)]
    scalars += [record.skip_weights, record.smear.gate, record.bigram.scale, record.bigram.proj.weight]
    lr = h.tied_embed_lr
    tok = torch.optim.AdamW([{"params": [record.tok_emb.weight], "lr": lr}, {"params": [record.bigram.embed.weight], "lr": lr}],
                            betas=(h.beta1, h.beta2), eps=h.adam_eps, weight_decay=h.adam_wd)
    muon = rec.Muon(banks, lr=h.matrix_lr, momentum=h.muon_momentum, backend_steps=h.muon_backend_steps,
                    weight_decay=h.muon_wd)
    scalar = torch.optim.AdamW([{"params": scalars, "lr": h.scalar_lr}], betas=(h.beta1, h.beta2), eps=h.adam_eps,
                               weight_decay=h.adam_wd)
    record(x, y).backward()
    for group in muon.param_groups:  # step 0 of the momentum warm-up; lr_mul(0) = 1
        group["momentum"] = h.muon_momentum_warmup_start
    torch.nn.utils.clip_grad_norm_(record.parameters(), h.grad_clip_norm)
    muon.launch_reduce_scatters()
    tok.step()
    scalar.step()
    muon.step()


def test_one_optimizer_step(rec, cfg, models) -> None:
    record, ours = reset(models)
    x, y = val_batch(cfg.model.vocab_size, 2, 128, seed=2)
    record_step(rec, record, x, y)
    pgolf_step(ours, cfg, x, y)
    assert_states_close(ours.state_dict(), to_pgolf(record.state_dict(), "pr635"), "weights after one step")
