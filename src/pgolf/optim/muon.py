"""Muon: momentum SGD whose matrix updates are orthogonalised by a Newton–Schulz iteration.

The pieces shared by every Muon flavour live here as functions (Nesterov momentum, MuonEq-R row
normalisation, the Newton–Schulz variants, decoupled weight decay), so the baseline's round-robin
`Muon` (`pgolf.optim.round_robin`) and the banked `ParallelMuon` (`pgolf.optim.parallel_muon`) apply
exactly the same update rule. A run imports (and ships) only the flavour its `optim.muon_impl` names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NSCoefficients = tuple[float, float, float]

# Quintic coefficients of the baseline, the same tuple every iteration (fast, not exact: the singular
# values land roughly in 0.7–1.2).
CLASSIC_COEFFICIENTS: NSCoefficients = (3.4445, -4.7750, 2.0315)
# Polar Express: one tuple per iteration (five defined), which lands the singular values closer to 1.
POLAR_EXPRESS_COEFFICIENTS: tuple[NSCoefficients, ...] = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
NS_VARIANTS = ("classic", "polar_express")


def ns_coefficients(variant: str, steps: int) -> tuple[NSCoefficients, ...]:
    """The (a, b, c) tuple of each iteration."""
    if variant == "classic":
        return (CLASSIC_COEFFICIENTS,) * steps
    if variant == "polar_express":
        if steps > len(POLAR_EXPRESS_COEFFICIENTS):
            raise ValueError(f"polar_express defines {len(POLAR_EXPRESS_COEFFICIENTS)} iterations, {steps} asked")
        return POLAR_EXPRESS_COEFFICIENTS[:steps]
    raise ValueError(f"unknown Newton–Schulz variant {variant!r}; choose one of {', '.join(NS_VARIANTS)}")


def newton_schulz(grad: Tensor, steps: int, dtype: torch.dtype = torch.bfloat16, variant: str = "classic",
                  eps: float = 1e-7, square_first: bool = False) -> Tensor:
    """Approximately orthogonalise a matrix, or each matrix of a (batch, rows, cols) stack.

    Each iteration is X ← aX + (bA + cA²)X with A = XXᵀ, on the wide orientation (rows ≤ cols) of the
    Frobenius-normalised input. In bf16 the rounding of cA² depends on the order: the baseline computes
    (c·A)·A, the banked records (PR #635 and its successors) c·(A·A) (`square_first`).
    """
    x = grad.to(dtype)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    transposed = grad.size(-2) > grad.size(-1)
    if transposed:
        x = x.mT
    for a, b, c in ns_coefficients(variant, steps):
        gram = x @ x.mT
        square = c * (gram @ gram) if square_first else c * gram @ gram
        x = a * x + (b * gram + square) @ x
    return x.mT if transposed else x


def momentum_direction(grad: Tensor, buf: Tensor, momentum: float, nesterov: bool, row_normalize: bool) -> Tensor:
    """Update the momentum buffer in place and return the direction to orthogonalise.

    MuonEq-R (`row_normalize`) divides each output row by its fp32 L2 norm before Newton–Schulz, so
    a few rows with large gradients do not dominate the polar factor. The norms are cast to the direction's
    dtype before dividing, as PR #1855 does (with a bf16 momentum the quotient is then bf16 / bf16).
    """
    buf.mul_(momentum).add_(grad)
    direction = grad.add(buf, alpha=momentum) if nesterov else buf
    if row_normalize:
        norms = direction.float().norm(dim=-1, keepdim=True).clamp_min(1e-7)
        direction = direction / norms.to(direction.dtype)
    return direction


def aspect_scale(rows: int, cols: int) -> float:
    """sqrt(max(1, rows/cols)): tall matrices get proportionally larger updates."""
    return max(1.0, rows / cols) ** 0.5


def apply_update(p: Tensor, update: Tensor, lr: float, weight_decay: float, scale: float = 1.0) -> None:
    """Decoupled weight decay with the scheduled LR, then the orthogonal step times `scale` (1 when the
    update is already scaled)."""
    if weight_decay > 0:
        p.mul_(1.0 - lr * weight_decay)
    p.add_(update.to(p.dtype), alpha=-lr * scale)


Orthogonalizer = Callable[[Tensor, int, torch.dtype, str], Tensor]


def banked_newton_schulz(grad: Tensor, steps: int, dtype: torch.dtype = torch.bfloat16,
                         variant: str = "classic") -> Tensor:
    """`newton_schulz` in the banked records' operation order (Parallel Muon's default)."""
    return newton_schulz(grad, steps, dtype, variant, square_first=True)


class MuonOptimizer(torch.optim.Optimizer):
    """What every Muon flavour is built from: the update rule's hyperparameters (the param group's defaults),
    the Newton–Schulz dtype and the orthogonalizer. An impossible Newton–Schulz variant is refused here, before
    the first step."""

    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        momentum: float,
        backend_steps: int,
        nesterov: bool = True,
        ns_dtype: torch.dtype = torch.bfloat16,
        ns_variant: str = "classic",
        row_normalize: bool = False,
        weight_decay: float = 0.0,
        orthogonalize: Orthogonalizer = newton_schulz,
    ) -> None:
        ns_coefficients(ns_variant, backend_steps)
        defaults = dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov,
                        ns_variant=ns_variant, row_normalize=row_normalize, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        self.orthogonalize = orthogonalize
