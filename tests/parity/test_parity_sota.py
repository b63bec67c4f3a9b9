"""Parity of preset `sota` with PR #1855's train_gpt.py (shared/records/sota_1855), with the run's environment
(sparse attention gate at scale 0.5, SmearGate with its BOS fix; `interop.sota.RUN_ENV`): at the record's full
shape, and on a narrow model of the same structure (11 layers × 64, vocab 256) for the default suite.

The record isolates documents through FlashAttention's varlen call with `cu_seqlens` built from the BOS positions
(its `_build_cu_seqlens`); pgolf from the input ids. Both are fed the same token rows with BOS tokens inside."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from lanes_kit import assert_count_and_names, assert_loss_and_gradients, pair
from recordkit import (
    assert_close,
    assert_states_close,
    build_record,
    fp32,
    pgolf_step,
    record_grads_as_pgolf,
    val_batch,
)

from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.interop import from_pgolf, sota, to_pgolf
from pgolf.interop.sota import POST_LAMBDA_INIT, RESID_LAMBDA_INIT

PRESET = "sota"
SEED = 1855
RECORD_PARAMS = 35_945_671  # "model_params:35945671" in the record's train_seed*.log
UNUSED = 8 * (2 + 2 * 2)  # the λ rows of the 8 serial layers: the record allocates them, no forward reads them
NARROW = {"vocab_size": 256, "model_dim": 64, "num_heads": 2, "num_kv_heads": 1}


@pytest.fixture(scope="module")
def narrow_cfg():
    return load_config(PRESET, env={}, overrides=[f"model.{k}={v}" for k, v in NARROW.items()])


@pytest.fixture(scope="module")
def models(rec, cfg):
    return pair(lambda: fp32(build_record(PRESET, rec)), PRESET, cfg, SEED)


def hparams(rec, overrides: dict[str, int]):
    """The record's `Hyperparameters` with `overrides` (its VOCAB_SIZE, MODEL_DIM, ... as instance values)."""
    h = rec.Hyperparameters()
    for name, value in overrides.items():
        setattr(h, name, value)
    return h


@pytest.fixture(scope="module")
def narrow(rec, narrow_cfg):
    return pair(lambda: fp32(sota.build_record(rec, hparams(rec, NARROW))), PRESET, narrow_cfg, SEED)


def set_looping(record, ours, active: bool) -> None:
    record.looping_active = active
    ours.set_recurrence_active(active)


def test_parameter_count_and_names_map_one_to_one(rec, cfg, models) -> None:
    record, ours, state = models
    assert_count_and_names(record, ours, state, PRESET, cfg, RECORD_PARAMS, unused=UNUSED)
    unbanked = rec._unbank_state_dict(state, cfg.model.num_layers)
    assert_states_close(to_pgolf(unbanked, PRESET), ours.state_dict(), "unbanked checkpoint", tol=0.0)


def test_export_fills_the_serial_layers_lambdas_with_the_records_init(cfg, models) -> None:
    """Rows 8–10 of the record's λ tensors are pgolf's parallel blocks' λ; rows 0–7 come back at the record's
    init, so the exported checkpoint loads into the record and computes the same."""
    ours = models[1]
    back = from_pgolf(ours.state_dict(), PRESET)
    start = cfg.model.parallel_start
    assert torch.equal(back["parallel_resid_lambdas"][:start], torch.full((start, 2), RESID_LAMBDA_INIT))
    assert torch.equal(back["parallel_post_lambdas"][:start], torch.full((start, 2, 2), POST_LAMBDA_INIT))
    for i in range(start, cfg.model.num_layers):
        assert torch.equal(back["parallel_resid_lambdas"][i], ours.state_dict()[f"blocks.{i}.parallel_resid"])
        assert torch.equal(back["parallel_post_lambdas"][i], ours.state_dict()[f"blocks.{i}.parallel_post"])


@pytest.mark.parametrize("looping", [True, False])
def test_logits(rec, cfg, models, looping: bool) -> None:
    record, ours, _ = models
    set_looping(record, ours, looping)
    x, _ = val_batch(cfg.model.vocab_size, 1, 256)
    with torch.no_grad():
        got, expected = ours.logits(ours.hidden(x)), record.forward_logits(x, **sota.documents(rec, x))
    set_looping(record, ours, True)
    assert_close(got, expected, f"logits (looping {looping})")


def test_narrow_logits_loss_and_gradients(rec, narrow_cfg, narrow) -> None:
    record, ours, state = narrow
    assert_count_and_names(record, ours, state, PRESET, narrow_cfg, sum(p.numel() for p in record.parameters()),
                           unused=UNUSED)
    x, y = val_batch(narrow_cfg.model.vocab_size, 1, 192, seed=1)
    with torch.no_grad():
        assert_close(ours.logits(ours.hidden(x)), record.forward_logits(x, **sota.documents(rec, x)), "logits")
    assert_loss_and_gradients(record, ours, x, y, PRESET, narrow_cfg, **sota.documents(rec, x))


@pytest.mark.parity_full
def test_loss_and_gradients(rec, cfg, models) -> None:
    record, ours, _ = models
    x, y = val_batch(cfg.model.vocab_size, 1, 128, seed=1)
    assert_loss_and_gradients(record, ours, x, y, PRESET, cfg, **sota.documents(rec, x))


def assert_one_step(rec, h, models, cfg, monkeypatch) -> None:
    """The record's own `Optimizers` split at step 0 (Parallel Muon with MuonEq-R and Polar Express on the banks,
    AdamW with EMBED_WD on the token table, with ADAM_WD on the scalars and λ). Its `step` syncs CUDA streams, so
    the three optimizers are stepped here in its order; pgolf steps from the record's clipped gradients (see
    `recordkit.pgolf_step`)."""
    record, ours, state = models
    record.load_state_dict(state, strict=True)
    ours.load_state_dict(to_pgolf(state, PRESET, cfg.model), strict=True)
    record.zero_grad(set_to_none=True)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *args, **kwargs: None)  # its side stream: unused here
    optimizers = rec.Optimizers(h, record)
    x, y = val_batch(cfg.model.vocab_size, 1, 128, seed=2)
    record(x, y, **sota.documents(rec, x)).backward()
    for group in optimizers.optimizer_muon.param_groups:  # step 0 of the momentum warm-up; lr_mul(0) = 1
        group["momentum"] = h.muon_momentum_warmup_start
    torch.nn.utils.clip_grad_norm_(record.parameters(), h.grad_clip_norm)
    grads = record_grads_as_pgolf(record, PRESET, cfg)
    for opt in (optimizers.optimizer_tok, optimizers.optimizer_scalar, optimizers.optimizer_muon):
        opt.step()
    unclipped = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, grad_clip_norm=0.0))
    pgolf_step(ours, unclipped, grads)
    assert_states_close(ours.state_dict(), to_pgolf(record.state_dict(), PRESET, cfg.model), "weights after one step")


def test_narrow_one_optimizer_step(rec, narrow_cfg, narrow, monkeypatch) -> None:
    assert_one_step(rec, hparams(rec, NARROW), narrow, narrow_cfg, monkeypatch)


@pytest.mark.parity_full
def test_one_optimizer_step(rec, cfg, models, monkeypatch) -> None:
    assert_one_step(rec, rec.Hyperparameters(), models, cfg, monkeypatch)


def test_export_weights_writes_a_checkpoint_the_record_loads(rec, narrow_cfg, narrow, tmp_path) -> None:
    """`pgolf export-weights` of float weights of the preset's shape: the record's GPT loads the file strictly and
    computes the same logits, and `pgolf eval`'s reader of record checkpoints gives the weights back unchanged."""
    from pgolf.artifact.format import write_artifact
    from pgolf.cli import main
    from pgolf.packing import float_weights
    from pgolf.targets import _record_state

    ours = narrow[1]
    weights, out = tmp_path / "weights.pgolf", tmp_path / "final_model.pt"
    write_artifact(weights, float_weights(ours.state_dict()), {"config": narrow_cfg.to_dict(), "kind": "float"})
    assert main(["export-weights", str(weights), "--preset", PRESET, "--out", str(out)]) == 0
    loaded: Any = fp32(sota.build_record(rec, hparams(rec, NARROW)))  # the record's own class
    loaded.load_state_dict(torch.load(out), strict=True)
    x, _ = val_batch(narrow_cfg.model.vocab_size, 1, 96, seed=3)
    with torch.no_grad():
        assert_close(loaded.forward_logits(x, **sota.documents(rec, x)), ours.logits(ours.hidden(x)), "exported logits")
    assert_states_close(_record_state(out, narrow_cfg), ours.state_dict(), "read back", tol=0.0)


def test_checkpoint_of_another_preset_is_refused_naming_the_tensor_and_the_fitting_preset(models) -> None:
    with pytest.raises(UserError) as err:
        to_pgolf(models[2], "pr635")
    message = str(err.value)
    assert "\n" not in message and "fits preset 'sota'" in message and "tensor" in message


# one matrix of each clip rule of the record's GPTQ (attention k = 13, MLP k = 11.5, int7 embedding k = 14) and a
# sparse attention gate (its int8 rule)
QUANT_SAMPLE = ("blocks.0.attn.c_q.weight", "blocks.4.attn.c_k.weight", "blocks.3.mlp.fc.weight", "tok_emb.weight")
GATE = "blocks.2.attn.attn_gate_w"


@pytest.mark.parity_full
def test_quantizer_payloads(rec, cfg, models) -> None:
    """Policy `sdclip` with GPTQ gives the record's `gptq_mixed_quantize` int codes and fp16 scales exactly (same
    Hessians), and its int8-per-row codes of the attention gate. LQER is left out (`quant/`, not yet the record's)."""
    from pgolf.interop.convert import name_map
    from pgolf.quant.mixed import TensorQuantizer
    from pgolf.quant.policy import assign_formats, load_policy

    unbanked = rec._unbank_state_dict(models[2], cfg.model.num_layers)
    gen = torch.Generator().manual_seed(SEED)
    hessians = {}
    for name in QUANT_SAMPLE:
        x = torch.randn(256, unbanked[name].size(1), generator=gen)
        hessians[name] = x.T @ x / x.size(0)
    h = rec.Hyperparameters()
    h.lqer_enabled = False
    theirs, _ = rec.gptq_mixed_quantize({n: unbanked[n] for n in (*QUANT_SAMPLE, GATE)}, hessians, h)
    names = name_map(PRESET)
    formats = assign_formats(load_policy(cfg.quant.policy), to_pgolf(unbanked, PRESET)).formats
    quantizer = TensorQuantizer({names[n]: hessians[n] for n in QUANT_SAMPLE})
    for name, suffix in [*((n, ("q", "scale")) for n in QUANT_SAMPLE), (GATE, ("gq", "gs"))]:
        mine, method = quantizer.quantize(names[name], unbanked[name], formats[names[name]])
        assert method == ("gptq" if name in QUANT_SAMPLE else "rtn"), f"{name}: {method}"
        assert torch.equal(mine.data, theirs[f"{name}.{suffix[0]}"]), f"{name}: codes differ"
        assert mine.scale is not None and torch.equal(mine.scale, theirs[f"{name}.{suffix[1]}"]), f"{name}: scales"
