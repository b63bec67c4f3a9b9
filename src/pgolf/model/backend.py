"""Attention kernel choice: FlashAttention 3, then FlashAttention 2, else PyTorch SDPA.

FlashAttention is only used on CUDA with 16-bit inputs; everything else (CPU, fp32) goes through
`scaled_dot_product_attention`, so the same model runs everywhere. Document-isolated attention has its
own choice (`resolve_doc_kernel`, the layouts are in `pgolf.model.documents`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

FlashFn = Callable[..., Tensor]


def _load_varlen_kernel() -> FlashFn | None:
    """FlashAttention 3's varlen entry point (document isolation), when importable."""
    try:
        module = importlib.import_module("flash_attn_interface")
    except Exception:  # noqa: BLE001 - a broken install must fall back, not crash
        return None
    return getattr(module, "flash_attn_varlen_func", None)


def _flex_available() -> bool:
    try:
        importlib.import_module("torch.nn.attention.flex_attention")
    except Exception:  # noqa: BLE001 - an older torch has no FlexAttention
        return False
    return True


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
FLASH_VARLEN_FN = _load_varlen_kernel()
FLEX_AVAILABLE = _flex_available()


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


def resolve_doc_kernel(requested: str, device_type: str) -> tuple[str, str | None]:
    """(kernel, note): the document-attention layout used on `device_type`, and a one-line note when the
    requested one is unavailable and another is taken instead.

    auto: FA3 varlen on CUDA when installed, else FlexAttention on CUDA, else the dense mask (CPU).
    """
    cuda = device_type == "cuda"
    best = "varlen" if cuda and FLASH_VARLEN_FN is not None else "flex" if cuda and FLEX_AVAILABLE else "dense"
    if requested == "auto":
        return best, None
    if requested == "varlen" and (not cuda or FLASH_VARLEN_FN is None):
        why = "flash_attn_interface (FlashAttention 3) is not importable" if cuda else "it runs on CUDA only"
        return best, (f"doc_attention: model.doc_attention_kernel=varlen but {why}; using {best} "
                      "(install FlashAttention 3 or set model.doc_attention_kernel=auto)")
    if requested == "flex" and not (cuda and FLEX_AVAILABLE):
        why = "this torch has no FlexAttention" if cuda else "FlexAttention has no backward pass on CPU"
        return "dense", (f"doc_attention: model.doc_attention_kernel=flex but {why}; using the dense mask "
                         "(set model.doc_attention_kernel=auto)")
    return requested, None
