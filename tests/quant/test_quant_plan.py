"""One QuantPlan feeds late QAT and packing: the widths QAT rehearses are the widths the artifact stores."""

from __future__ import annotations

import pytest
import torch

from pgolf.config import load_config
from pgolf.errors import ArtifactError
from pgolf.model.gpt import build_model
from pgolf.optim.factory import late_qat_bits, partition
from pgolf.packing import pack_weights
from pgolf.quant.plan import QuantPlan

SMALL = ["model.num_layers=2", "model.model_dim=64", "model.num_heads=2", "model.num_kv_heads=1",
         "quant.scheme=policy", "quant.policy=int5mlp"]


def _no_train_files() -> list:
    raise AssertionError("round-to-nearest packing reads no calibration data")


def test_qat_and_packing_see_the_same_per_matrix_bits() -> None:
    cfg = load_config("tiny", env={}, overrides=SMALL)
    model = build_model(cfg.model, torch.device("cpu"))
    plan = QuantPlan.resolve(cfg, model.state_dict())
    rehearsed = late_qat_bits(model, plan)
    packed = pack_weights(model.state_dict(), cfg, {}, torch.device("cpu"), _no_train_files, plan=plan)
    stored = {name: qt.bits for name, qt in packed.quantized.items() if qt.bits is not None}
    matrices = set(partition(model)[0])
    assert rehearsed and {n: stored[n] for n in rehearsed} == rehearsed
    assert set(stored) & matrices == set(rehearsed)  # a matrix stored in float is not fake-quantized


def test_a_plan_for_other_tensors_is_refused() -> None:
    cfg = load_config("tiny", env={}, overrides=SMALL)
    model = build_model(cfg.model, torch.device("cpu"))
    plan = QuantPlan.resolve(cfg, {k: v for k, v in model.state_dict().items() if "blocks.1." not in k})
    with pytest.raises(ArtifactError, match="other tensors"):
        pack_weights(model.state_dict(), cfg, {}, torch.device("cpu"), _no_train_files, plan=plan)
