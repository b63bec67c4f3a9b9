from __future__ import annotations

from pathlib import Path

import pytest

from pgolf.config import config_from_dict, load_config, preset_names
from pgolf.errors import ConfigError


def test_defaults_are_the_official_baseline() -> None:
    cfg = load_config(env={})
    assert (cfg.model.num_layers, cfg.model.model_dim, cfg.model.num_heads, cfg.model.num_kv_heads) == (9, 512, 8, 4)
    assert cfg.train.train_batch_tokens == 524_288 and cfg.train.warmdown_iters == 1200
    assert cfg.optim.matrix_lr == 0.04 and cfg.optim.tied_embed_lr == 0.05 and cfg.run.seed == 1337
    assert load_config("baseline", env={}).to_dict() | {"run": {}} == cfg.to_dict() | {"run": {}}


def test_precedence_preset_file_env_set(tmp_path: Path) -> None:
    file = tmp_path / "over.toml"
    file.write_text("[model]\nnum_layers = 5\nmodel_dim = 128\n[optim]\nmatrix_lr = 0.02\n")
    cfg = load_config("tiny", file, ["model.num_layers=3"], env={"NUM_LAYERS": "4", "MATRIX_LR": "0.03"})
    assert cfg.model.num_layers == 3  # --set beats env, file and preset
    assert cfg.optim.matrix_lr == 0.03  # env beats file
    assert cfg.model.model_dim == 128  # file beats preset
    assert cfg.train.max_wallclock_seconds == load_config("tiny", env={}).train.max_wallclock_seconds  # preset
    assert cfg.run.preset == "tiny"


def test_env_strings_are_parsed_by_field_type() -> None:
    cfg = load_config(env={"TIE_EMBEDDINGS": "0", "MLP_MULT": "3", "SEED": "42", "DATA_PATH": "/d"})
    assert cfg.model.tie_embeddings is False and cfg.model.mlp_mult == 3.0 and cfg.run.seed == 42
    assert cfg.data.dataset == "/d"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"overrides": ["model.bogus=1"]}, "model.bogus"),
        ({"overrides": ["nosection.x=1"]}, "nosection.x"),
        ({"overrides": ["model.num_layers=2.5"]}, "model.num_layers"),
        ({"env": {"NUM_HEADS": "eight"}}, "NUM_HEADS"),
        ({"overrides": ["model.num_heads=3"]}, "model.model_dim"),
        ({"overrides": ["model.num_kv_heads=3"]}, "model.num_heads"),
        ({"overrides": ["train.train_batch_tokens=1000"]}, "train.train_batch_tokens"),
        ({"overrides": ["optim.matrix_lr=-1"]}, "optim.matrix_lr"),
        ({"overrides": ["train.dtype=fp8"]}, "train.dtype"),
        ({"overrides": ["model.logit_softcap=0"]}, "model.logit_softcap"),
    ],
)
def test_bad_values_name_the_key(kwargs: dict, key: str) -> None:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(**kwargs)


def test_batch_divisibility_accounts_for_world_size_and_accumulation() -> None:
    sets = ["train.train_batch_tokens=3072", "train.train_seq_len=1024", "train.grad_accum_steps=1"]
    load_config(overrides=sets, env={}, world_size=3)
    with pytest.raises(ConfigError, match="1024 × 2 × 1"):
        load_config(overrides=sets, env={}, world_size=2)
    with pytest.raises(ConfigError, match="grad_accum_steps"):
        load_config(overrides=["train.grad_accum_steps=0"], env={}, world_size=3)


def test_unknown_preset_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_file=bad, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "missing.toml", env={})


def test_presets_load_and_roundtrip_through_toml() -> None:
    import tomllib

    for name in preset_names():
        cfg = load_config(name, env={})
        assert config_from_dict(tomllib.loads(cfg.to_toml())) == cfg
