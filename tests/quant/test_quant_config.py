"""[quant] config keys: defaults keep the baseline export; bad values name the key and the fix."""

from __future__ import annotations

import pytest

from pgolf.config import CALIBRATION_SOURCES, Config, load_config, parse_fit_bits
from pgolf.errors import ConfigError


def test_defaults_are_the_baseline_export() -> None:
    q = Config().quant
    settings = (q.scheme, q.codec, q.codec_level, q.transform, q.gptq, q.prune_fraction)
    assert settings == ("int8", "zlib", -1, "bykind", False, 0.0)  # the baseline's tensors and codec, codes first
    assert q.budget_bytes == 16_000_000 and q.calibration == "ar"
    assert set(CALIBRATION_SOURCES) == {"ar", "train", "loader"}
    assert "inside the training time budget" in CALIBRATION_SOURCES["train"]


@pytest.mark.parametrize(("override", "message"), [
    ("quant.calibration=val", "quant.calibration: validation data may never be used"),
    ("quant.calibration=test", "quant.calibration: must be one of ar, train"),
    ("quant.fit_bits=3,6", "quant.fit_bits: must be comma-separated bit widths in 4..8"),
    ("quant.gptq=true", "quant.gptq: applies to int-k policies"),
    ("quant.prune_fraction=1", "quant.prune_fraction: must be in"),
    ("quant.budget_margin=-5", "quant.budget_margin"),
    ("quant.transform=shuffle", "quant.transform: must be one of"),
    ("quant.scheme=int6", "quant.scheme: must be one of int8, policy, fit"),
])
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override], env={})


def test_unknown_policy_is_caught_at_config_time() -> None:
    with pytest.raises(ConfigError, match=r"quant\.policy: 'int3' is neither a shipped policy"):
        load_config(overrides=["quant.scheme=policy", "quant.policy=int3"], env={})
    assert load_config(overrides=["quant.scheme=fit", "quant.policy=proteus"], env={}).quant.policy == "proteus"
    assert parse_fit_bits("8, 5,6") == (8, 6, 5)
