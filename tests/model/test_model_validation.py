"""Impossible technique combinations stop in config validation, naming the key."""

from __future__ import annotations

import pytest

from pgolf.config import load_config
from pgolf.errors import ConfigError

TINY = ["model.num_layers=4", "model.model_dim=64", "model.num_heads=4", "model.num_kv_heads=2"]  # head dim 16


@pytest.mark.parametrize("overrides, key", [
    (["model.recur_loops=1", "model.recur_start=2", "model.recur_end=4"], "model.recur_start"),
    (["model.recur_loops=1", "model.recur_start=3", "model.recur_end=1"], "model.recur_start"),
    (["model.recur_loops=-1"], "model.recur_loops"),
    (["model.xsa_last_n=5"], "model.xsa_last_n"),
    (["model.rope_dims=7"], "model.rope_dims"),
    (["model.rope_dims=32"], "model.rope_dims"),
    (["model.parallel_residual=record", "model.parallel_start=4"], "model.parallel_start"),
    (["model.parallel_residual=proteus", "model.parallel_start=1"], "model.parallel_start"),
    (["model.parallel_residual=record", "model.parallel_start=2", "model.recur_loops=1", "model.recur_start=1",
      "model.recur_end=2"], "model.parallel_start"),
    (["model.parallel_residual=both"], "model.parallel_residual"),
    (["model.activation=gelu"], "model.activation"),
    (["model.attn_gate=sparse", "model.attn_gate_window=65"], "model.attn_gate_window"),
    (["model.smear_gate=v3"], "model.smear_gate"),
    (["model.trigram=true"], "model.trigram"),
    (["model.bigram_vocab=1"], "model.bigram_vocab"),
    (["model.value_embed_layers=3,4"], "model.value_embed_layers"),
    (["model.value_embed_layers=last"], "model.value_embed_layers"),
    (["model.skip_gates=true", "model.unet_skips=false"], "model.skip_gates"),
    (["model.bos_id=5000"], "model.bos_id"),
    (["train.recurrence_start_step=10", "train.recurrence_start_frac=0.3"], "train.recurrence_start_frac"),
])
def test_incompatible_technique_settings_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("tiny", env={}, overrides=TINY + overrides)
    assert str(err.value).startswith(key)


def test_compatible_settings_pass() -> None:
    cfg = load_config("tiny", env={}, overrides=TINY + [
        "model.recur_loops=2", "model.recur_start=1", "model.recur_end=1", "model.parallel_residual=record",
        "model.parallel_start=2", "model.rope_dims=4", "model.xsa_last_n=-1", "model.value_embed_layers=2,3"])
    assert cfg.model.parallel_start == 2


def test_activation_choices_are_the_registry() -> None:
    from pgolf.config import choices
    from pgolf.model.mlp import ACTIVATIONS

    assert set(choices()["model.activation"]) == set(ACTIVATIONS)
