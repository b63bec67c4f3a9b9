"""Compute choices for a device: autocast dtype and torch.compile, with clean fallbacks.

`torch.compile` is lazy: most failures (no C++ compiler, no Triton, an unsupported op under
`fullgraph=True`) surface on the first call, not when `torch.compile` returns. `maybe_compile` therefore
wraps the compiled function so that a failure of its first call falls back to eager, once, saying why.
`RecompileCounter` counts the graphs compiled after warm-up, so a schedule value that changes the graph
every step (a Python float baked in as a constant) is visible and stopped instead of silently slow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pgolf.config import Config
from pgolf.errors import UserError
from pgolf.precision import autocast_dtype, cpu_supports_bf16

__all__ = ["RecompileCounter", "autocast_dtype", "compile_enabled", "cpu_supports_bf16", "maybe_compile"]


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


class CompiledWithFallback(nn.Module):
    """Calls the compiled function; if its first call fails, switches to the eager one for good.

    A module (so DDP can wrap it) whose parameters are those of `eager` when it is a module.
    """

    eager: Callable[..., Any]
    compiled: Callable[..., Any]

    def __init__(self, eager: Callable[..., Any], compiled: Callable[..., Any], result: CompileResult,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.eager = eager
        object.__setattr__(self, "compiled", compiled)  # the same parameters: not a second submodule
        self.result = result
        self.on_fallback = on_fallback
        self._proven = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.result.enabled:
            return self.eager(*args, **kwargs)
        if self._proven:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            self.result.enabled = False
            self.result.reason = f"compile failed on first call, running eager: {type(exc).__name__}: {str(exc)[:300]}"
            if self.on_fallback is not None:
                self.on_fallback(self.result.reason)
            return self.eager(*args, **kwargs)
        self._proven = True
        return out


def maybe_compile(fn: Any, enabled: bool, on_fallback: Callable[[str], None] | None = None,
                  **kwargs: object) -> tuple[CompiledWithFallback, CompileResult]:
    """torch.compile `fn` if enabled and possible; otherwise (or if the first call fails) run it eagerly."""
    if not enabled:
        result = CompileResult(False, "disabled")
        return CompiledWithFallback(fn, fn, result), result
    try:
        compiled = torch.compile(fn, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any backend failure falls back to eager
        result = CompileResult(False, f"torch.compile unavailable: {exc}")
        return CompiledWithFallback(fn, fn, result), result
    result = CompileResult(True, "compiled")
    return CompiledWithFallback(fn, compiled, result, on_fallback), result


def compiled_graph_count() -> int:
    """Graphs dynamo has compiled in this process so far (all functions together)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class RecompileCounter:
    """Graphs compiled since `mark_warm()`; more than `limit` stops the run with the likely cause."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.baseline = compiled_graph_count()

    def mark_warm(self) -> None:
        self.baseline = compiled_graph_count()

    @property
    def recompiles(self) -> int:
        return compiled_graph_count() - self.baseline

    def check(self, step: int) -> int:
        count = self.recompiles
        if count > self.limit:
            raise RecompileLimitError(
                f"train.max_recompiles: {count} graphs were compiled after warm-up (limit {self.limit}) by step "
                f"{step}; a value changing every step is reaching compiled code as a Python constant. Pass it as a "
                "tensor, warm every graph variant before the timer, raise train.max_recompiles, "
                "or set train.compile=off"
            )
        return count


class RecompileLimitError(UserError):
    """Too many recompilations during the timed loop."""
