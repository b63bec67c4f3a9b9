"""Control parameters are declared by the modules that own them, and every consumer agrees on them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pgolf.config import load_config, preset_names
from pgolf.model.gpt import GPT, build_model
from pgolf.model.layers import control_parameter_names, declares_controls
from pgolf.quant.int8 import INT8_KEEP_FLOAT_FP32_NAME_PATTERNS


def _meta_model(preset: str) -> GPT:
    with torch.device("meta"):
        return GPT(load_config(preset, env={}).model)


@pytest.mark.parametrize("preset", preset_names())
def test_declared_controls_are_adam_trained_and_kept_float_by_the_int8_export(preset: str) -> None:
    model = _meta_model(preset)
    controls = control_parameter_names(model)
    names = {id(p): n for n, p in model.named_parameters()}
    scalar = {names[id(p)] for p in model.optimizer_groups().scalar}
    assert controls <= scalar
    by_pattern = {n for n in names.values() if any(pattern in n for pattern in INT8_KEEP_FLOAT_FP32_NAME_PATTERNS)}
    assert by_pattern == controls, "the int8 export's name list and the modules' declarations disagree"


def test_declarations_are_inherited_and_qualified_by_their_module_path() -> None:
    @declares_controls("mix")
    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mix = nn.Parameter(torch.ones(4, 4))
            self.proj = nn.Parameter(torch.ones(4, 4))

    @declares_controls("gain")
    class GainedMixer(Mixer):  # a subclass adds to its base's declaration
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(4, 4))

    outer = nn.Sequential(GainedMixer())
    assert control_parameter_names(outer) == {"0.mix", "0.gain"}


def test_low_precision_storage_keeps_declared_controls_fp32() -> None:
    cfg = load_config("tiny", env={}, overrides=["model.num_layers=2", "model.model_dim=64", "model.num_heads=2",
                                                   "model.num_kv_heads=1"])
    model = build_model(cfg.model, torch.device("cpu"), low_precision_storage=True)
    params = dict(model.named_parameters())
    assert all(params[name].dtype == torch.float32 for name in control_parameter_names(model))
    assert model.tok_emb.weight.dtype == torch.bfloat16
