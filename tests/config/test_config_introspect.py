"""What the schema says about its fields: Literal choices, types, documentation, `config show --doc`."""

from __future__ import annotations

from typing import get_type_hints

import tomllib

from pgolf.config import CALIBRATION_SOURCES, Config, QuantConfig, choices, load_config
from pgolf.config.docs import documented_toml
from pgolf.config.introspect import field_docs, schema_fields, section_types


def test_every_field_is_known_with_its_type_and_default() -> None:
    info = schema_fields()
    assert list(section_types()) == ["data", "model", "optim", "train", "quant", "eval", "run"]
    assert info["model.num_layers"].base is int and info["model.num_layers"].default == 9
    assert info["optim.matrix_lr"].base is float and info["model.tie_embeddings"].base is bool
    assert info["quant.codec"].base is str and info["quant.codec"].default == "zlib"
    assert len(info) == sum(len(Config().to_dict()[s]) for s in section_types())


def test_choices_come_from_the_literal_types() -> None:
    allowed = choices()
    assert allowed["quant.codec"] == ("zlib", "zstd", "lzma", "brotli", "lrzip", "auto")
    assert allowed["eval.ttt"] == ("off", "full", "lora", "phased")
    assert "model.num_layers" not in allowed and "data.dataset" not in allowed
    assert set(allowed["quant.calibration"]) == set(CALIBRATION_SOURCES)
    assert str(get_type_hints(QuantConfig)["scheme"]).startswith("typing.Literal")
    for dotted, values in allowed.items():  # every default is one of its own choices
        assert schema_fields()[dotted].default in values, dotted


def test_every_field_is_documented_by_its_comment() -> None:
    docs = field_docs()
    assert set(docs) == set(schema_fields())
    assert [k for k, text in docs.items() if not text] == []
    assert docs["model.xsa_last_n"] == "exclusive self attention on the last N layers (-1 = all, 0 = off)"
    assert docs["train.proxy_world_size"].startswith("Proxy mode: emulate a run")  # the block comment above


def test_documented_toml_is_the_same_config_with_comments() -> None:
    cfg = load_config("tiny", env={})
    text = documented_toml(cfg)
    assert tomllib.loads(text) == cfg.to_dict()
    xsa = "# exclusive self attention on the last N layers (-1 = all, 0 = off) — int; default 0\nxsa_last_n = 0"
    assert xsa in text
    assert "one of zlib, zstd, lzma, brotli, lrzip, auto; default \"zlib\"" in text
