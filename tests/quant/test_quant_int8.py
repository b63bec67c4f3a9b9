"""pgolf.quant.int8 against a direct re-implementation of the baseline's formulas (TECHNIQUES §3.8)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from pgolf.quant import QuantizedModel, QuantizedTensor, dequantize, quantize_state_dict_int8
from pgolf.quant.int8 import INT8_KEEP_FLOAT_FP32_NAME_PATTERNS, KEEP_FLOAT_MAX_NUMEL
from testkit import present

Q = 0.9999984


def ref_per_row(w: Tensor) -> tuple[Tensor, Tensor]:
    """Row by row, straight from the formulas."""
    codes, scales = [], []
    for row in w.float():
        clip = torch.quantile(row.abs(), Q)
        scale = torch.clamp(clip / 127, min=1 / 127)
        codes.append(torch.round(row.clamp(-clip, clip) / scale).clamp(-127, 127).to(torch.int8))
        scales.append(scale.to(torch.float16))
    return torch.stack(codes), torch.stack(scales)


def ref_per_tensor(w: Tensor) -> tuple[Tensor, Tensor]:
    flat = w.float()
    clip = torch.quantile(flat.abs().flatten(), Q).item()
    scale = torch.tensor(clip / 127 if clip > 0 else 1.0)
    return torch.round(flat.clamp(-clip, clip) / scale).clamp(-127, 127).to(torch.int8), scale


def random_matrix(rows: int, cols: int, seed: int = 0) -> Tensor:
    """Rows spanning 1e-2..1e1 in magnitude (both sides of the 1/127 scale floor) with outliers."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.logspace(-2, 1, rows)[:, None]
    w[::7, 3] *= 40.0
    return w


def baseline_state_dict(dim: int = 256, vocab: int = 512, layers: int = 2) -> dict[str, Tensor]:
    sd: dict[str, Tensor] = {"tok_emb.weight": random_matrix(vocab, dim, 1).bfloat16(),
                             "skip_weights": torch.rand(layers // 2, dim)}
    for i in range(layers):
        p = f"blocks.{i}."
        sd[p + "attn.c_q.weight"] = random_matrix(dim, dim, 10 + i)  # exactly 65,536 elements: passthrough
        sd[p + "attn.c_k.weight"] = random_matrix(dim // 2, dim, 20 + i)
        sd[p + "attn.c_v.weight"] = random_matrix(dim // 2, dim, 30 + i)
        sd[p + "attn.proj.weight"] = random_matrix(dim, dim, 40 + i)
        sd[p + "attn.q_gain"] = torch.full((4,), 1.5)
        sd[p + "mlp.fc.weight"] = random_matrix(2 * dim, dim, 50 + i)
        sd[p + "mlp.proj.weight"] = random_matrix(dim, 2 * dim, 60 + i)
        sd[p + "attn_scale"] = torch.rand(dim)
        sd[p + "mlp_scale"] = torch.rand(dim)
        sd[p + "resid_mix"] = torch.rand(2, dim)
    return sd


@pytest.fixture(scope="module")
def state_dict() -> dict[str, Tensor]:
    return baseline_state_dict()


@pytest.fixture(scope="module")
def qm(state_dict: dict[str, Tensor]) -> QuantizedModel:
    return quantize_state_dict_int8(state_dict)


def test_schemes_follow_the_baseline_rules(qm: QuantizedModel, state_dict: dict[str, Tensor]) -> None:
    assert list(qm) == list(state_dict)
    schemes = {name: qt.scheme for name, qt in qm.items()}
    assert schemes["tok_emb.weight"] == schemes["blocks.0.mlp.fc.weight"] == "per_row"
    assert schemes["blocks.1.mlp.proj.weight"] == "per_row"
    assert schemes["blocks.0.attn.c_q.weight"] == "passthrough"  # numel == 65,536 is kept as float
    assert state_dict["blocks.0.attn.c_q.weight"].numel() == KEEP_FLOAT_MAX_NUMEL
    assert all(qt.bits == 8 for qt in qm.values() if qt.scheme != "passthrough")
    assert all(qt.bits is None and qt.scale is None for qt in qm.values() if qt.scheme == "passthrough")


def test_per_row_codes_and_scales_match_formulas_bit_for_bit(qm: QuantizedModel, state_dict: dict[str, Tensor]) -> None:
    for name, qt in qm.items():
        if qt.scheme != "per_row":
            continue
        codes, scales = ref_per_row(state_dict[name])
        assert qt.data.dtype == torch.int8 and present(qt.scale).dtype == torch.float16
        assert torch.equal(qt.data, codes), name
        assert torch.equal(present(qt.scale).view(torch.int16), scales.view(torch.int16)), name
        assert qt.orig_dtype == state_dict[name].dtype


def test_dequantize_matches_formula(qm: QuantizedModel, state_dict: dict[str, Tensor]) -> None:
    out = dequantize(qm)
    assert list(out) == list(state_dict)
    for name, t in out.items():
        qt = qm[name]
        assert t.dtype == state_dict[name].dtype and t.shape == state_dict[name].shape
        if qt.scheme == "per_row":
            expected = (qt.data.float() * present(qt.scale).float()[:, None]).to(t.dtype)
            assert torch.equal(t, expected), name


def test_roundtrip_error_bound_per_row() -> None:
    w = random_matrix(300, 256, seed=3)
    qt = quantize_state_dict_int8({"m": w})["m"]
    deq = dequantize(QuantizedModel({"m": qt}))["m"]
    clip = torch.quantile(w.abs(), Q, dim=1)[:, None]
    s32 = (clip / 127).clamp_min(1 / 127)
    # Codes are computed with the fp32 scale but decoded with the stored fp16 one.
    bound = s32 / 2 + 127 * (s32 - present(qt.scale).float()[:, None]).abs() + 1e-6 * clip
    inside = w.abs() <= clip
    assert inside.float().mean() > 0.99 and (~inside).any()
    assert ((w - deq).abs() <= bound)[inside].all()
    assert ((w.sign() * clip - deq).abs() <= bound)[~inside].all()
    assert (deq.abs() <= clip + bound).all()
    assert (s32 == 1 / 127).any() and (s32 > 1 / 127).any()  # both sides of the scale floor exercised


@pytest.mark.parametrize("shape", [(64, 32, 40), (70_000,)])
def test_per_tensor_path(shape: tuple[int, ...]) -> None:
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(5)) * 3
    w.view(-1)[17] = 500.0
    qt = quantize_state_dict_int8({"t": w})["t"]
    codes, scale = ref_per_tensor(w)
    assert qt.scheme == "per_tensor" and qt.bits == 8
    stored = present(qt.scale)
    assert stored.dtype == torch.float32 and stored.ndim == 0
    assert torch.equal(qt.data, codes) and torch.equal(stored, scale)
    deq = dequantize(QuantizedModel({"t": qt}))["t"]
    assert torch.equal(deq, qt.data.float() * scale.item())
    clip = scale.item() * 127
    inside = w.abs() <= clip
    assert ((w - deq).abs() <= scale / 2 + 1e-5)[inside].all()
    assert deq.abs().max() <= clip * (1 + 1e-6)


def test_all_zero_tensor_gets_unit_scale() -> None:
    qt = quantize_state_dict_int8({"z": torch.zeros(70_000)})["z"]
    assert present(qt.scale).item() == 1.0 and not qt.data.any()
    assert not quantize_state_dict_int8({"z": torch.zeros(300, 300)})["z"].data.any()


def test_passthrough_dtypes_and_patterns() -> None:
    sd = {
        "blocks.0.attn_scale": torch.rand(8),
        "blocks.0.resid_mix": torch.rand(2, 8).bfloat16(),
        "small.fp32": torch.rand(10),
        "small.bf16": torch.rand(10).bfloat16(),
        "small.fp16": torch.rand(10).half(),
        "small.fp64": torch.rand(10, dtype=torch.float64),
        "counts": torch.arange(100_000),
        "mask": torch.tensor([True, False]),
    }
    qm = quantize_state_dict_int8(sd)
    stored = {name: qt.data.dtype for name, qt in qm.items()}
    assert stored == {
        "blocks.0.attn_scale": torch.float32, "blocks.0.resid_mix": torch.float32,
        "small.fp32": torch.float16, "small.bf16": torch.float16, "small.fp16": torch.float16,
        "small.fp64": torch.float64, "counts": torch.int64, "mask": torch.bool,
    }
    assert all(qt.scheme == "passthrough" for qt in qm.values())
    out = dequantize(qm)
    for name, t in sd.items():
        assert out[name].dtype == t.dtype, name
    for exact in ("blocks.0.attn_scale", "blocks.0.resid_mix", "small.fp16", "small.fp64", "counts", "mask"):
        assert torch.equal(out[exact], sd[exact]), exact
    assert torch.equal(out["small.fp32"], sd["small.fp32"].half().float())
    assert torch.equal(out["small.bf16"], sd["small.bf16"].half().bfloat16())


def test_keep_fp32_patterns_are_a_parameter() -> None:
    sd = {"blocks.0.attn_scale": torch.rand(8), "blocks.0.attn.c_k.weight": torch.rand(4, 8)}
    default = quantize_state_dict_int8(sd)
    custom = quantize_state_dict_int8(sd, keep_fp32_patterns=["c_k"])
    assert default["blocks.0.attn_scale"].data.dtype == torch.float32
    assert default["blocks.0.attn.c_k.weight"].data.dtype == torch.float16
    assert custom["blocks.0.attn_scale"].data.dtype == torch.float16
    assert custom["blocks.0.attn.c_k.weight"].data.dtype == torch.float32
    assert "skip_weights" in INT8_KEEP_FLOAT_FP32_NAME_PATTERNS and "q_gain" in INT8_KEEP_FLOAT_FP32_NAME_PATTERNS


def test_stats(qm: QuantizedModel, state_dict: dict[str, Tensor]) -> None:
    stats = qm.stats
    assert stats["num_tensors"] == len(state_dict)
    assert stats["param_count"] == sum(t.numel() for t in state_dict.values())
    assert stats["baseline_tensor_bytes"] == sum(t.numel() * t.element_size() for t in state_dict.values())
    assert stats["num_quantized"] == sum(qt.scheme != "passthrough" for qt in qm.values())
    assert stats["num_quantized"] + stats["num_passthrough"] == len(state_dict)
    expected_payload = sum(qt.data.numel() * qt.data.element_size()
                           + (0 if qt.scale is None else qt.scale.numel() * qt.scale.element_size())
                           for qt in qm.values())
    assert stats["payload_bytes"] == expected_payload


@pytest.mark.parametrize(
    ("scheme", "bits", "scale"),
    [("passthrough", None, torch.ones(3)), ("per_row", None, torch.ones(3)), ("per_row", 8, torch.ones(2)),
     ("per_tensor", 8, torch.ones(3)), ("per_row", 8, None), ("int3", 3, torch.ones(3))],
)
def test_inconsistent_quantized_tensor_is_rejected(scheme: Any, bits: int | None, scale: Tensor | None) -> None:
    with pytest.raises(ValueError):
        QuantizedTensor("w", scheme, bits, torch.zeros(3, 4, dtype=torch.int8), scale, torch.float32)


def test_bits_field_accepts_other_widths() -> None:
    codes = torch.full((3, 4), 31, dtype=torch.int8)
    qt = QuantizedTensor("w", "per_row", 6, codes, torch.full((3,), 0.5), torch.float32)
    out = dequantize(QuantizedModel({"w": qt}))["w"]
    assert torch.equal(out, torch.full((3, 4), 15.5))
