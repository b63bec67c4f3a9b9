"""Config of the training dynamics (issue 4): defaults keep the baseline, bad values name the key."""

from __future__ import annotations

import pytest

from pgolf.config import load_config
from pgolf.errors import ConfigError


def test_defaults_keep_the_baseline_dynamics() -> None:
    cfg = load_config(env={})
    o, t = cfg.optim, cfg.train
    muon = (o.muon_impl, o.muon_ns_variant, o.muon_nesterov, o.muon_row_normalize)
    assert muon == ("round_robin", "classic", True, False)
    assert o.muon_weight_decay == o.embed_weight_decay == o.adam_weight_decay == 0.0
    assert (t.warmdown_frac, t.min_lr_scale, t.late_qat_threshold, t.ema_decay, t.swa_every) == (0, 0, 0, 0, 0)
    assert (t.recurrence_start_step, t.recurrence_start_frac) == (0, 0.0)


def test_a_record_style_configuration_is_accepted() -> None:
    sets = ["optim.muon_impl=parallel", "optim.muon_ns_variant=polar_express", "optim.muon_row_normalize=1",
            "optim.muon_weight_decay=0.095", "optim.wd_taper_start_frac=0.7", "optim.wd_taper_final_mult=0.5",
            "train.warmdown_frac=0.85", "train.min_lr_scale=0.1", "train.ema_decay=0.9965",
            "train.late_qat_threshold=0.15", "train.qat_bits=6", "train.recurrence_start_frac=0.35",
            "train.iterations=0", "train.max_wallclock_seconds=600"]
    cfg = load_config(env={}, overrides=sets)
    assert cfg.optim.muon_impl == "parallel" and cfg.train.ema_decay == 0.9965


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["train.iterations=0", "train.max_wallclock_seconds=0"], "train.iterations"),
        (["optim.matrix_lr=0"], "optim.matrix_lr"),
        (["optim.scalar_lr=-0.1"], "optim.scalar_lr"),
        (["train.ema_decay=1"], "train.ema_decay"),
        (["train.ema_decay=-0.5"], "train.ema_decay"),
        (["train.qat_bits=9"], "train.qat_bits"),
        (["train.qat_bits=1"], "train.qat_bits"),
        (["train.late_qat_threshold=0.1", "train.min_lr_scale=0.1"], "train.late_qat_threshold"),
        (["optim.muon_ns_variant=polar_express", "optim.muon_backend_steps=6"], "optim.muon_backend_steps"),
        (["optim.muon_ns_variant=quartic"], "optim.muon_ns_variant"),
        (["optim.muon_impl=ddp"], "optim.muon_impl"),
        (["optim.muon_weight_decay=-0.1"], "optim.muon_weight_decay"),
        (["train.warmdown_frac=1.5"], "train.warmdown_frac"),
        (["train.min_lr_scale=1"], "train.min_lr_scale"),
        (["train.swa_max_lr_scale=0"], "train.swa_max_lr_scale"),
        (["train.recurrence_start_frac=1"], "train.recurrence_start_frac"),
        (["train.compile_backend=tvm"], "train.compile_backend"),
    ],
)
def test_bad_dynamics_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}"):
        load_config(env={}, overrides=overrides)


def test_every_error_is_reported_at_once_with_its_origin(tmp_path) -> None:
    from pgolf.config import ConfigIssues

    file = tmp_path / "over.toml"
    file.write_text("[train]\nwarmdown_frac = 1.5\n[eval]\nttt = \"sometimes\"\n")
    with pytest.raises(ConfigIssues) as err:
        load_config("tiny", file, ["optim.matrix_lr=-1", "quant.calibration=val"], env={"NUM_HEADS": "eight"})
    found = {(i.key, i.origin) for i in err.value.issues}
    assert found == {("train.warmdown_frac", f"file {file}"), ("eval.ttt", f"file {file}"),
                     ("optim.matrix_lr", "--set"), ("quant.calibration", "--set"),
                     ("model.num_heads", "environment NUM_HEADS")}
    text = str(err.value)
    assert text.startswith("5 config errors:\n") and len(text.splitlines()) == 6
    assert "eval.ttt: must be one of off, full, lora, phased, got 'sometimes' (from file" in text
    assert "quant.calibration: validation data may never be used for calibration" in text


def test_a_rejected_choice_is_reported_once() -> None:
    """A bad Literal value does not also trip the checks that depend on it (they see the default)."""
    with pytest.raises(ConfigError) as err:
        load_config("tiny", env={}, overrides=["model.parallel_residual=both", "model.attn_gate=wide"])
    keys = [line.split(":")[0].strip() for line in str(err.value).splitlines()[1:]]
    assert keys == ["model.attn_gate", "model.parallel_residual"]


def test_a_single_error_is_one_line_starting_with_its_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env={}, overrides=["model.vocab_size=70000"])
    assert str(err.value) == "model.vocab_size: must be ≤ 65,536 (tokens are stored as uint16) (from --set)"
