"""Parity of preset `proteus_v16` with PR #1289's train_gpt.py (shared/records/proteus_v16) at the record's full
shape, with the run's PARALLEL_START_LAYER=7 and RECUR_LAYERS=4,5 (PROTEUS lanes, in-place recurrence, untied MLPs)."""

from __future__ import annotations

import pytest
import torch
from lanes_kit import assert_count_and_names, assert_loss_and_gradients, pair, tokens
from recordkit import assert_close, build_record, fp32, import_format_record

from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.interop import to_pgolf

PRESET = "proteus_v16"
SEED = 1289
# the record's own count at this shape (vocab 1024; the PR ran Scylla's 998 tokens and ships no log)
RECORD_PARAMS = 30_143_597


@pytest.fixture(scope="module")
def rec():
    return import_format_record(PRESET)


@pytest.fixture(scope="module")
def cfg():
    return load_config(PRESET, env={})


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
