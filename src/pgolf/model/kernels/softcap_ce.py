"""Softcapped cross-entropy: loss = logsumexp(z) − z[target] with z = c·tanh(x/c), fused in one pass.

The reference (`dispatch`) materialises the softcapped fp32 logits and their log-softmax (several (tokens, vocab)
tensors); the kernel reads the raw logits once per row in the forward and once in the backward,
keeping only the per-row logsumexp. Rows are one Triton program each, the whole vocabulary in one block
(vocabularies here are ≤ 65,536).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pgolf.model.kernels.dispatch import TRITON_AVAILABLE, softcap_cross_entropy_reference

if TRITON_AVAILABLE:
    # Triton is a CUDA-only optional dependency, absent from CPU environments where pyright may run.
    import triton  # pyright: ignore[reportMissingImports]
    import triton.language as tl  # pyright: ignore[reportMissingImports]

    @triton.jit
    def _tanh(y):  # noqa: ANN001, ANN202 - triton.jit reads annotations
        return 1.0 - 2.0 / (tl.exp(2.0 * y) + 1.0)

    @triton.jit
    def _softcap_ce_fwd(raw_ptr, target_ptr, loss_ptr, lse_ptr, stride, n_cols, softcap, BLOCK: tl.constexpr):  # noqa: ANN001, ANN202 - triton.jit reads annotations
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(raw_ptr + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
        z = tl.where(mask, softcap * _tanh(x / softcap), -float("inf"))
        m = tl.max(z, 0)
        lse = m + tl.log(tl.sum(tl.exp(z - m), 0))
        target = tl.load(target_ptr + row).to(tl.int32)
        z_target = tl.sum(tl.where(cols == target, z, 0.0), 0)
        tl.store(loss_ptr + row, lse - z_target)
        tl.store(lse_ptr + row, lse)

    @triton.jit
    def _softcap_ce_bwd(raw_ptr, target_ptr, lse_ptr, grad_ptr, out_ptr, stride, n_cols, softcap,  # noqa: ANN001, ANN202 - triton.jit reads annotations
                        BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(raw_ptr + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
        th = _tanh(x / softcap)
        p = tl.exp(softcap * th - tl.load(lse_ptr + row))
        target = tl.load(target_ptr + row).to(tl.int32)
        dz = p - tl.where(cols == target, 1.0, 0.0)
        dx = tl.load(grad_ptr + row) * dz * (1.0 - th * th)
        tl.store(out_ptr + row * stride + cols, dx.to(out_ptr.dtype.element_ty), mask=mask)


class _SoftcapCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, raw: Tensor, targets: Tensor, softcap: float) -> Tensor:  # type: ignore[override]
        flat = raw.reshape(-1, raw.size(-1)).contiguous()
        tgt = targets.reshape(-1).contiguous()
        rows, cols = flat.shape
        loss = torch.empty(rows, device=raw.device, dtype=torch.float32)
        lse = torch.empty_like(loss)
        block = triton.next_power_of_2(cols)
        _softcap_ce_fwd[(rows,)](flat, tgt, loss, lse, flat.stride(0), cols, softcap, BLOCK=block,  # pyright: ignore[reportIndexIssue] - a triton.jit kernel is launched as kernel[grid](...)
                                 num_warps=min(16, max(4, block // 512)))
        ctx.save_for_backward(flat, tgt, lse)
        ctx.softcap, ctx.shape = softcap, raw.shape
        return loss.view(targets.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        flat, tgt, lse = ctx.saved_tensors
        rows, cols = flat.shape
        out = torch.empty_like(flat)
        block = triton.next_power_of_2(cols)
        _softcap_ce_bwd[(rows,)](flat, tgt, lse, grad.reshape(-1).float().contiguous(), out, flat.stride(0), cols,  # pyright: ignore[reportIndexIssue] - a triton.jit kernel is launched as kernel[grid](...)
                                 ctx.softcap, BLOCK=block, num_warps=min(16, max(4, block // 512)))
        return out.view(ctx.shape), None, None


def softcap_cross_entropy_fused(raw: Tensor, targets: Tensor, softcap: float, reduction: str = "none") -> Tensor:
    """Softcapped cross-entropy ("none": per token, "mean"): the Triton kernel when `raw` is on CUDA and Triton
    is importable, else the reference."""
    if TRITON_AVAILABLE and raw.is_cuda:
        losses = _SoftcapCE.apply(raw, targets, softcap)
        return losses.mean() if reduction == "mean" else losses
    return softcap_cross_entropy_reference(raw, targets, softcap, reduction)
