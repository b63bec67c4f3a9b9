"""Compute choices for a device: autocast dtype and torch.compile, with clean fallbacks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch

from pgolf.config import Config
from pgolf.precision import autocast_dtype, cpu_supports_bf16

__all__ = ["autocast_dtype", "compile_enabled", "cpu_supports_bf16", "maybe_compile"]

T = TypeVar("T")


def compile_enabled(cfg: Config, device: torch.device) -> bool:
    """`auto` compiles on CUDA only (on CPU compile time outweighs the gain for small runs)."""
    if os.environ.get("TORCH_COMPILE_DISABLE") == "1" or cfg.train.compile == "off":
        return False
    if cfg.train.compile == "on":
        return True
    return device.type == "cuda"


@dataclass
class CompileResult:
    enabled: bool
    reason: str


def maybe_compile(fn: T, enabled: bool, **kwargs: object) -> tuple[T, CompileResult]:
    """torch.compile `fn` if enabled and possible; otherwise return it unchanged, saying why."""
    if not enabled:
        return fn, CompileResult(False, "disabled")
    try:
        compiled = torch.compile(fn, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any backend failure falls back to eager
        return fn, CompileResult(False, f"torch.compile unavailable: {exc}")
    return compiled, CompileResult(True, "compiled")
