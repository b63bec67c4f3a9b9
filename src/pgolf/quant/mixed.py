"""Quantize a state dict tensor by tensor with the formats a policy assigned (int-k RTN or GPTQ, float, raw)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from pgolf.quant.container import QuantizedModel, QuantizedTensor
from pgolf.quant.intk import magnitude_prune, record_codes, round_to_grid, row_scales
from pgolf.quant.policy import TensorFormat

DEFAULT_BLOCK_SIZE = 128
DEFAULT_DAMP = 0.01


@dataclass(frozen=True)
class GPTQOptions:
    block_size: int = DEFAULT_BLOCK_SIZE
    damp: float = DEFAULT_DAMP


@dataclass(frozen=True)
class TensorQuantizer:
    """Everything that decides how one tensor is stored, except its format."""

    hessians: Mapping[str, Tensor]
    prune_fraction: float = 0.0
    gptq: GPTQOptions = GPTQOptions()

    def quantize(self, name: str, tensor: Tensor, fmt: TensorFormat) -> tuple[QuantizedTensor, str]:
        """(stored tensor, method used: 'raw' | 'float' | 'rtn' | 'gptq' | 'rtn (cholesky failed)')."""
        t = tensor.detach().cpu().contiguous()
        if fmt.bits is None:
            stored = t if fmt.float_dtype is None else t.to(fmt.float_dtype).contiguous()
            method = "raw" if fmt.float_dtype is None else "float"
            return QuantizedTensor(name, "passthrough", None, stored, None, t.dtype), method
        bits = fmt.bits
        matrix = magnitude_prune(t, self.prune_fraction).float().reshape(t.shape[0], -1)
        codes, method = None, "rtn"
        clip = fmt.clip
        assert clip is not None, "an int-k format has a clip rule"
        if clip.fixes_codes:
            codes, scale = record_codes(matrix, bits, clip)  # the record's own rounding (e.g. from fp32 scales)
        else:
            scale = row_scales(matrix, bits, clip)
        hessian = self.hessians.get(name)
        if hessian is not None:  # GPTQ recomputes the codes on the stored scales
            from pgolf.quant.gptq import gptq_codes  # only runs that use GPTQ import it
            codes = gptq_codes(matrix, hessian, scale, bits, self.gptq.block_size, self.gptq.damp)
            method = "gptq" if codes is not None else "rtn (cholesky failed)"
        if codes is None:
            codes = round_to_grid(matrix, scale, bits)
        return QuantizedTensor(name, "per_row", bits, codes.reshape(t.shape).contiguous(), scale, t.dtype), method


def quantize_mixed(state_dict: Mapping[str, Tensor], formats: Mapping[str, TensorFormat],
                   quantizer: TensorQuantizer) -> tuple[QuantizedModel, dict[str, str]]:
    """The quantized model and, per tensor, the method that produced it."""
    tensors: dict[str, QuantizedTensor] = {}
    methods: dict[str, str] = {}
    with torch.no_grad():
        for name, tensor in state_dict.items():
            tensors[name], methods[name] = quantizer.quantize(name, tensor, formats[name])
    return QuantizedModel(tensors), methods
