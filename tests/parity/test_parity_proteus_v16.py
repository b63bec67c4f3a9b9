"""Parity of preset `proteus_v16` with PR #1289's train_gpt.py (shared/records/proteus_v16) at the record's full
shape, with the run's PARALLEL_START_LAYER=7 and RECUR_LAYERS=4,5 (PROTEUS lanes, in-place recurrence, untied MLPs)."""

from __future__ import annotations

import pytest
import torch
from lanes_kit import (
    assert_count_and_names,
    assert_late_qat_loss,
    assert_loss_and_gradients,
    assert_one_step,
    pair,
    tokens,
)
from recordkit import (
    assert_close,
    assert_payloads,
    build_record,
    fp32,
    import_format_record,
    mixed_payload,
    proteus_v16_export,
    record_adamw,
    sample_weights,
)

from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.interop import to_pgolf

PRESET = "proteus_v16"
SEED = 1289
# the record's own count at this shape (vocab 1024; the PR ran Scylla's 998 tokens and ships no log)
RECORD_PARAMS = 30_143_597


# a small shape of the same layer layout (11 layers, parallel from 7, recurrence 4-5, VE on 9-10) for the default suite
SMALL = {"MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "VOCAB_SIZE": "64", "BIGRAM_VOCAB_SIZE": "32",
         "BIGRAM_DIM": "8", "VE_DIM": "8"}
SMALL_CFG = ["model.model_dim=32", "model.num_heads=2", "model.num_kv_heads=1", "model.vocab_size=64",
             "model.bigram_vocab=32", "model.bigram_dim=8", "model.value_embed_dim=8"]


@pytest.fixture(scope="module")
def models(rec, cfg):
    return pair(lambda: fp32(build_record(PRESET, rec)), PRESET, cfg, SEED)


def test_parameter_count_and_names_map_one_to_one(rec, cfg, models) -> None:
    record, ours, state = models
    assert_count_and_names(record, ours, state, PRESET, cfg, RECORD_PARAMS)
    unbanked = rec._unbank_state_dict(state, cfg.model.num_layers)
    name = "blocks.3.mlp.fc.weight"
    assert torch.equal(to_pgolf(unbanked, PRESET)[name], ours.state_dict()[name])


def test_layer_order_and_skips_are_the_records(models) -> None:
    ours = models[1]
    assert ours.layer_order == [0, 1, 2, 3, 4, 4, 5, 5, 6, 7, 8, 9, 10]
    assert ours.skip_weights.shape[0] == 5 and ours.recurrence_active


@pytest.mark.parametrize("seq_len", [256, 1152])  # > the record's Rotary train_seq_len 1024: NTK-rescaled RoPE
def test_logits(cfg, models, seq_len: int) -> None:
    record, ours, _ = models
    x, _ = tokens(cfg.model.vocab_size, 1, seq_len, low=0)  # BOS inside: the record's features cross it, so do ours
    with torch.no_grad():
        assert_close(ours.logits(ours.hidden(x)), record.forward_logits(x), f"logits at seq {seq_len}")


@pytest.mark.slow  # float64 backward through the full-shape model
def test_loss_and_gradients(cfg, models) -> None:
    record, ours, _ = models
    x, y = tokens(cfg.model.vocab_size, 1, 64, seed=1, low=0)
    assert_loss_and_gradients(record, ours, x, y, PRESET, cfg)


def test_checkpoint_of_another_preset_is_refused_naming_the_tensor_and_the_fitting_preset(models) -> None:
    state = models[2]
    with pytest.raises(UserError) as err:
        to_pgolf(state, "proteus_ablation")
    message = str(err.value)
    assert "\n" not in message and "'proteus_v16'" in message and "tensor" in message


def record_optimizers(rec, record) -> tuple[torch.optim.Optimizer, list[torch.optim.Optimizer]]:
    """(Parallel Muon, AdamWs) as the record's main() builds them (lines 2214-2256): banks and the untied recurrence
    MLPs → Parallel Muon; tok_emb, bigram and VE tables → AdamW; block controls (every ndim < 2 tensor, so each
    parallel block's `route`), skip weights, smear gate, lane_merge, each parallel block's `route` once more,
    bigram scale and proj, VE proj, scale and layer scales → AdamW, all with ADAM_WD."""
    h = rec.Hyperparameters()
    matrices = [record.qo_bank, record.kv_bank, record.mlp_up_bank, record.mlp_down_bank]
    for lid in record.recur_layer_ids:
        matrices += [record.recur_mlp_up[str(lid)], record.recur_mlp_down[str(lid)]]
    scalars = [p for n, p in record.blocks.named_parameters()
               if p.ndim < 2 or any(pat in n for pat in rec.CONTROL_TENSOR_NAME_PATTERNS)]
    scalars += [record.skip_weights, record.smear.gate, record.lane_merge]
    scalars += [block.route for block in record.blocks if block.parallel]  # the second time (line 2236)
    scalars += [record.bigram.scale, record.bigram.proj.weight, record.ve_shared.proj.weight, record.ve_shared.scale,
                *record.ve_layer_scales]
    tables = [record.tok_emb.weight, record.bigram.embed.weight, record.ve_shared.embed.weight]
    tok = record_adamw([{"params": [t], "lr": h.tied_embed_lr} for t in tables], h, h.adam_wd)
    muon = rec.Muon(matrices, lr=h.matrix_lr, momentum=h.muon_momentum, backend_steps=h.muon_backend_steps,
                    weight_decay=h.muon_wd)
    return muon, [tok, record_adamw([{"params": scalars, "lr": h.scalar_lr}], h, h.adam_wd)]


def step_case(rec, cfg, models, seq_len: int = 64) -> None:
    batch = tokens(cfg.model.vocab_size, 1, seq_len, seed=2, low=0)
    assert_one_step(models, lambda record: record_optimizers(rec, record), rec.Hyperparameters(), batch, PRESET, cfg)


DUPLICATE = "ignore:optimizer contains a parameter group with duplicate parameters"  # the record's `route`, twice


@pytest.mark.parity_full
@pytest.mark.filterwarnings(DUPLICATE)
def test_one_optimizer_step(rec, cfg, models) -> None:
    """Parallel Muon (bf16 momentum and Newton–Schulz) on the banks and recurrence MLPs, AdamW with ADAM_WD on the
    rest, `route` updated twice (optim.route_adam_updates = 2), step 0, at the full shape."""
    step_case(rec, cfg, models)


@pytest.mark.filterwarnings(DUPLICATE)
def test_one_optimizer_step_small() -> None:
    """The same step at a small width of the record's layer layout."""
    rec = import_format_record(PRESET, SMALL)
    cfg = load_config(PRESET, env={}, overrides=SMALL_CFG)
    step_case(rec, cfg, pair(lambda: fp32(build_record(PRESET, rec)), PRESET, cfg, SEED), seq_len=32)


# one tensor of each kind the export distinguishes (the records' fp16 control tensors are fp32 in pgolf: left out)
QUANT_SAMPLE = ("blocks.0.attn.c_q.weight", "blocks.4.mlp.proj.weight", "blocks.8.mlp.fc.weight",
                "recur_mlps.4_1.fc.weight", "tok_emb.weight", "bigram.proj.weight", "blocks.7.lane_route")


def test_quantizer_payloads(rec, cfg) -> None:
    """Policy `proteus` stores the record's int5/int6/int8 codes and fp16 scales and its fp16 tensors exactly."""
    sample = sample_weights(PRESET, cfg, QUANT_SAMPLE, SEED)
    assert_payloads(PRESET, cfg, sample, *mixed_payload(*proteus_v16_export(rec, sample)))


def test_late_qat_reaches_only_the_projections_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Late QAT as the record runs it (`CastedLinear._qat_enabled`, line 2407; PyTorch guards the class attribute,
    so the compiled model recompiles with it): only the bigram and VE projections are fake-quantized, on the grid
    floored at 1/31, codes in [−32, 31]. pgolf's QAT forward under the preset's scope and grid gives its loss."""
    rec = import_format_record(PRESET, SMALL)
    cfg = load_config(PRESET, env={}, overrides=SMALL_CFG)
    # noise 0.5: rows past 1, so the floor is not all the grid does
    record, ours, _ = pair(lambda: fp32(build_record(PRESET, rec)), PRESET, cfg, SEED, noise=0.5)
    x, y = tokens(cfg.model.vocab_size, 1, 32, seed=3, low=0)
    assert_late_qat_loss(rec, record, ours, cfg, x, y, ["bigram.proj.weight", "value_embed.proj.weight"], monkeypatch)
