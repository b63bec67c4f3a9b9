"""Full-Hessian GPTQ (TECHNIQUES §4.5.1, §4.5.5).

For a weight W (rows × cols) whose layer sees inputs x (… × cols), H = mean xᵀx. Columns are quantized
one at a time in order of decreasing H diagonal ("act-order"); the rounding error of each column is
spread over the not-yet-quantized columns through the upper Cholesky factor of H⁻¹, in blocks of
`block_size` columns with a lazy update of the rest. Dead columns (zero diagonal: inputs that are
always 0) are zeroed. Scales are fixed beforehand per row (`intk.row_scales`), so GPTQ only chooses
the integer codes, or picks among a few candidate scales by the reconstruction error of its codes
(`intk.matrix_candidates`, PR #1291).

Hessians come from forward pre-hooks on every `CastedLinear` (its input) and, for the output
projection (tied `tok_emb.weight` or `lm_head.weight`), from the final-norm hidden states.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from pgolf.model.gpt import GPT
from pgolf.model.layers import CastedLinear
from pgolf.quant.intk import qmax
from pgolf.quant.mixed import DEFAULT_BLOCK_SIZE, DEFAULT_DAMP

OUTPUT_PROJECTIONS = ("tok_emb.weight", "lm_head.weight")


class _HessianSum:
    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.rows = 0

    def add(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1]).float()
        update = flat.T @ flat
        self.total = update if self.total is None else self.total + update
        self.rows += flat.shape[0]

    def hook(self, _module: nn.Module, args: tuple[Tensor, ...]) -> None:
        """A forward pre-hook: accumulate the module's input."""
        self.add(args[0])

    def mean(self) -> Tensor:
        assert self.total is not None
        return self.total / max(self.rows, 1)


@torch.no_grad()
def collect_hessians(model: GPT, sequences: Iterable[Tensor], names: Iterable[str],
                     autocast_dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """H = mean xᵀx of the input of each weight in `names` over the calibration `sequences` (input ids).

    Only weights with a matrix-multiply input get a Hessian: `CastedLinear` weights, and the output
    projection (`tok_emb.weight` when tied, else `lm_head.weight`); others are skipped.
    """
    wanted = set(names)
    sums: dict[str, _HessianSum] = {}
    hooks = []
    for module_name, module in model.named_modules():
        weight_name = f"{module_name}.weight"
        if isinstance(module, CastedLinear) and weight_name in wanted and module is not model.lm_head:
            sums[weight_name] = _HessianSum()
            hooks.append(module.register_forward_pre_hook(sums[weight_name].hook))
    head = "tok_emb.weight" if model.lm_head is None else "lm_head.weight"
    if head in wanted:
        sums[head] = _HessianSum()
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    was_training = model.training
    model.eval()
    try:
        with autocast:
            for ids in sequences:
                hidden = model.hidden(ids.to(device))
                if head in sums:
                    sums[head].add(hidden)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {name: s.mean() for name, s in sums.items() if s.total is not None}


def _upper_cholesky_of_inverse(h: Tensor) -> Tensor | None:
    try:
        lower = torch.linalg.cholesky(h)
        return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
    except torch.linalg.LinAlgError:  # pyright: ignore[reportPrivateImportUsage] - public, not in its __all__
        return None


def _prepared(weight: Tensor, hessian: Tensor, damp: float) -> tuple[Tensor, Tensor, Tensor] | None:
    """(weight with dead columns zeroed, upper Cholesky factor of H⁻¹, column order), both in act-order; None when
    H (after damping) is not positive definite."""
    h = hessian.detach().float().clone()
    w = weight.detach().float().to(h.device).clone()
    cols = w.shape[1]
    if h.shape != (cols, cols):
        raise ValueError(f"Hessian of shape {tuple(h.shape)} does not fit a weight with {cols} columns")
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.diag(h).mean() * torch.eye(cols, device=h.device)
    perm = torch.argsort(torch.diag(h), descending=True)
    u = _upper_cholesky_of_inverse(h[perm][:, perm])
    return None if u is None else (w[:, perm], u, perm)


def _compensated_codes(w: Tensor, u: Tensor, s: Tensor, r: int, block_size: int) -> Tensor:
    """Float codes (act-order columns) of `w` on per-row scales `s` (rows × 1), each column's rounding error
    spread over the later columns through `u`."""
    w = w.clone()
    cols = w.shape[1]
    codes = torch.zeros_like(w)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        block = w[:, i1:i2].clone()
        errors = torch.zeros_like(block)
        for j in range(i2 - i1):
            column = block[:, j : j + 1]
            q = torch.clamp(torch.round(column / s), -r, r)
            codes[:, i1 + j : i1 + j + 1] = q
            err = (column - q * s) / u[i1 + j, i1 + j]
            block[:, j:] -= err * u[i1 + j, i1 + j : i2][None, :]
            errors[:, j : j + 1] = err
        w[:, i2:] -= errors @ u[i1:i2, i2:]
    return codes


def gptq_quantize(weight: Tensor, hessian: Tensor, candidates: Sequence[Tensor], bits: int,
                  block_size: int = DEFAULT_BLOCK_SIZE, damp: float = DEFAULT_DAMP) -> tuple[Tensor, Tensor] | None:
    """(int8 codes on the CPU, the chosen per-row scale) of a 2-D `weight` (rows × cols) with GPTQ error
    compensation, computed on the Hessian's device (the GPU when calibration ran there).

    With several `candidates` (per-row scales), GPTQ runs once per candidate and the one whose codes
    reconstruct the (dead-column-zeroed) weight with the smallest mean squared error is kept, the first on
    ties (PR #1291's clip search). Returns None when H (after damping) is not positive definite, so the
    caller can fall back to round-to-nearest.
    """
    prepared = _prepared(weight, hessian, damp)
    if prepared is None:
        return None
    w, u, perm = prepared
    best: tuple[Tensor, Tensor, float] | None = None
    for scale in candidates:
        s = scale.float().to(w.device)[:, None]
        codes = _compensated_codes(w, u, s, qmax(bits), block_size)
        error = (w - codes * s).pow(2).mean().item() if len(candidates) > 1 else 0.0
        if best is None or error < best[2]:
            best = (codes, scale, error)
    assert best is not None, "gptq_quantize needs at least one candidate scale"
    return best[0][:, torch.argsort(perm)].to(torch.int8).cpu().contiguous(), best[1]


def hessian_names(model: nn.Module) -> set[str]:
    """Weights `collect_hessians` can serve for this model."""
    names = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, CastedLinear)}
    head = "tok_emb.weight" if getattr(model, "lm_head", None) is None else "lm_head.weight"
    return names | {head}
