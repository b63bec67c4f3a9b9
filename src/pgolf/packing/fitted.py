"""The `fit` scheme's packing: the bit widths re-solved until the real artifact fits the budget.

`pgolf.quant.fit` measures each tensor's sensitivity and solves the allocation against an estimated size;
the estimate is only an estimate, so each round packs the allocation for real and corrects the target by
how far the artifact landed from the bytes available (the budget less its margin and the shipped code).
Imported only by runs of the `fit` scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from pgolf.config import Config
from pgolf.errors import ArtifactError
from pgolf.packing import Encoder, Packed, counted_code
from pgolf.packing.planned import with_lqer
from pgolf.quant.container import QuantizedModel, QuantizedTensor
from pgolf.quant.mixed import TensorQuantizer
from pgolf.quant.policy import TensorFormat
from pgolf.quant.report import estimated_bytes

if TYPE_CHECKING:
    from pgolf.quant.fit import Sensitivity

FIT_ROUNDS = 6
FIT_CLOSE_ENOUGH = 0.995  # stop re-solving once the artifact uses this fraction of the available bytes


def pack_fitted(state_dict: Mapping[str, Tensor], formats: Mapping[str, TensorFormat], sensitivity: Sensitivity,
         quantizer: TensorQuantizer, encode: Encoder, cfg: Config, quant_meta: Mapping[str, Any]) -> Packed:
    """Re-solve the allocation with a corrected target until the real artifact fits; keep the best fit."""
    from pgolf.quant.fit import allocate_bits

    fixed = {n: quantizer.quantize(n, t, formats[n])[0]
             for n, t in state_dict.items() if n not in sensitivity.est_bytes}
    fixed_est = sum(estimated_bytes(qt) for qt in fixed.values())
    available = cfg.quant.budget_bytes - cfg.quant.budget_margin - counted_code(cfg)[0]
    target = float(available)
    best: Packed | None = None
    smallest_excess = None
    for round_index in range(FIT_ROUNDS):
        try:
            bits = allocate_bits(sensitivity, target - fixed_est)
        except ArtifactError:
            if best is None:
                raise
            break
        tensors: dict[str, QuantizedTensor] = {}
        for name in state_dict:
            tensors[name] = fixed[name] if name in fixed else sensitivity.quantized[name][bits[name]]
        predicted = sum(sensitivity.loss_increase[n][b] for n, b in bits.items())
        methods = {n: sensitivity.methods[n][b] for n, b in bits.items()}
        meta = {**quant_meta, "methods": methods, "fit_bits": bits, "fit_predicted_loss_increase": predicted,
                "fit_available_bytes": available, "fit_rounds": round_index + 1,
                "fit_base_calibration_loss": sensitivity.base_loss}
        qm = with_lqer(QuantizedModel(tensors), state_dict, cfg, meta)
        blob, codec, transform = encode(qm, meta)
        if len(blob) <= available:
            if best is None or predicted < best.quant_meta["fit_predicted_loss_increase"]:
                best = Packed(blob, codec, transform, qm, [], meta)
            if len(blob) >= FIT_CLOSE_ENOUGH * available:
                break
        else:
            smallest_excess = min(len(blob) - available, smallest_excess or len(blob))
        target *= available / len(blob)
    if best is None:
        raise ArtifactError(f"quant fit: the closest allocation is still {smallest_excess:,} bytes over the "
                            f"{available:,} bytes available (budget − margin − code): allow fewer bits "
                            "(quant.fit_bits), prune (quant.prune_fraction) or try quant.codec=auto")
    return best
