"""Parity of preset `pr635` with PR #635's train_gpt.py (shared/records/pr635), at the record's full shape."""

from __future__ import annotations

import pytest
import torch
from recordkit import (
    assert_close,
    assert_payloads,
    assert_states_close,
    build_record,
    cheap_init,
    fp32,
    import_record,
    perturbed,
    pgolf_model,
    pgolf_step,
    record_adamw,
    record_step,
    val_batch,
)

from pgolf.config import load_config
from pgolf.interop import from_pgolf, to_pgolf
from pgolf.model.attention import Rotary

SEED = 635
RECORD_PARAMS = 26_809_543  # "model_params:26809543" in the record's train_seed*.log


def record_model(rec):
    return fp32(build_record("pr635", rec))


@pytest.fixture(scope="module")
def rec():
    return import_record("pr635")


@pytest.fixture(scope="module")
def cfg():
    return load_config("pr635", env={})


@pytest.fixture(scope="module")
def models(rec, cfg):
    """(record model, pgolf model, shared weights): the record's seeded init, perturbed, converted to pgolf."""
    torch.manual_seed(SEED)
    with cheap_init():
        record = record_model(rec)
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
        cpu = torch.device("cpu")
        for a, b in zip(ours(seq_len, cpu, torch.float32), theirs(seq_len, cpu, torch.float32), strict=True):
            assert_close(a, b, f"rotary tables at seq {seq_len}")


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
    grads_r = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in record.named_parameters()}
    grads_o = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in ours.named_parameters()}
    assert_states_close(to_pgolf(grads_r, "pr635"), grads_o, "gradients")


def test_late_qat_reaches_only_bigram_proj(rec, cfg, models, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record's late QAT lives in `CastedLinear` (lines 863-875): only bigram.proj, step ≥ 1/31, codes ±31."""
    from lanes_kit import assert_late_qat_loss

    record, ours = reset(models)
    state = {**models[2], "bigram.proj.weight": models[2]["bigram.proj.weight"] * 30}  # rows past 1: a visible grid
    record.load_state_dict(state, strict=True)
    ours.load_state_dict(to_pgolf(state, "pr635"), strict=True)
    x, y = val_batch(cfg.model.vocab_size, 1, 64, seed=4)
    assert_late_qat_loss(rec, record, ours, cfg, x, y, ["bigram.proj.weight"], monkeypatch)


def record_optimizers(rec, record) -> tuple[torch.optim.Optimizer, list[torch.optim.Optimizer]]:
    """(Parallel Muon, AdamWs) as the record's main() builds them inline: banks → Parallel Muon; tok_emb and the
    bigram table → AdamW; block controls, skip weights, smear gate, bigram scale and bigram.proj → AdamW, all
    with ADAM_WD."""
    h = rec.Hyperparameters()
    banks = [record.qo_bank, record.kv_bank, record.mlp_up_bank, record.mlp_down_bank]
    scalars = [p for n, p in record.blocks.named_parameters()
               if p.ndim < 2 or any(pat in n for pat in rec.CONTROL_TENSOR_NAME_PATTERNS)]
    scalars += [record.skip_weights, record.smear.gate, record.bigram.scale, record.bigram.proj.weight]
    lr = h.tied_embed_lr
    tables = [{"params": [record.tok_emb.weight], "lr": lr}, {"params": [record.bigram.embed.weight], "lr": lr}]
    tok = record_adamw(tables, h, h.adam_wd)
    muon = rec.Muon(banks, lr=h.matrix_lr, momentum=h.muon_momentum, backend_steps=h.muon_backend_steps,
                    weight_decay=h.muon_wd)
    return muon, [tok, record_adamw([{"params": scalars, "lr": h.scalar_lr}], h, h.adam_wd)]


@pytest.mark.parity_full
def test_one_optimizer_step(rec, cfg, models) -> None:
    """Parallel Muon on the banks (bf16 momentum and Newton–Schulz), AdamW with ADAM_WD on the rest, step 0.

    pgolf steps from the record's clipped gradients with its own clipping off: a clip coefficient computed in
    another summation order changes the bf16 rounding of the Newton–Schulz input (see `pgolf_step`)."""
    record, ours = reset(models)
    muon, adams = record_optimizers(rec, record)
    grads = record_step(record, rec.Hyperparameters(), muon, adams, val_batch(cfg.model.vocab_size, 1, 128, seed=2),
                        "pr635")
    pgolf_step(ours, load_config("pr635", env={}, overrides=["optim.grad_clip_norm=0"]), grads)
    assert_states_close(ours.state_dict(), to_pgolf(record.state_dict(), "pr635"), "weights after one step")


# one tensor of each kind the record's export distinguishes (a per-row quantile over every matrix costs minutes)
QUANT_SAMPLE = ("blocks.0.attn.c_q.weight", "blocks.10.mlp.fc.weight", "blocks.5.mlp.proj.weight",
                "bigram.embed.weight",
                "tok_emb.weight", "bigram.proj.weight", "smear.gate", "bigram.scale", "blocks.0.attn.vr_lambda",
                "blocks.3.attn.attn_gate.weight", "blocks.3.attn.attn_gate.bias", "skip_weights")


@pytest.mark.parity_full
def test_quantizer_payloads(rec, cfg, models) -> None:
    """Policy `pr635` gives the record's GPTQ-lite int6 codes and fp16 scales, and its float tensors, exactly."""
    unbanked = rec._unbank_state_dict(models[2], cfg.model.num_layers)
    sample = {name: unbanked[name] for name in QUANT_SAMPLE}
    theirs, _ = rec.quantize_state_dict_int8(sample)
    codes = {name: (q, theirs["scales"][name]) for name, q in theirs["quantized"].items()}
    assert_payloads("pr635", cfg, sample, codes, theirs["passthrough"])
