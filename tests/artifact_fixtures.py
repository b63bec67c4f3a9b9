"""Shared builders for the artifact tests: baseline-named state dicts and the official int8 export.

`official_int8_export` is written from TECHNIQUES §3.8 independently of pgolf.quant, mirroring the
official `train_gpt.py` export so the tests can compare pgolf against it.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from typing import Any

import brotli
import torch
from torch import Tensor

from pgolf.artifact.format import PREFIX_BYTES

OFFICIAL_KEEP_FP32 = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
                      "q_gain", "skip_weight", "skip_weights")


def baseline_state_dict(vocab: int = 600, dim: int = 128, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                        mlp_mult: int = 2, untied_head: bool = False, seed: int = 0) -> dict[str, Tensor]:
    """Random tensors with the official names, shapes and dtypes (tok_emb bf16, the rest fp32)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        rows = torch.exp(torch.empty(shape[0], *([1] * (len(shape) - 1))).uniform_(-4, 2, generator=g))
        return torch.randn(*shape, generator=g) * rows

    kv_dim = dim // heads * kv_heads
    sd: dict[str, Tensor] = {"tok_emb.weight": rand(vocab, dim).bfloat16(),
                             "skip_weights": torch.rand(layers // 2, dim, generator=g)}
    for i in range(layers):
        p = f"blocks.{i}."
        sd[p + "attn.c_q.weight"] = rand(dim, dim)
        sd[p + "attn.c_k.weight"] = rand(kv_dim, dim)
        sd[p + "attn.c_v.weight"] = rand(kv_dim, dim)
        sd[p + "attn.proj.weight"] = rand(dim, dim)
        sd[p + "attn.q_gain"] = torch.full((heads,), 1.5)
        sd[p + "mlp.fc.weight"] = rand(mlp_mult * dim, dim)
        sd[p + "mlp.proj.weight"] = rand(dim, mlp_mult * dim)
        sd[p + "attn_scale"] = torch.rand(dim, generator=g)
        sd[p + "mlp_scale"] = torch.rand(dim, generator=g)
        sd[p + "resid_mix"] = torch.rand(2, dim, generator=g)
    if untied_head:
        sd["lm_head.weight"] = rand(vocab, dim)
    return sd


def official_int8_export(state_dict: dict[str, Tensor]) -> dict[str, Any]:
    """The dict `train_gpt.py` serialises into final_model.int8.ptz."""
    q_level = 99.99984 / 100.0
    quantized, scales, dtypes, passthrough, orig, qmeta = {}, {}, {}, {}, {}, {}
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        if not t.is_floating_point():
            passthrough[name] = t
        elif t.numel() <= 65_536:
            if any(p in name for p in OFFICIAL_KEEP_FP32):
                passthrough[name] = t.float().contiguous()
            elif t.dtype in (torch.float32, torch.bfloat16):
                orig[name] = str(t.dtype).removeprefix("torch.")
                passthrough[name] = t.to(torch.float16).contiguous()
            else:
                passthrough[name] = t
        else:
            t32 = t.float()
            if t32.ndim == 2:
                clip = torch.quantile(t32.abs(), q_level, dim=1)
                clipped = torch.maximum(torch.minimum(t32, clip[:, None]), -clip[:, None])
                s = (clip / 127.0).clamp_min(1.0 / 127.0)
                q = torch.clamp(torch.round(clipped / s[:, None]), -127, 127).to(torch.int8).contiguous()
                s = s.to(torch.float16).contiguous()
                qmeta[name] = {"scheme": "per_row", "axis": 0}
            else:
                c = float(torch.quantile(t32.abs().flatten(), q_level).item())
                s = torch.tensor(c / 127.0 if c > 0 else 1.0, dtype=torch.float32)
                q = torch.clamp(torch.round(torch.clamp(t32, -c, c) / s), -127, 127).to(torch.int8).contiguous()
            quantized[name], scales[name] = q, s
            dtypes[name] = str(t.dtype).removeprefix("torch.")
    obj: dict[str, Any] = {"__quant_format__": "int8_clean_per_row_v1", "quantized": quantized,
                              "scales": scales, "dtypes": dtypes, "passthrough": passthrough}
    if qmeta:
        obj["qmeta"] = qmeta
    if orig:
        obj["passthrough_orig_dtypes"] = orig
    return obj


def official_ptz_bytes(obj: object) -> bytes:
    """torch.save into memory, then zlib level 9 — the bytes of final_model.int8.ptz."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return zlib.compress(buf.getvalue(), level=9)


def artifact_header(blob: bytes) -> dict[str, Any]:
    """The parsed header of an artifact's bytes (brotli-compressed from format version 3)."""
    _, version, length, _ = struct.unpack_from("<6sHI32s", blob)
    text = blob[PREFIX_BYTES : PREFIX_BYTES + length]
    return json.loads(brotli.decompress(text) if version >= 3 else text)


def sealed(header: dict[str, Any], payload: bytes, version: int = 3) -> bytes:
    """An artifact of `header` and `payload` with a valid header digest (a forgery, or an older version's file)."""
    text = json.dumps(header, separators=(",", ":")).encode()
    if version >= 3:
        text = brotli.compress(text)
    return struct.pack("<6sHI32s", b"PGOLF\0", version, len(text), hashlib.sha256(text).digest()) + text + payload


def artifact_payload(blob: bytes) -> bytes:
    return blob[PREFIX_BYTES + struct.unpack_from("<6sHI32s", blob)[2] :]
