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
* ``matrix``  — the per-matrix clip search of PR #1291 and PROTEUS (#1289, #1425): each percentile gives every
  row its clip (the row max at 1.0), fp16 scales floored at 1/R; the candidate whose codes reconstruct the
  whole matrix with the smallest mean squared error wins (first on ties); int5 and below search without
  99.999 as PROTEUS does. With GPTQ, every candidate is run through GPTQ and judged on its GPTQ codes
  (`gptq.gptq_quantize`).
* ``q:P``     — every row clipped at its P-th percentile of |w|, scale max(clip / R, 1/R), codes of the clipped row
  on fp32 scales, stored fp16: ``q:99.99984`` is the baseline int8 export's rule (`BASELINE_CLIP_Q`), which
  PR #1291 and PROTEUS use for their embedding tables.

The record rules (``lite``, ``matrix``, ``q:P``) floor scales at 1/R as their scripts do; the others have
no such floor, so small rows keep their own resolution (scales are floored only at fp16's smallest normal
number). Except for ``lite`` and ``q:P``, codes are computed with the fp16-rounded scale that is stored,
so quantize → dequantize is exact bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

MIN_BITS, MAX_BITS = 4, 8
SEARCH_PERCENTILES: tuple[float, ...] = (0.999, 0.9995, 0.9999, 0.99999, 1.0)
BASELINE_CLIP_Q = 99.99984 / 100.0  # computed as in the official script, so the float is bit-identical
CLIP_KINDS = ("max", "search", "lite", "matrix")
SCALE_DTYPE = torch.float16
_SCALE_FLOOR = torch.finfo(SCALE_DTYPE).tiny


def qmax(bits: int) -> int:
    """R = 2^(bits−1) − 1: the largest code of the symmetric grid."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"int-k needs {MIN_BITS} ≤ bits ≤ {MAX_BITS}, got {bits}")
    return (1 << (bits - 1)) - 1


@dataclass(frozen=True)
class ClipRule:
    """How a row's clip value is chosen: kind is one of `CLIP_KINDS`, 'sd' (`k` std-devs) or 'q' (percentile `k`)."""

    kind: str
    k: float = 0.0

    @classmethod
    def parse(cls, text: str) -> ClipRule:
        """One of `CLIP_KINDS`, 'sd:K' (K > 0) or 'q:P' (percentile, 0 < P ≤ 100); else a ValueError naming them."""
        if text in CLIP_KINDS:
            return cls(text)
        kind, _, value = text.partition(":")
        try:
            k = float(value)
        except ValueError:
            k = -1.0
        if not ((kind == "sd" and k > 0) or (kind == "q" and 0 < k <= 100)):
            raise ValueError(f"unknown clip rule {text!r}: use 'max', 'search' or 'sd:K' with K > 0 (e.g. sd:12.85), "
                             "'q:P' with 0 < P ≤ 100 (q:99.99984: the baseline int8 export's clip), 'lite' (PR #635's "
                             "GPTQ-lite) or 'matrix' (the per-matrix search of PR #1291 and PROTEUS)")
        return cls(kind, k)

    def __str__(self) -> str:
        if self.kind == "q":
            return f"q:{self.k!r}"  # exact: the level is computed from it as P / 100, as the records do
        return f"sd:{self.k:g}" if self.kind == "sd" else self.kind


def _scales_for(clip: Tensor, bits: int) -> Tensor:
    """fp16 scales for per-row clip values, floored so that no row divides by zero."""
    return (clip / qmax(bits)).clamp_min(_SCALE_FLOOR).to(SCALE_DTYPE)


def round_to_grid(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """int8 codes of a 2-D float `w` on the grid of per-row `scale` (round to nearest, clamp to ±R)."""
    r = qmax(bits)
    return torch.clamp(torch.round(w / scale.float()[:, None]), -r, r).to(torch.int8)


def _row_sq_error(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    return (w - round_to_grid(w, scale, bits).float() * scale.float()[:, None]).square().sum(dim=1)


def _clipped_codes(w: Tensor, clip: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """(float codes, fp32 scales) of the rows of `w` clipped at `clip`, on scales clip / R floored at 1/R."""
    r = qmax(bits)
    scale = (clip / r).clamp_min(1.0 / r)
    return torch.clamp(torch.round(torch.clamp(w, -clip[:, None], clip[:, None]) / scale[:, None]), -r, r), scale


def percentile_rows(w: Tensor, bits: int, level: float = BASELINE_CLIP_Q) -> tuple[Tensor, Tensor]:
    """(int8 codes, fp16 scales) of a 2-D tensor clipped per row at the `level` quantile of |w|: the baseline
    int8 export's rule (codes from the fp32 scales; rows whose clip is below 1 share the grid 1/R)."""
    codes, scale = _clipped_codes(w.float(), torch.quantile(w.float().abs(), level, dim=1), bits)
    return codes.to(torch.int8).contiguous(), scale.to(SCALE_DTYPE).contiguous()


def lite_rows(w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """(int8 codes, fp16 scales) of a 2-D tensor by PR #635's GPTQ-lite: for each percentile, clip the row at
    that quantile of |w|, scale = max(clip / R, 1/R) in fp32, round; keep per row the first candidate with the
    smallest squared error. A row whose largest |w| is below 1 is thus quantized on the grid 1/R."""
    w = w.float()
    best: tuple[Tensor, Tensor, Tensor] | None = None
    for level in SEARCH_PERCENTILES:
        codes, scale = _clipped_codes(w, torch.quantile(w.abs(), level, dim=1), bits)
        error = (w - codes * scale[:, None]).square().sum(dim=1)
        if best is None:
            best = (codes, scale, error)
            continue
        better = error < best[2]
        best = (torch.where(better[:, None], codes, best[0]), torch.where(better, scale, best[1]),
                torch.where(better, error, best[2]))
    assert best is not None
    return best[0].to(torch.int8), best[1].to(SCALE_DTYPE)


def matrix_candidates(w: Tensor, bits: int) -> list[Tensor]:
    """The fp16 per-row scales `matrix` chooses among: one set per `SEARCH_PERCENTILES` level (the row max at
    1.0; int5 and below without 99.999, as PROTEUS's int5/int4 export), each clip / R floored at 1/R, computed
    from Python-float levels as the records do."""
    a = w.float().abs()
    r = qmax(bits)
    levels = SEARCH_PERCENTILES if bits >= 6 else tuple(p for p in SEARCH_PERCENTILES if p != 0.99999)
    clips = [torch.quantile(a, level, dim=1) if level < 1.0 else a.amax(dim=1) for level in levels]
    return [(c / r).clamp_min(1.0 / r).to(SCALE_DTYPE) for c in clips]


def reconstruction_mse(w: Tensor, codes: Tensor, scale: Tensor) -> float:
    """Mean squared error of a 2-D float `w` against codes · per-row scale (the `matrix` criterion)."""
    return (w - codes.float() * scale.float()[:, None]).pow(2).mean().item()


def matrix_rows(w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """(int8 codes, fp16 scales) by the `matrix` rule with round-to-nearest."""
    w = w.float()
    best: tuple[Tensor, Tensor, float] | None = None
    for scale in matrix_candidates(w, bits):
        codes = round_to_grid(w, scale, bits)
        error = reconstruction_mse(w, codes, scale)
        if best is None or error < best[2]:
            best = (codes, scale, error)
    assert best is not None
    return best[0], best[1]


# Rules that choose codes and scales together: `row_scales` keeps only their scales.
_CODED_RULES: dict[str, Callable[[Tensor, int, ClipRule], tuple[Tensor, Tensor]]] = {
    "lite": lambda w, bits, clip: lite_rows(w, bits), "matrix": lambda w, bits, clip: matrix_rows(w, bits),
    "q": lambda w, bits, clip: percentile_rows(w, bits, clip.k / 100.0)}


def row_scales(w: Tensor, bits: int, clip: ClipRule) -> Tensor:
    """Per-row fp16 scales of a 2-D float tensor under `clip`."""
    w = w.float()
    if clip.kind in _CODED_RULES:
        return _CODED_RULES[clip.kind](w, bits, clip)[1]
    if clip.kind == "max":
        return _scales_for(w.abs().amax(dim=1), bits)
    if clip.kind == "sd":
        return _scales_for(clip.k * w.std(dim=1), bits)  # Bessel-corrected, as PR #1855 (line 2162)
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
    codes, scale = rtn_rows(matrix, bits, clip)
    return codes.reshape(w.shape).contiguous(), scale.contiguous()


def rtn_rows(w: Tensor, bits: int, clip: ClipRule) -> tuple[Tensor, Tensor]:
    """Round-to-nearest (int8 codes, fp16 scales) of a 2-D float tensor under `clip`."""
    if clip.kind in _CODED_RULES:  # their codes do not follow from the stored scales alone
        return _CODED_RULES[clip.kind](w, bits, clip)
    scale = row_scales(w, bits, clip)
    return round_to_grid(w, scale, bits), scale


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
