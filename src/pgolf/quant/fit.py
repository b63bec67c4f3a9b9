"""Sensitivity-driven bit allocation under a byte budget.

1. `measure_sensitivity`: for every int-k tensor and every candidate bit width, quantize that tensor
   alone (same clip rule, GPTQ when Hessians are given), put it into the float model and measure the
   mean loss increase on the calibration tokens (never validation data). Its size is estimated by the
   order-0 entropy of its codes and scales.
2. `allocate_bits`: choose one width per tensor minimising the summed loss increase with the estimated
   total within the target (an exact multiple-choice knapsack by dynamic programming over byte
   buckets; loss increases are assumed additive across tensors).

The caller closes the loop with real packing: it re-solves with a corrected target until the
compressed artifact fits (see `pgolf.packing`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pgolf.errors import ArtifactError
from pgolf.model.gpt import GPT
from pgolf.quant.container import QuantizedTensor, dequantize_tensor
from pgolf.quant.mixed import TensorQuantizer
from pgolf.quant.policy import TensorFormat
from pgolf.quant.report import estimated_bytes

ALLOCATION_RESOLUTION = 8192  # byte buckets of the knapsack: target / 8192 granularity


@dataclass(frozen=True)
class Sensitivity:
    """Per tensor and bit width: loss increase (nats/token), estimated bytes, the quantized tensor and
    the method that made it (kept so the allocation can be packed without quantizing again)."""

    base_loss: float
    loss_increase: dict[str, dict[int, float]]
    est_bytes: dict[str, dict[int, float]]
    quantized: dict[str, dict[int, QuantizedTensor]]
    methods: dict[str, dict[int, str]]


@torch.no_grad()
def calibration_loss(model: GPT, sequences: Tensor, batch: int = 8, autocast_dtype: torch.dtype | None = None) -> float:
    """Mean next-token loss (nats) of `model` over (count, seq_len + 1) token rows."""
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    total, tokens = 0.0, 0
    with autocast:
        for start in range(0, sequences.shape[0], batch):
            rows = sequences[start : start + batch].to(device)
            losses = model.token_losses(rows[:, :-1], rows[:, 1:])
            total += float(losses.double().sum())
            tokens += losses.numel()
    return total / tokens


@torch.no_grad()
def measure_sensitivity(model: GPT, state_dict: Mapping[str, Tensor], formats: Mapping[str, TensorFormat],
                        candidate_bits: tuple[int, ...], quantizer: TensorQuantizer, sequences: Tensor,
                        autocast_dtype: torch.dtype | None = None) -> Sensitivity:
    """Loss increase of quantizing each int-k tensor alone at each candidate width."""
    was_training = model.training
    model.eval()
    try:
        base = calibration_loss(model, sequences, autocast_dtype=autocast_dtype)
        result = Sensitivity(base, {}, {}, {}, {})
        for name, fmt in formats.items():
            if fmt.bits is None:
                continue
            param = model.get_parameter(name)
            original = param.data.clone()
            for table in (result.loss_increase, result.est_bytes, result.quantized, result.methods):
                table[name] = {}
            for bits in candidate_bits:
                qt, method = quantizer.quantize(name, state_dict[name], fmt.with_bits(bits))
                param.data.copy_(dequantize_tensor(qt).to(param.dtype))
                loss = calibration_loss(model, sequences, autocast_dtype=autocast_dtype)
                result.loss_increase[name][bits] = loss - base
                result.est_bytes[name][bits] = estimated_bytes(qt)
                result.quantized[name][bits], result.methods[name][bits] = qt, method
            param.data.copy_(original)
    finally:
        model.train(was_training)
    return result


def allocate_bits(sensitivity: Sensitivity, target_bytes: float,
                  resolution: int = ALLOCATION_RESOLUTION) -> dict[str, int]:
    """Bits per tensor minimising the summed loss increase with estimated bytes ≤ target_bytes.

    An exact multiple-choice knapsack by dynamic programming over `resolution` byte buckets; sizes are
    rounded up to whole buckets, so the chosen total never exceeds the target.
    """
    names = list(sensitivity.est_bytes)
    narrowest = sum(min(sensitivity.est_bytes[n].values()) for n in names)
    if target_bytes <= 0 or narrowest > target_bytes:
        raise ArtifactError(
            f"even at the narrowest candidate widths the quantized tensors need ≈{narrowest:,.0f} bytes, "
            f"over the {max(target_bytes, 0):,.0f} available: allow fewer bits (quant.fit_bits), prune "
            "(quant.prune_fraction) or shrink the model")
    unit = target_bytes / resolution
    best = np.zeros(resolution + 1)  # best[c]: least loss of the tensors so far within c buckets
    picks = []
    for name in names:
        options = sorted(sensitivity.est_bytes[name], reverse=True)
        step = np.full((len(options), resolution + 1), np.inf)
        for i, bits in enumerate(options):
            cost = math.ceil(sensitivity.est_bytes[name][bits] / unit - 1e-9)
            if cost <= resolution:
                step[i, cost:] = best[: resolution + 1 - cost] + sensitivity.loss_increase[name][bits]
        picks.append((name, options, step.argmin(axis=0)))
        best = step.min(axis=0)
    if not np.isfinite(best[resolution]):
        raise ArtifactError(f"no allocation fits {target_bytes:,.0f} bytes at this resolution: raise the budget")
    choice: dict[str, int] = {}
    capacity = resolution
    for name, options, argmins in reversed(picks):
        bits = options[int(argmins[capacity])]
        choice[name] = bits
        capacity -= math.ceil(sensitivity.est_bytes[name][bits] / unit - 1e-9)
    return {name: choice[name] for name in names}
