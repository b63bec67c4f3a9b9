"""The environment map: every official and record env name is mapped to a field or warned about."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from pgolf.config import ENV_VARS, OFFICIAL_ENV_VARS, load_config
from pgolf.config.env import RUNTIME_ENV_VARS, UNMAPPED_RECORD_ENV_VARS, UnmappedEnvWarning
from pgolf.config.introspect import schema_fields

RECORDS = Path(__file__).resolve().parents[3] / "shared" / "records"
_ENV_READ = re.compile(r"""os\.(?:environ\.get|getenv)\(\s*['"](\w+)['"]|os\.environ\[\s*['"](\w+)['"]\s*\]""")


def _record_scripts() -> list[Path]:
    return sorted(RECORDS.glob("*/train_gpt.py"))


def test_every_mapped_name_sets_an_existing_field() -> None:
    assert len(OFFICIAL_ENV_VARS) == 37
    assert set(ENV_VARS.values()) <= set(schema_fields())
    assert not set(ENV_VARS) & set(UNMAPPED_RECORD_ENV_VARS) and not set(ENV_VARS) & set(RUNTIME_ENV_VARS)


@pytest.mark.skipif(not _record_scripts(), reason="../shared/records is not present")
@pytest.mark.parametrize("script", _record_scripts(), ids=lambda p: p.parent.name)
def test_every_env_name_of_a_record_script_is_mapped_or_warned(script: Path) -> None:
    names = {a or b for a, b in _ENV_READ.findall(script.read_text(encoding="utf-8"))}
    assert names, f"no environment reads found in {script}"
    known = set(ENV_VARS) | set(UNMAPPED_RECORD_ENV_VARS) | set(RUNTIME_ENV_VARS)
    assert sorted(names - known) == []


@pytest.mark.skipif(not (RECORDS / "baseline").is_dir(), reason="../shared/records is not present")
def test_the_official_names_are_those_of_the_baseline_script() -> None:
    names = {a or b for a, b in _ENV_READ.findall((RECORDS / "baseline" / "train_gpt.py").read_text(encoding="utf-8"))}
    assert set(OFFICIAL_ENV_VARS) == names & set(ENV_VARS)


def test_record_names_configure_their_fields() -> None:
    cfg = load_config(env={"XSA_LAST_N": "4", "ROPE_DIMS": "16", "LN_SCALE": "1", "MUON_WD": "0.095",
                           "EVAL_STRIDE": "64", "NUM_LOOPS": "2", "LOOP_START": "3", "LOOP_END": "5"})
    m = cfg.model
    assert (m.xsa_last_n, m.rope_dims, m.ln_scale, m.recur_loops, m.recur_start, m.recur_end) == (4, 16, True, 2, 3, 5)
    assert cfg.optim.muon_weight_decay == 0.095 and cfg.eval.stride == 64


def test_an_unmapped_record_name_warns_naming_it() -> None:
    with pytest.warns(UnmappedEnvWarning, match="LAWA_K, NGRAM_ENABLED"):
        cfg = load_config(env={"LAWA_K": "3", "NGRAM_ENABLED": "1"})
    assert cfg == load_config(env={})


def test_mapped_and_foreign_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(env={"XSA_LAST_N": "2", "WORLD_SIZE": "1", "HOME": "/root"})
