"""Fake quantization with a straight-through estimator, and the QAT training forward."""

from __future__ import annotations

import pytest
import torch

from pgolf.config import load_config
from pgolf.model.gpt import build_model
from pgolf.optim.factory import late_qat_bits, partition, qat_bits_for
from pgolf.quant.plan import QuantPlan
from pgolf.quant.qat import QATForward, fake_quant_ste, fake_quantize_per_row, roundtrip_state_dict
from testkit import present


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_fake_quantize_lands_on_the_per_row_int_grid(bits: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 40) * torch.logspace(-2, 1, 6)[:, None]
    q = fake_quantize_per_row(w, bits)
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True) / qmax
    codes = q / scale
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    assert codes.abs().max() <= qmax + 1e-4 and torch.allclose(codes.abs().amax(dim=1), torch.full((6,), float(qmax)))
    assert ((q - w).abs() <= scale / 2 + 1e-6).all()  # round to nearest
    with pytest.raises(ValueError, match=r"2\.\.8 bits"):
        fake_quantize_per_row(w, 9)


def test_straight_through_estimator() -> None:
    w = torch.randn(4, 8, requires_grad=True)
    off = fake_quant_ste(w, 4, torch.zeros(()))
    assert torch.equal(off, w)
    on = fake_quant_ste(w, 4, torch.ones(()))
    assert torch.equal(on.detach(), fake_quantize_per_row(w.detach(), 4))
    weights = torch.randn(4, 8)
    (on * weights).sum().backward()
    assert torch.equal(present(w.grad), weights)  # the gradient passes straight through the rounding


def test_qat_forward_uses_quantized_matrices_only_while_active() -> None:
    cfg = load_config("tiny", env={}, overrides=["model.num_layers=2", "model.model_dim=64", "model.num_heads=2",
                                                 "model.num_kv_heads=1"])
    torch.manual_seed(0)
    model = build_model(cfg.model, torch.device("cpu"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    active = torch.zeros(())
    bits_for = qat_bits_for(model, 3)
    qat = QATForward(model, bits_for, active)
    block_weights = {n for n, _ in model.named_parameters() if n.endswith(".weight") and n.startswith("blocks.")}
    assert set(qat.bits) == block_weights
    x, y = torch.randint(0, 1024, (2, 16)), torch.randint(0, 1024, (2, 16))
    assert torch.equal(qat(x, y), model(x, y))
    active.fill_(1.0)
    quantized = build_model(cfg.model, torch.device("cpu"))
    quantized.load_state_dict(roundtrip_state_dict(model.state_dict(), bits_for))
    torch.testing.assert_close(qat(x, y), quantized(x, y))
    assert not torch.equal(qat(x, y), model(x, y))
    assert [n for n, _ in qat.named_parameters()] == [f"model.{n}" for n, _ in model.named_parameters()]


def test_late_qat_rehearses_the_runs_quant_policy() -> None:
    """Each matrix is fake-quantized at the width the policy stores it at; float-stored matrices are left alone."""
    small = ["model.num_layers=2", "model.model_dim=64", "model.num_heads=2", "model.num_kv_heads=1"]
    cfg = load_config("tiny", env={}, overrides=small + ["quant.scheme=policy", "quant.policy=int5mlp"])
    model = build_model(cfg.model, torch.device("cpu"))
    bits = late_qat_bits(model, QuantPlan.resolve(cfg, model.state_dict()))
    matrices = set(partition(model)[0])
    mlp = {n for n in matrices if ".mlp." in n}
    assert mlp and bits == dict.fromkeys(mlp, 5)  # int5mlp: MLP matrices (64×192) at int5
    # attention matrices of this width hold ≤ 8,192 elements: the policy keeps them fp16, so QAT must not round them
    assert all(model.get_parameter(n).numel() <= 8192 for n in matrices - mlp)
    wide = load_config("tiny", env={}, overrides=["quant.scheme=policy", "quant.policy=int5mlp"])
    wide_model = build_model(wide.model, torch.device("cpu"))
    wide_bits = late_qat_bits(wide_model, QuantPlan.resolve(wide, wide_model.state_dict()))
    assert set(wide_bits.values()) == {5, 6}  # 256-wide attention is stored (and rehearsed) int6
    int8_cfg = load_config("tiny", env={}, overrides=small + ["train.qat_bits=4"])
    int8_bits = late_qat_bits(model, QuantPlan.resolve(int8_cfg, model.state_dict()))
    assert int8_bits == dict.fromkeys(matrices, 4)  # int8 scheme: one width, train.qat_bits


def test_scale_floor_puts_small_rows_on_one_grid() -> None:
    """With scale_floor = 1/qmax (the records' CastedLinear QAT) a row whose max is below 1 uses step 1/qmax."""
    w = torch.tensor([[0.05, -0.02, 0.011], [2.0, -1.0, 0.5]])
    q = fake_quantize_per_row(w, 6, scale_floor=1 / 31)
    assert torch.allclose(q[0], torch.tensor([2.0, -1.0, 0.0]) / 31)
    assert torch.allclose(q[1], fake_quantize_per_row(w[1:], 6)[0])
