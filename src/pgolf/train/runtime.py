"""Compute choices for a device: autocast dtype and torch.compile, with clean fallbacks."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from pgolf.config import Config

T = TypeVar("T")


def cpu_supports_bf16() -> bool:
    """bf16 matmuls are fast on CPUs with AVX512-BF16 or AMX; elsewhere they are emulated."""
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = plain fp32)."""
    choice = cfg.train.dtype
    if choice == "fp32":
        return None
    if choice == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_supports_bf16() else None


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


def compile_or_eager(compiled: Callable[..., T], eager: Callable[..., T]) -> Callable[..., T]:
    """Call the compiled function; on a compile-time failure switch to eager for good."""
    state = {"fn": compiled}

    def call(*args: object, **kwargs: object) -> T:
        try:
            return state["fn"](*args, **kwargs)
        except Exception:
            if state["fn"] is eager:
                raise
            state["fn"] = eager
            return eager(*args, **kwargs)

    return call
