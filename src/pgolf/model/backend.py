"""Attention kernel choice: FlashAttention 3, then FlashAttention 2, else PyTorch SDPA.

FlashAttention is only used on CUDA with 16-bit inputs; everything else (CPU, fp32) goes through
`scaled_dot_product_attention`, so the same model runs everywhere. Document-isolated attention has its
own choice and layouts (`pgolf.model.documents`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

FlashFn = Callable[..., Tensor]


def _load_flash_kernel() -> tuple[str, FlashFn | None]:
    for module_name, label in (("flash_attn_interface", "flash_attn_3"), ("flash_attn", "flash_attn_2")):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - a broken install must fall back, not crash
            continue
        fn = getattr(module, "flash_attn_func", None)
        if fn is not None:
            return label, fn
    return "sdpa", None


# Resolved once at import: the forward pass must not import or look anything up, so that
# torch.compile(fullgraph=True) can trace it.
FLASH_LABEL, FLASH_FN = _load_flash_kernel()


def attention_backend_name(device: torch.device | str) -> str:
    """What `causal_attention` will use on this device for bf16 inputs."""
    return FLASH_LABEL if FLASH_FN is not None and torch.device(device).type == "cuda" else "sdpa"


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal attention on (batch, seq, heads, head_dim) tensors; k/v may have fewer heads (GQA)."""
    if FLASH_FN is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        out = FLASH_FN(q, k, v, causal=True)
        return out[0] if isinstance(out, tuple) else out
    y = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
        is_causal=True, enable_gqa=k.size(2) != q.size(2),
    )
    return y.transpose(1, 2)
