"""Read the official `train_gpt.py` exports: `final_model.pt` and `final_model.int8.ptz`.

* `final_model.pt` is a raw `torch.save(state_dict)` (a zip archive).
* `final_model.int8.ptz` is `zlib.compress(torch.save(obj), 9)` where `obj` is the dict of format
  "int8_clean_per_row_v1" (TECHNIQUES §3.8).

The format is recognised from the content, not the file name. Both are only ever unpickled through
`torch.load(..., weights_only=True)`, which admits tensors and plain containers and nothing else.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pgolf.artifact.format import MAGIC, looks_like_torch_save, looks_like_zlib
from pgolf.errors import ArtifactError
from pgolf.quant.container import DTYPES, QuantizedModel, QuantizedTensor, dequantize

OFFICIAL_QUANT_FORMAT = "int8_clean_per_row_v1"


def _torch_load(source: str | os.PathLike[str] | io.BytesIO, what: str) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for corrupt or disallowed content
        raise ArtifactError(
            f"{what} could not be loaded as a weights-only torch file ({type(exc).__name__}: {exc}); "
            "pass an unmodified final_model.pt or final_model.int8.ptz"
        ) from exc


def _load_official_object(path: Path) -> Any:
    """The unpickled content of either official file, dispatched on its first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(MAGIC))
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist: pass the path of final_model.pt or final_model.int8.ptz") from None
    if looks_like_torch_save(head):
        return _torch_load(path, str(path))
    if looks_like_zlib(head):
        try:
            raw = zlib.decompress(path.read_bytes())
        except zlib.error as exc:
            raise ArtifactError(f"{path} is a damaged zlib stream ({exc}): copy final_model.int8.ptz again") from exc
        return _torch_load(io.BytesIO(raw), f"{path} (decompressed)")
    if head == MAGIC:
        raise ArtifactError(
            f"{path} is a pgolf artifact, not an official export: read it with read_artifact / `pgolf eval`"
        )
    raise ArtifactError(
        f"{path} is neither final_model.pt (torch.save) nor final_model.int8.ptz (zlib): check the path"
    )


def _check_tensor_dict(obj: Any, what: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ArtifactError(f"{what} is not a dict of name -> tensor: pass an official state dict or int8 export")
    return dict(obj)


def _check_str_dict(obj: Any, what: str) -> dict[str, str]:
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and v in DTYPES for k, v in obj.items()):
        raise ArtifactError(f"{what} is not a dict of name -> dtype name: the int8 export is malformed")
    return dict(obj)


def official_quant_to_model(obj: Any) -> QuantizedModel:
    """Re-express an official "int8_clean_per_row_v1" dict as a `QuantizedModel`, keeping codes and scales.

    Scheme per tensor follows the official dequantizer: per-row when `qmeta` says so or the scale is
    not a scalar. Passthrough tensors without a recorded original dtype keep their stored dtype.
    """
    if not isinstance(obj, Mapping) or obj.get("__quant_format__") != OFFICIAL_QUANT_FORMAT:
        tag = obj.get("__quant_format__") if isinstance(obj, Mapping) else type(obj).__name__
        raise ArtifactError(f"unsupported official export format {tag!r}: pgolf reads {OFFICIAL_QUANT_FORMAT!r}")
    quantized = _check_tensor_dict(obj.get("quantized"), "'quantized'")
    scales = _check_tensor_dict(obj.get("scales"), "'scales'")
    dtypes = _check_str_dict(obj.get("dtypes"), "'dtypes'")
    passthrough = _check_tensor_dict(obj.get("passthrough"), "'passthrough'")
    orig_dtypes = _check_str_dict(obj.get("passthrough_orig_dtypes", {}), "'passthrough_orig_dtypes'")
    qmeta = obj.get("qmeta", {})
    if not isinstance(qmeta, Mapping) or not all(isinstance(v, Mapping) for v in qmeta.values()):
        raise ArtifactError("'qmeta' is not a dict of name -> dict: the int8 export is malformed")
    if set(scales) != set(quantized) or set(dtypes) != set(quantized) or set(passthrough) & set(quantized):
        raise ArtifactError("quantized/scales/dtypes/passthrough names disagree: the int8 export is malformed")

    tensors: dict[str, QuantizedTensor] = {}
    try:
        for name, q in quantized.items():
            if q.dtype != torch.int8:
                raise ValueError(f"{name}: codes are {q.dtype}, expected int8")
            scale = scales[name]
            per_row = qmeta.get(name, {}).get("scheme") == "per_row" or scale.ndim > 0
            scheme = "per_row" if per_row else "per_tensor"
            tensors[name] = QuantizedTensor(name, scheme, 8, q, scale, DTYPES[dtypes[name]])
        for name, t in passthrough.items():
            orig = DTYPES[orig_dtypes[name]] if name in orig_dtypes else t.dtype
            tensors[name] = QuantizedTensor(name, "passthrough", None, t, None, orig)
    except ValueError as exc:
        raise ArtifactError(f"malformed int8 export: {exc}") from exc
    return QuantizedModel(tensors)


def read_official_int8(path: str | os.PathLike[str]) -> QuantizedModel:
    """`final_model.int8.ptz` as a `QuantizedModel` (for re-packing into a pgolf artifact)."""
    obj = _load_official_object(Path(path))
    if isinstance(obj, Mapping) and "__quant_format__" not in obj:
        raise ArtifactError(f"{path} holds float weights, not an int8 export: quantize it with `pgolf pack`")
    return official_quant_to_model(obj)


def load_official_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Float state dict from `final_model.pt`, or the dequantized weights of `final_model.int8.ptz`."""
    obj = _load_official_object(Path(path))
    if isinstance(obj, Mapping) and "__quant_format__" in obj:
        return dequantize(official_quant_to_model(obj))
    return _check_tensor_dict(obj, str(path))
