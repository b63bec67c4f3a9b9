"""The exported script's config (`pgolf.config.embedded`): its table over the defaults, then the official
environment variables, typed as their fields; a value of the wrong type is refused naming the variable."""

from __future__ import annotations

import pytest

from pgolf.config import Config, load_config
from pgolf.config.embedded import embedded_config
from pgolf.errors import ConfigError


def test_the_table_and_the_official_variables_rebuild_the_loaded_config() -> None:
    environ = {"SEED": "7", "MAX_WALLCLOCK_SECONDS": "90", "TIE_EMBEDDINGS": "0", "DATA_PATH": "/data/x"}
    expected = load_config("sota_cpu", env=environ)
    table = load_config("sota_cpu", env={}).to_dict()
    cfg = embedded_config(table, environ)
    assert cfg == expected and (cfg.run.seed, cfg.model.tie_embeddings) == (7, False)
    assert isinstance(cfg.train.max_wallclock_seconds, float) and cfg.data.dataset == "/data/x"


def test_record_only_variables_do_not_reach_the_embedded_config() -> None:
    assert embedded_config({}, {"XSA_LAST_N": "4"}) == Config()  # the loader maps it; the shipped script does not


def test_a_variable_of_the_wrong_type_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"environment ITERATIONS='many' is not a valid train.iterations.*int"):
        embedded_config({}, {"ITERATIONS": "many"})
