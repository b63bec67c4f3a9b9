"""LeakyReLU² with a fused backward: y = leaky_relu(h, s)², dy/dh = 2·leaky_relu(h, s)·(1 if h > 0 else s).

Autograd on the reference keeps both leaky_relu(h) and the square's input alive and runs three
elementwise kernels each way; the fused op saves only h (the MLP's widest activation is stored once)
and runs one kernel forward and one backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pgolf.model.kernels.dispatch import TRITON_AVAILABLE

BLOCK = 1024


def leaky_relu2_reference(h: Tensor, slope: float) -> Tensor:
    return F.leaky_relu(h, negative_slope=slope).square()


if TRITON_AVAILABLE:
    # Triton is a CUDA-only optional dependency, absent from CPU environments where pyright may run.
    import triton  # pyright: ignore[reportMissingImports]
    import triton.language as tl  # pyright: ignore[reportMissingImports]

    @triton.jit
    def _leaky_relu2_fwd(h_ptr, out_ptr, n, slope, BLOCK: tl.constexpr):  # noqa: ANN001, ANN202 - triton.jit reads annotations
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        a = tl.where(h > 0, h, h * slope)
        tl.store(out_ptr + offs, (a * a).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _leaky_relu2_bwd(h_ptr, grad_ptr, out_ptr, n, slope, BLOCK: tl.constexpr):  # noqa: ANN001, ANN202 - triton.jit reads annotations
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        d = tl.where(h > 0, 2.0 * h, 2.0 * slope * slope * h)
        tl.store(out_ptr + offs, (g * d).to(out_ptr.dtype.element_ty), mask=mask)


class _LeakyReLU2(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        h = h.contiguous()
        out = torch.empty_like(h)
        n = h.numel()
        _leaky_relu2_fwd[(triton.cdiv(n, BLOCK),)](h, out, n, slope, BLOCK=BLOCK)  # pyright: ignore[reportIndexIssue] - a triton.jit kernel is launched as kernel[grid](...)
        ctx.save_for_backward(h)
        ctx.slope = slope
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (h,) = ctx.saved_tensors
        out = torch.empty_like(h)
        n = h.numel()
        _leaky_relu2_bwd[(triton.cdiv(n, BLOCK),)](h, grad.contiguous(), out, n, ctx.slope, BLOCK=BLOCK)  # pyright: ignore[reportIndexIssue] - a triton.jit kernel is launched as kernel[grid](...)
        return out, None


def leaky_relu2_fused(h: Tensor, slope: float) -> Tensor:
    """leaky_relu(h, slope)²: the Triton op on CUDA when Triton is importable, else the reference."""
    if TRITON_AVAILABLE and h.is_cuda:
        return _LeakyReLU2.apply(h, slope)
    return leaky_relu2_reference(h, slope)
