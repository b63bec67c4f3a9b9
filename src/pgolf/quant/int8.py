"""The baseline's int8 export (`train_gpt.py`, format "int8_clean_per_row_v1"), numerically identical.

Per tensor, in state-dict order:

* non-float: stored unchanged;
* float with at most `KEEP_FLOAT_MAX_NUMEL` elements: stored as float — fp32 if the name contains a
  keep-fp32 pattern, else fp32/bf16 downcast to fp16 (other float dtypes unchanged);
* larger 2-D float: per-row int8 with a 99.99984th-percentile clip and fp16 scales;
* larger float of any other rank: per-tensor int8, same percentile, fp32 scalar scale.

One deliberate difference in bookkeeping, not in values: a keep-fp32 tensor records its true original
dtype (the official script always restores it as fp32; for fp32 inputs, the baseline's case, the two agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from pgolf.quant.container import QuantizedModel, QuantizedTensor, dequantize
from pgolf.quant.intk import BASELINE_CLIP_Q, percentile_rows

__all__ = [
    "INT8_CLIP_Q",
    "INT8_KEEP_FLOAT_FP32_NAME_PATTERNS",
    "KEEP_FLOAT_MAX_NUMEL",
    "dequantize",
    "quantize_per_row_int8",
    "quantize_per_tensor_int8",
    "quantize_state_dict_int8",
    "quantize_tensor_int8",
]

# The int8 export works from a state dict alone (official checkpoints included), so it finds control
# tensors by name: a key containing one of these substrings is kept in fp32. The first nine are the
# baseline's; the rest name the control parameters the record techniques' modules declare
# (`pgolf.model.layers.declares_controls`; a test keeps the two in step).
INT8_KEEP_FLOAT_FP32_NAME_PATTERNS: tuple[str, ...] = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
    "q_gain", "skip_weight", "skip_weights",
    "skip_gates", "attn_gate_w", "attn_gate_b", "smear_", "parallel_resid", "parallel_post", "lane_route", "lane_merge",
    "vr_lambda", "ve_scale", "ve_layer_scale", "bigram_scale",
)
KEEP_FLOAT_MAX_NUMEL = 65_536
INT8_CLIP_Q = BASELINE_CLIP_Q
KEEP_FLOAT_STORE_DTYPE = torch.float16


def quantize_per_row_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """int8 codes and fp16 per-row scales of a 2-D tensor.

    The scale floor 1/127 means rows whose clip is below 1.0 share a fixed grid of step 1/127.
    """
    return percentile_rows(w, 8, INT8_CLIP_Q)


def quantize_per_tensor_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """int8 codes and a 0-d fp32 scale (1.0 for an all-zero tensor).

    `torch.quantile` refuses inputs above 16,777,216 elements, exactly as in the official script.
    """
    w32 = w.float()
    clip = float(torch.quantile(w32.abs().flatten(), INT8_CLIP_Q).item())
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(w32, -clip, clip) / scale), -127, 127).to(torch.int8).contiguous()
    return q, scale


def _keep_float(name: str, t: Tensor, keep_fp32_patterns: Iterable[str]) -> QuantizedTensor:
    if any(pattern in name for pattern in keep_fp32_patterns):
        stored = t.float().contiguous()
    elif t.dtype in (torch.float32, torch.bfloat16):
        stored = t.to(KEEP_FLOAT_STORE_DTYPE).contiguous()
    else:
        stored = t
    return QuantizedTensor(name, "passthrough", None, stored, None, t.dtype)


def quantize_tensor_int8(
    name: str, tensor: Tensor, keep_fp32_patterns: Iterable[str] = INT8_KEEP_FLOAT_FP32_NAME_PATTERNS
) -> QuantizedTensor:
    """Apply the baseline's rules to one tensor."""
    t = tensor.detach().to("cpu").contiguous()
    if not t.is_floating_point():
        return QuantizedTensor(name, "passthrough", None, t, None, t.dtype)
    if t.numel() <= KEEP_FLOAT_MAX_NUMEL:
        return _keep_float(name, t, keep_fp32_patterns)
    if t.ndim == 2:
        q, scale = quantize_per_row_int8(t)
        return QuantizedTensor(name, "per_row", 8, q, scale, t.dtype)
    q, scale = quantize_per_tensor_int8(t)
    return QuantizedTensor(name, "per_tensor", 8, q, scale, t.dtype)


def quantize_state_dict_int8(
    state_dict: Mapping[str, Tensor],
    keep_fp32_patterns: Iterable[str] = INT8_KEEP_FLOAT_FP32_NAME_PATTERNS,
) -> QuantizedModel:
    """Quantize a whole state dict with the baseline's rules; `dequantize` inverts it."""
    patterns = tuple(keep_fp32_patterns)
    return QuantizedModel({name: quantize_tensor_int8(name, t, patterns) for name, t in state_dict.items()})
