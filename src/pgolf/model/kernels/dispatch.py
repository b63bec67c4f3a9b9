"""Whether the fused Triton kernels can run, the one-line note when they were asked for but cannot, and the
reference softcapped cross-entropy that runs where they do not."""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import Tensor

FUSED_CHOICES = ("auto", "on", "off")  # config._CHOICES["model.fused_kernels"] lists the same


def _triton_available() -> bool:
    try:
        importlib.import_module("triton")
        importlib.import_module("triton.language")
    except Exception:  # noqa: BLE001 - absent or broken both mean "use the reference"
        return False
    return True


TRITON_AVAILABLE = _triton_available()


def resolve_fused(requested: str, device_type: str) -> tuple[bool, str | None]:
    """(use the Triton kernels on `device_type`, note when `on` was requested but they cannot run)."""
    possible = TRITON_AVAILABLE and device_type == "cuda"
    if requested == "off":
        return False, None
    if requested == "on" and not possible:
        why = "Triton is not importable" if device_type == "cuda" else "they run on CUDA only"
        return False, (f"fused_kernels: model.fused_kernels=on but {why}; using the PyTorch reference "
                       "(install triton or set model.fused_kernels=auto)")
    return possible, None


def softcap_cross_entropy_reference(raw: Tensor, targets: Tensor, softcap: float, reduction: str = "none") -> Tensor:
    """Per-token losses (float32, shape of `targets`) from raw (…, vocab) logits, or their mean.

    The cap is applied in the logits' dtype and the loss taken in fp32, as the record scripts do (the
    kernel computes the cap in fp32: equal to rounding).
    """
    z = (softcap * torch.tanh(raw / softcap)).float()
    losses = F.cross_entropy(z.reshape(-1, z.size(-1)), targets.reshape(-1), reduction=reduction)
    return losses if reduction == "mean" else losses.view(targets.shape)
