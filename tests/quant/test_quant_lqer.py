"""LQER and the int8 gate rule, checked against the functions of the SOTA record script itself
(records/2026-04-27, PR #1855), which are loaded from its source (the script cannot be imported on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pgolf.artifact.format import encode_artifact, read_artifact, save_artifact_bytes
from pgolf.quant.container import LQER_A, LQER_B, QuantizedModel, QuantizedTensor, dequantize
from pgolf.quant.intk import ClipRule, quantize_rows
from pgolf.quant.lqer import LQERSettings, add_lqer, error_factors, pack_factors
from pgolf.quant.policy import assign_formats, load_policy
from testkit import SOTA_RECORD, record_functions

pytestmark = pytest.mark.skipif(not SOTA_RECORD.is_file(), reason="the shared record scripts are not checked out")


def _int6(name: str, w: torch.Tensor) -> QuantizedTensor:
    codes, scale = quantize_rows(w, 6, ClipRule.parse("max"))
    return QuantizedTensor(name, "per_row", 6, codes, scale, torch.float32)


def test_asymmetric_factors_are_the_records() -> None:
    torch.manual_seed(0)
    a, b = error_factors(torch.randn(96, 128) * 0.01, 4)
    ours_a, ours_b = pack_factors("w", a, b, LQERSettings())
    q_a, s_a, q_b, s_b = record_functions("_lqer_pack_asym")["_lqer_pack_asym"](a, b, 64)
    assert ours_a.scale is not None and ours_b.scale is not None
    assert torch.equal(ours_a.data, q_a) and torch.equal(ours_a.scale, s_a) and ours_a.bits == 2
    assert torch.equal(ours_b.data.reshape(b.shape), q_b) and torch.equal(ours_b.scale, s_b) and ours_b.bits == 4


def test_symmetric_form_when_b_does_not_divide_into_groups() -> None:
    torch.manual_seed(1)
    a, b = error_factors(torch.randn(10, 30), 3)
    pa, pb = pack_factors("w", a, b, LQERSettings(group=64))
    q_a, s_a, q_b, _ = record_functions("_lqer_pack")["_lqer_pack"](a, b, 4)
    assert (pa.scheme, pb.data.shape) == ("per_row", (3, 30))
    assert pa.scale is not None
    assert torch.equal(pa.data, q_a) and torch.equal(pa.scale, s_a) and torch.equal(pb.data, q_b)


def test_lqer_corrects_the_worst_matrices_and_survives_the_artifact(tmp_path: Path) -> None:
    torch.manual_seed(2)
    state = {f"m{i}": torch.randn(64, 128) * (i + 1) for i in range(4)}
    qm = QuantizedModel({n: _int6(n, w) for n, w in state.items()})
    corrected = add_lqer(qm, state, LQERSettings(rank=4, top_k=2))
    assert [n for n in corrected if n.endswith((LQER_A, LQER_B))] == ["m2" + LQER_A, "m2" + LQER_B,
                                                                      "m3" + LQER_A, "m3" + LQER_B]
    before, after = dequantize(qm), dequantize(corrected)
    assert list(after) == list(state)  # correction entries are folded into their matrices
    for name in ("m2", "m3"):
        assert (after[name] - state[name]).norm() < (before[name] - state[name]).norm()
    assert torch.equal(after["m0"], before["m0"])
    for transform in ("none", "bitpack"):
        blob, _, _ = encode_artifact(corrected, {}, "lzma", transform=transform)
        save_artifact_bytes(tmp_path / "a.pgolf", blob)
        loaded, _ = read_artifact(tmp_path / "a.pgolf")
        assert all(torch.equal(x, after[n]) for n, x in dequantize(loaded).items())


def test_gate_rule_of_sdclip_is_the_records_int8_row_rule() -> None:
    torch.manual_seed(3)
    gate = torch.randn(8, 12)
    state = {"blocks.0.attn.gate.attn_gate_w": gate, "blocks.0.attn.small": torch.randn(4, 4)}
    formats = assign_formats(load_policy("sdclip"), state).formats
    assert str(formats["blocks.0.attn.gate.attn_gate_w"]) == "int8/max" and formats["blocks.0.attn.small"].bits is None
    clip = formats["blocks.0.attn.gate.attn_gate_w"].clip
    assert clip is not None
    codes, scale = quantize_rows(gate, 8, clip)
    q, s = record_functions("_quantize_gate_int8_row")["_quantize_gate_int8_row"](gate)
    assert torch.equal(codes, q) and torch.equal(scale, s)
