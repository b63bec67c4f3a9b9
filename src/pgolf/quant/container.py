"""The in-memory form of a quantized model, shared by every quantization scheme.

A `QuantizedModel` maps tensor names (in state-dict order) to `QuantizedTensor`s. Each entry records
its scheme and bit width, so later formats (int-k for k = 4..8, GPTQ codes, ...) are just new values
of `scheme`/`bits` with the same container, the same artifact format and the same `dequantize`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import Tensor

Scheme = Literal["per_row", "per_tensor", "passthrough"]
SCHEMES: tuple[str, ...] = get_args(Scheme)

# The only dtypes a quantized model (and hence an artifact) may hold, by their torch name.
# Names from files are looked up here, never with getattr(torch, name).
DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32; ValueError for dtypes a quantized model cannot hold."""
    name = str(dtype).removeprefix("torch.")
    if DTYPES.get(name) != dtype:
        raise ValueError(f"unsupported tensor dtype {dtype}; supported: {', '.join(DTYPES)}")
    return name


@dataclass(frozen=True)
class QuantizedTensor:
    """One stored tensor.

    * ``per_row``: ``data`` holds integer codes of the original shape, ``scale`` one value per row
      (dimension 0); value = code * scale[row].
    * ``per_tensor``: ``data`` holds integer codes, ``scale`` a 0-d tensor; value = code * scale.
    * ``passthrough``: ``data`` is the stored tensor (possibly downcast), ``scale`` is None.

    ``bits`` is the code width (8 for int8; 4..8 for int-k) and None for passthrough.
    ``orig_dtype`` is the dtype `dequantize` restores.
    """

    name: str
    scheme: Scheme
    bits: int | None
    data: Tensor
    scale: Tensor | None
    orig_dtype: torch.dtype

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"{self.name}: unknown scheme {self.scheme!r}; expected one of {SCHEMES}")
        passthrough = self.scheme == "passthrough"
        if passthrough != (self.scale is None) or passthrough != (self.bits is None):
            raise ValueError(f"{self.name}: scale and bits must be None exactly for passthrough tensors")
        if self.scale is None:  # passthrough
            return
        if self.scheme == "per_row" and (self.data.ndim == 0 or self.scale.shape != (self.data.shape[0],)):
            raise ValueError(f"{self.name}: per_row needs one scale per row of data")
        if self.scheme == "per_tensor" and self.scale.ndim != 0:
            raise ValueError(f"{self.name}: per_tensor needs a 0-d scale")

    @property
    def stored_bytes(self) -> int:
        """Raw bytes of codes plus scales (before compression)."""
        scale_bytes = 0 if self.scale is None else self.scale.numel() * self.scale.element_size()
        return self.data.numel() * self.data.element_size() + scale_bytes


@dataclass
class QuantizedModel(Mapping[str, QuantizedTensor]):
    """Ordered name → `QuantizedTensor` mapping with size statistics."""

    tensors: dict[str, QuantizedTensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> QuantizedTensor:
        return self.tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def stats(self) -> dict[str, int]:
        """Counts and raw sizes: parameters, tensors per scheme, original bytes, stored payload bytes."""
        stats: dict[str, int] = dict.fromkeys(("param_count", "num_quantized", "num_passthrough",
                               "baseline_tensor_bytes", "payload_bytes"), 0)
        stats["num_tensors"] = len(self.tensors)
        for qt in self.tensors.values():
            stats["param_count"] += qt.data.numel()
            stats["num_passthrough" if qt.scheme == "passthrough" else "num_quantized"] += 1
            stats["baseline_tensor_bytes"] += qt.data.numel() * qt.orig_dtype.itemsize
            stats["payload_bytes"] += qt.stored_bytes
        return stats


def dequantize_tensor(qt: QuantizedTensor) -> Tensor:
    """Float (or original non-float) tensor for one entry, with the baseline's exact arithmetic."""
    if qt.scheme == "per_row":
        assert qt.scale is not None, "checked by QuantizedTensor.__post_init__"
        rows = qt.scale.to(torch.float32).view(qt.data.shape[0], *([1] * (qt.data.ndim - 1)))
        return (qt.data.float() * rows).to(qt.orig_dtype).contiguous()
    if qt.scheme == "per_tensor":
        assert qt.scale is not None, "checked by QuantizedTensor.__post_init__"
        return (qt.data.float() * float(qt.scale.item())).to(qt.orig_dtype).contiguous()
    return qt.data.detach().to("cpu").to(qt.orig_dtype).contiguous()


# Low-rank correction entries (`pgolf.quant.lqer`): `<name>.lqer_a` (rows × r) and `<name>.lqer_b` (r × cols,
# possibly stored as groups of values, one scale per group); `<name>` is restored as W_q + A @ B.
LQER_A, LQER_B = ".lqer_a", ".lqer_b"


def is_correction(name: str) -> bool:
    return name.endswith((LQER_A, LQER_B))


def dequantize(qm: QuantizedModel) -> dict[str, Tensor]:
    """State dict (same names and order, correction entries folded into their matrices) of a quantized model."""
    out = {}
    for name, qt in qm.items():
        if is_correction(name):
            continue
        restored = dequantize_tensor(qt)
        if name + LQER_A in qm:
            a = dequantize_tensor(qm[name + LQER_A]).float()
            b = dequantize_tensor(qm[name + LQER_B]).float().reshape(a.shape[1], -1)
            matrix = restored.float().reshape(a.shape[0], -1) + a @ b
            restored = matrix.reshape(restored.shape).to(qt.orig_dtype).contiguous()
        out[name] = restored
    return out
