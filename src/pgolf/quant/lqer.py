"""LQER: a low-rank correction of the quantization error of the worst-quantized matrices (TECHNIQUES §4.5).

For each int-k matrix W with stored approximation W_q, E = W − W_q. The `top_k` matrices with the
largest ‖E‖_F get a rank-r factorisation E ≈ A·B from the SVD (A = U_r·S_r, B = V_rᵀ), stored in very
few bits next to W_q; loading restores W_q + A·B (`container.dequantize`).

Two storage forms, as in the records:

* asymmetric (`group` > 0, the form of records/2026-04-27, PR #1855): A as int2 codes in [−2, 1] with one
  scale max|A|/1.5 for the whole factor; B as int4 codes in [−8, 7] over its values taken in groups of
  `group`, one scale max/7.5 per group (B is stored as a (r·cols/group, group) matrix). Used whenever
  B's size divides into groups;
* symmetric: A and B as per-row int-`factor_bits` codes with scale max|row| / (2^(bits−1) − 1).

Scales are fp16 and never below 1e-10, like every pgolf scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from pgolf.quant.container import LQER_A, LQER_B, QuantizedModel, QuantizedTensor, dequantize_tensor, is_correction

_FLOOR = 1e-10
_A_RANGE = (-2, 1)  # asymmetric A: signed int2
_B_RANGE = (-8, 7)  # asymmetric B: signed int4


@dataclass(frozen=True)
class LQERSettings:
    rank: int = 4
    top_k: int = 3
    group: int = 64  # 0: the symmetric form only
    factor_bits: int = 4  # symmetric form


def error_factors(error: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """(A, B) of the best rank-`rank` approximation A·B of a 2-D `error` (fewer when the matrix is smaller)."""
    u, s, vh = torch.linalg.svd(error.float(), full_matrices=False)
    r = min(rank, s.numel())
    return (u[:, :r] * s[:r]).contiguous(), vh[:r].contiguous()


def _codes(x: Tensor, scale: Tensor, low: int, high: int) -> Tensor:
    return torch.clamp(torch.round(x / scale.float()), low, high).to(torch.int8)


def _per_row(name: str, x: Tensor, bits: int) -> QuantizedTensor:
    r = 2 ** (bits - 1) - 1
    scale = (x.abs().amax(dim=1).clamp_min(_FLOOR) / r).to(torch.float16)
    return QuantizedTensor(name, "per_row", bits, _codes(x, scale[:, None], -r, r), scale, torch.float32)


def pack_factors(name: str, a: Tensor, b: Tensor, settings: LQERSettings) -> tuple[QuantizedTensor, QuantizedTensor]:
    """The stored correction entries of matrix `name` (asymmetric form when B divides into groups)."""
    g = settings.group
    if g > 0 and b.numel() % g == 0:
        scale_a = (a.abs().amax().clamp_min(_FLOOR) / 1.5).to(torch.float16)
        groups = b.reshape(-1, g)
        scale_b = (groups.abs().amax(dim=1).clamp_min(_FLOOR) / 7.5).to(torch.float16)
        return (QuantizedTensor(name + LQER_A, "per_tensor", 2, _codes(a, scale_a, *_A_RANGE), scale_a, torch.float32),
                QuantizedTensor(name + LQER_B, "per_row", 4, _codes(groups, scale_b[:, None], *_B_RANGE), scale_b,
                                torch.float32))
    return _per_row(name + LQER_A, a, settings.factor_bits), _per_row(name + LQER_B, b, settings.factor_bits)


def quantization_errors(qm: QuantizedModel, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """E = W − W_q (as rows × rest matrices) of every int-k matrix of `qm` below 8 bits.

    int8 tensors are not candidates: the record corrects its GPTQ int6/int7 matrices, not its int8 gates.
    """
    errors = {}
    for name, qt in qm.items():
        if qt.scheme == "per_row" and qt.bits is not None and qt.bits < 8 and not is_correction(name) \
                and qt.data.ndim >= 2:
            original = state_dict[name].float()
            errors[name] = (original - dequantize_tensor(qt).float()).reshape(original.shape[0], -1)
    return errors


def add_lqer(qm: QuantizedModel, state_dict: Mapping[str, Tensor], settings: LQERSettings) -> QuantizedModel:
    """`qm` with correction entries for its `top_k` int-k matrices of largest ‖W − W_q‖_F.

    Each correction follows its matrix, so the artifact keeps model order.
    """
    errors = quantization_errors(qm, state_dict)
    chosen = sorted(errors, key=lambda n: -float(errors[n].norm()))[: settings.top_k]
    tensors: dict[str, QuantizedTensor] = {}
    for name, qt in qm.items():
        tensors[name] = qt
        if name in chosen:
            a, b = error_factors(errors[name], settings.rank)
            for entry in pack_factors(name, a, b, settings):
                tensors[entry.name] = entry
    return QuantizedModel(tensors)
