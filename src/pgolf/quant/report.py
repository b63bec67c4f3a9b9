"""Per-tensor packing report: shape, format, bits, bytes and reconstruction error."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pgolf.quant.container import QuantizedModel, QuantizedTensor, dequantize, is_correction


def order0_bytes(t: Tensor | None) -> float:
    """Order-0 (byte-frequency) entropy of a tensor's raw bytes, in bytes: what an ideal entropy coder
    with no context would need. A fast stand-in for the compressed size of one tensor."""
    if t is None or t.numel() == 0:
        return 0.0
    raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    counts = np.bincount(raw, minlength=256).astype(np.float64)
    p = counts[counts > 0] / raw.size
    return float(-(p * np.log2(p)).sum() * raw.size / 8.0)


def estimated_bytes(qt: QuantizedTensor) -> float:
    return order0_bytes(qt.data) + order0_bytes(qt.scale)


def relative_error(original: Tensor, restored: Tensor) -> float:
    """‖W − Ŵ‖ / ‖W‖ (0 for an exact copy; 0 for an all-zero original restored as zeros)."""
    if not original.is_floating_point():
        return 0.0 if torch.equal(original, restored) else math.inf
    diff = (original.float() - restored.float()).norm().item()
    norm = original.float().norm().item()
    return diff / norm if norm > 0 else diff


def tensor_rows(state_dict: Mapping[str, Tensor], qm: QuantizedModel,
                formats: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per stored tensor, in model order; a corrected matrix's error includes its LQER correction
    (the correction entries themselves have no error of their own: nan)."""
    restored = dequantize(qm)
    rows = []
    for name, qt in qm.items():
        rows.append({
            "name": name, "shape": list(qt.data.shape), "format": formats.get(name, qt.scheme),
            "bits": qt.bits, "stored_bytes": qt.stored_bytes, "entropy_bytes": round(estimated_bytes(qt)),
            "rel_error": math.nan if is_correction(name) else relative_error(state_dict[name], restored[name]),
        })
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of `tensor_rows` with a total line."""
    width = max([len(r["name"]) for r in rows] + [6])
    lines = [f"{'tensor':<{width}}  {'shape':<13} {'format':<14} {'stored B':>11} {'entropy B':>11} {'rel err':>9}"]
    for r in rows:
        shape = "×".join(map(str, r["shape"])) or "scalar"
        lines.append(f"{r['name']:<{width}}  {shape:<13} {r['format']:<14} {r['stored_bytes']:>11,} "
                     f"{r['entropy_bytes']:>11,} {r['rel_error']:>9.2e}")
    stored = sum(r["stored_bytes"] for r in rows)
    entropy = sum(r["entropy_bytes"] for r in rows)
    lines.append(f"{'total':<{width}}  {'':<13} {'':<14} {stored:>11,} {entropy:>11,}")
    lines.append("entropy B = order-0 byte entropy (an estimate of the compressed size); rel err = ‖W−Ŵ‖/‖W‖")
    return "\n".join(lines)
