"""Quantization-aware training: per-row symmetric int-k fake quantization with a straight-through estimator.

The forward pass sees `w + active · stopgrad(q(w) − w)`: with `active = 1` the weights the network uses
are exactly the int-k round-to-nearest grid values (codes in [−(2^(k−1)−1), 2^(k−1)−1], one scale per
output row = row max |w| / (2^(k−1)−1)); gradients flow to the float weights unchanged. `active` is a
0-d tensor, so late QAT can switch on inside a compiled graph without a recompile and without being
constant-folded away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

QAT_MIN_BITS = 2
QAT_MAX_BITS = 8
BitsFor = Callable[[str, Tensor], int | None]  # bit width of a named tensor, None = not fake-quantized
QATGrid = Literal["row_max", "floored", "floored_asym"]  # `train.qat_grid`; see `grid_values`


def fake_quantize_per_row(w: Tensor, bits: int, scale_floor: float = 0.0, one_more_below: bool = False) -> Tensor:
    """Round each row of a 2-D tensor to its symmetric int-`bits` grid (values, not codes).

    `scale_floor` is the smallest step (the records' CastedLinear QAT floors it at 1/R, so small rows share one
    coarse grid); `one_more_below` clamps codes to [−R − 1, R] instead of ±R, as PR #1289's QAT does.
    """
    if not QAT_MIN_BITS <= bits <= QAT_MAX_BITS:
        raise ValueError(f"per-row fake quantization supports {QAT_MIN_BITS}..{QAT_MAX_BITS} bits, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    w32 = w.float()
    floor = max(scale_floor, torch.finfo(torch.float32).tiny)
    scale = (w32.abs().amax(dim=-1, keepdim=True) / qmax).clamp_min(floor)
    return (torch.clamp(torch.round(w32 / scale), -qmax - int(one_more_below), qmax) * scale).to(w.dtype)


def grid_values(w: Tensor, bits: int, grid: QATGrid) -> Tensor:
    """`w` on the QAT grid `grid`: `row_max` (step row max |w| / R, codes ±R); `floored` (step at least 1/R, as
    PR #635's `CastedLinear` QAT: a row whose largest |w| is below 1 lands on the grid 1/R, most of its weights
    round to 0); `floored_asym` (the same with codes in [−R − 1, R], as PR #1289's)."""
    floor = 0.0 if grid == "row_max" else 1.0 / (2 ** (bits - 1) - 1)
    return fake_quantize_per_row(w, bits, floor, one_more_below=grid == "floored_asym")


def fake_quant_ste(w: Tensor, bits: int, active: Tensor, grid: QATGrid = "row_max") -> Tensor:
    """`w` when `active` is 0; its values on the int-k `grid` (gradient passing straight through) when 1."""
    return w + active.to(w.dtype) * (grid_values(w, bits, grid) - w).detach()


def bits_from_mapping(mapping: Mapping[str, int]) -> BitsFor:
    return lambda name, tensor: mapping.get(name)


class QATForward(nn.Module):
    """The model's training loss with selected weights fake-quantized while `active` is 1.

    Uses `functional_call`, so the model's parameters, names and state dict are untouched; the
    gradient of each substituted weight reaches the real parameter.
    """

    def __init__(self, model: nn.Module, bits_for: BitsFor, active: Tensor, grid: QATGrid = "row_max") -> None:
        super().__init__()
        self.model = model
        self.active = active
        self.grid: QATGrid = grid
        self.bits = {name: b for name, p in model.named_parameters() if (b := bits_for(name, p)) is not None}
        if not self.bits:
            raise ValueError("late QAT selected no tensors to fake-quantize")

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        params = dict(self.model.named_parameters())
        swapped = {name: fake_quant_ste(params[name], bits, self.active, self.grid)
                   for name, bits in self.bits.items()}
        return functional_call(self.model, swapped, (input_ids, target_ids))


@torch.no_grad()
def roundtrip_state_dict(state_dict: Mapping[str, Tensor], bits_for: BitsFor) -> dict[str, Tensor]:
    """The weights after an int-k round-to-nearest roundtrip of the selected tensors (others unchanged)."""
    out = {}
    for name, tensor in state_dict.items():
        bits = bits_for(name, tensor)
        out[name] = fake_quantize_per_row(tensor, bits) if bits is not None else tensor
    return out
