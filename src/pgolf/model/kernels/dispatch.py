"""Whether the fused Triton kernels can run, and the one-line note when they were asked for but cannot."""

from __future__ import annotations

import importlib

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
