"""Per-row symmetric int-k (k = 4..8) with fp16 per-row scales (TECHNIQUES §4.3.3, §4.4, §4.5.4).

Grid: codes in [−R, R] with R = 2^(k−1) − 1, stored in int8 containers; value = code · scale[row].
The per-row clip (and hence the scale, clip / R) comes from a `ClipRule`:

* ``max``     — the row's largest |w|;
* ``search``  — GPTQ-lite done per row: of the clip percentiles `SEARCH_PERCENTILES`, keep for each row
  the one with the smallest squared reconstruction error of that row;
* ``sd:K``    — SDClip: K · std(row), which controls the entropy (hence the compressed size) of the
  codes monotonically;
* ``lite``    — PR #635's GPTQ-lite as its script computes it: the same percentiles, but scales floored at
  1/R and kept in fp32 while the codes (of the clipped row) and the errors are computed, then stored as
  fp16 (`lite_rows`); reproduces the record's payload exactly.
* ``tensor``  — PR #1289's / #1425's GPTQ-lite as their scripts compute it: one percentile for the whole
  matrix, the one with the smallest mean squared error (the first on ties); scales floored at 1/R and rounded
  to fp16 before the codes are computed; int5 and below search without 99.999 (`tensor_lite`);
* ``q:P``     — every row clipped at its P-quantile of |w|, scale max(clip / R, 1/R) in fp32 for the codes,
  stored as fp16: the baseline's int8 (`q:0.9999984`), which PROTEUS uses for its embedding tables.

Unlike the baseline int8 export there is no absolute scale floor (1/R), so small rows keep their own
resolution; scales are floored only at fp16's smallest normal number. Codes are always computed with
the fp16-rounded scale that is stored, so quantize → dequantize is exact bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MIN_BITS, MAX_BITS = 4, 8
SEARCH_PERCENTILES: tuple[float, ...] = (0.999, 0.9995, 0.9999, 0.99999, 1.0)
SCALE_DTYPE = torch.float16
_SCALE_FLOOR = torch.finfo(SCALE_DTYPE).tiny


def qmax(bits: int) -> int:
    """R = 2^(bits−1) − 1: the largest code of the symmetric grid."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"int-k needs {MIN_BITS} ≤ bits ≤ {MAX_BITS}, got {bits}")
    return (1 << (bits - 1)) - 1


@dataclass(frozen=True)
class ClipRule:
    """How a row's clip value is chosen: kind is 'max', 'search' or 'sd' (with `k` std-devs)."""

    kind: str
    k: float = 0.0

    @classmethod
    def parse(cls, text: str) -> ClipRule:
        """'max', 'search', 'lite', 'tensor', 'sd:K' (K > 0) or 'q:P' (0 < P ≤ 1); ValueError naming the forms."""
        if text in ("max", "search", "lite", "tensor"):
            return cls(text)
        kind, _, value = text.partition(":")
        try:
            k = float(value)
        except ValueError:
            k = -1.0
        if not ((kind == "sd" and k > 0) or (kind == "q" and 0 < k <= 1)):
            raise ValueError(f"unknown clip rule {text!r}: use 'max', 'search' or 'sd:K' with K > 0 (e.g. sd:12.85), "
                             "'q:P' with 0 < P ≤ 1, or a record's GPTQ-lite: 'lite' (PR #635), 'tensor' (#1289/#1425)")
        return cls(kind, k)

    @property
    def fixes_codes(self) -> bool:
        """Whether the rule computes the codes with the scales (a record's own rounding), not `round_to_grid`."""
        return self.kind in ("lite", "tensor", "q")

    def __str__(self) -> str:
        return f"{self.kind}:{self.k:g}" if self.kind in ("sd", "q") else self.kind


def _scales_for(clip: Tensor, bits: int) -> Tensor:
    """fp16 scales for per-row clip values, floored so that no row divides by zero."""
    return (clip / qmax(bits)).clamp_min(_SCALE_FLOOR).to(SCALE_DTYPE)


def round_to_grid(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """int8 codes of a 2-D float `w` on the grid of per-row `scale` (round to nearest, clamp to ±R)."""
    r = qmax(bits)
    return torch.clamp(torch.round(w / scale.float()[:, None]), -r, r).to(torch.int8)


def _row_sq_error(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    return (w - round_to_grid(w, scale, bits).float() * scale.float()[:, None]).square().sum(dim=1)


def lite_rows(w: Tensor, bits: int, levels: tuple[float, ...] = SEARCH_PERCENTILES) -> tuple[Tensor, Tensor]:
    """(int8 codes, fp16 scales) of a 2-D tensor by PR #635's GPTQ-lite: for each percentile, clip the row at
    that quantile of |w|, scale = max(clip / R, 1/R) in fp32, round; keep per row the first candidate with the
    smallest squared error. A row whose largest |w| is below 1 is thus quantized on the grid 1/R."""
    w = w.float()
    r = qmax(bits)
    best: tuple[Tensor, Tensor, Tensor] | None = None
    for level in levels:
        clip = torch.quantile(w.abs(), level, dim=1)
        scale = (clip / r).clamp_min(1.0 / r)
        codes = torch.clamp(torch.round(torch.clamp(w, -clip[:, None], clip[:, None]) / scale[:, None]), -r, r)
        error = (w - codes * scale[:, None]).square().sum(dim=1)
        if best is None:
            best = (codes, scale, error)
            continue
        better = error < best[2]
        best = (torch.where(better[:, None], codes, best[0]), torch.where(better, scale, best[1]),
                torch.where(better, error, best[2]))
    assert best is not None
    return best[0].to(torch.int8), best[1].to(SCALE_DTYPE)


def tensor_lite(w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """(int8 codes, fp16 scales) of a 2-D tensor by PR #1289's / #1425's GPTQ-lite: for each percentile (the row
    max for 100 %), scale = max(clip / R, 1/R) rounded to fp16, codes round(w / scale) clamped to ±R; keep the
    percentile with the smallest mean squared error over the whole matrix, the first on ties."""
    w = w.float()
    r = qmax(bits)
    levels = SEARCH_PERCENTILES if bits >= 6 else tuple(p for p in SEARCH_PERCENTILES if p != 0.99999)
    best: tuple[Tensor, Tensor, float] | None = None
    for level in levels:
        clip = torch.quantile(w.abs(), level, dim=1) if level < 1.0 else w.abs().amax(dim=1)
        scale = (clip / r).clamp_min(1.0 / r).to(SCALE_DTYPE)
        codes = round_to_grid(w, scale, bits)
        error = (w - codes.float() * scale.float()[:, None]).pow(2).mean().item()
        if best is None or error < best[2]:
            best = (codes, scale, error)
    assert best is not None
    return best[0], best[1]


def record_codes(w: Tensor, bits: int, clip: ClipRule) -> tuple[Tensor, Tensor]:
    """(int8 codes, fp16 scales) of a 2-D tensor under a rule that fixes its own codes (`ClipRule.fixes_codes`)."""
    if clip.kind == "tensor":
        return tensor_lite(w, bits)
    return lite_rows(w, bits, (clip.k,) if clip.kind == "q" else SEARCH_PERCENTILES)


def row_scales(w: Tensor, bits: int, clip: ClipRule) -> Tensor:
    """Per-row fp16 scales of a 2-D float tensor under `clip`."""
    w = w.float()
    if clip.fixes_codes:
        return record_codes(w, bits, clip)[1]
    if clip.kind == "max":
        return _scales_for(w.abs().amax(dim=1), bits)
    if clip.kind == "sd":
        return _scales_for(clip.k * w.std(dim=1, unbiased=False), bits)
    levels = torch.tensor(SEARCH_PERCENTILES, dtype=torch.float32)
    clips = torch.quantile(w.abs(), levels, dim=1)  # (candidates, rows)
    candidates = [_scales_for(c, bits) for c in clips]
    errors = torch.stack([_row_sq_error(w, s, bits) for s in candidates])
    best = errors.argmin(dim=0)
    return torch.stack(candidates).gather(0, best[None, :])[0]


def quantize_rows(w: Tensor, bits: int, clip: ClipRule) -> tuple[Tensor, Tensor]:
    """Round-to-nearest int-k: (int8 codes of w's shape, fp16 per-row scales) for a ≥2-D tensor.

    Tensors of rank > 2 are treated as (shape[0], rest) matrices.
    """
    if w.ndim < 2:
        raise ValueError(f"int-k quantizes matrices; got a tensor of shape {tuple(w.shape)}")
    matrix = w.detach().float().reshape(w.shape[0], -1)
    if clip.fixes_codes:
        codes, scale = record_codes(matrix, bits, clip)
        return codes.reshape(w.shape).contiguous(), scale.contiguous()
    scale = row_scales(matrix, bits, clip)
    return round_to_grid(matrix, scale, bits).reshape(w.shape).contiguous(), scale.contiguous()


def magnitude_prune(w: Tensor, fraction: float) -> Tensor:
    """A copy of `w` with the `fraction` smallest-|w| entries set to zero (TECHNIQUES §4.8)."""
    if fraction <= 0:
        return w
    flat = w.detach().float().abs().flatten()
    keep_from = int(fraction * flat.numel())
    if keep_from == 0:
        return w
    threshold = flat.kthvalue(keep_from).values
    return torch.where(w.abs() <= threshold, torch.zeros_like(w), w)
