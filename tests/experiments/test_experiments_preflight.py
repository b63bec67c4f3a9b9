"""`pgolf preflight`: green on a sound preset, red (exit 3) naming the check that fails."""

from __future__ import annotations

import pytest

from pgolf.cli import main
from pgolf.config import load_config
from pgolf.experiments.preflight import BASELINE_TFLOPS_PER_GPU, project_steps


def test_tiny_preset_is_all_green(capsys) -> None:
    assert main(["preflight", "--preset", "tiny", "--set", "train.threads=1"]) == 0
    out = capsys.readouterr().out
    names = ("imports", "config", "model", "forward/backward", "code size", "artifact size", "step time",
             "quantization error")
    for name in names:
        assert any(line.startswith("GREEN") and f" {name} " in line for line in out.splitlines()), name
    assert out.strip().endswith("preflight: all green")


def test_a_model_over_budget_is_red(capsys) -> None:
    argv = ["preflight", "--preset", "tiny", "--set", "model.model_dim=768", "--set", "model.num_heads=8",
            "--set", "model.num_kv_heads=4", "--set", "train.threads=1"]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert any(line.startswith("RED") and "artifact size" in line for line in out.splitlines())
    assert out.strip().endswith("preflight: RED: artifact size")


def test_a_bad_config_is_red_and_skips_the_rest(capsys) -> None:
    assert main(["preflight", "--preset", "tiny", "--set", "model.model_dim=250"]) == 3
    out = capsys.readouterr().out
    assert "RED    config" in out and "model.model_dim" in out and "forward/backward" not in out


def test_step_projection_reproduces_the_baseline_on_8xh100() -> None:
    step_ms, steps = project_steps(load_config("baseline", env={}), gpus=8, tflops=BASELINE_TFLOPS_PER_GPU)
    assert step_ms == pytest.approx(43.54, rel=0.01)  # the naive baseline's measured ms/step
    assert steps == pytest.approx(13_780, rel=0.01)
    one_gpu_ms, one_gpu_steps = project_steps(load_config("baseline", env={}), gpus=1, tflops=BASELINE_TFLOPS_PER_GPU)
    assert one_gpu_ms == pytest.approx(8 * step_ms) and one_gpu_steps == pytest.approx(steps / 8, rel=0.01)
