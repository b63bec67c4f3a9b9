"""Scoring windows over the validation stream, and their batching.

Positions are *pair* positions: pair i has input token `tokens[i]` and target `tokens[i + 1]`, for
i in [0, N) with N = len(tokens) − 1. A window feeds inputs `tokens[start : start + length]` and
scores the targets of pairs [start + score_from, start + length); everything before `score_from`
is context only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    start: int
    length: int
    score_from: int

    @property
    def first_target(self) -> int:
        """Pair position of the first scored target."""
        return self.start + self.score_from

    @property
    def end(self) -> int:
        """One past the pair position of the last scored target."""
        return self.start + self.length


def sliding_windows(n_pairs: int, context: int, stride: int) -> list[Window]:
    """Windows of `context` inputs every `stride` pairs; each pair scored once, with the longest context.

    A start `ws` is kept iff `ws + context − stride < n_pairs` (TECHNIQUES §4.1, the fixed rule of
    pitfall P5): the first window scores all its positions, every later one only its last `stride`
    (or fewer, at the end of the stream). `stride == context` gives the baseline's disjoint blocks.
    """
    if not 0 < stride <= context:
        raise ValueError(f"stride must be in (0, context={context}], got {stride}")
    ctx = context - stride
    windows = []
    for ws in range(0, n_pairs, stride):
        if ws > 0 and ws + ctx >= n_pairs:
            break
        windows.append(Window(ws, min(ws + context, n_pairs) - ws, 0 if ws == 0 else ctx))
    return windows


def rank_slice(items: Sequence[T], rank: int, world_size: int) -> Sequence[T]:
    """The contiguous share of `items` that `rank` handles (the baseline's split)."""
    total = len(items)
    return items[total * rank // world_size : total * (rank + 1) // world_size]


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]


@dataclass
class WindowBatch:
    """Windows stacked and right-padded to the longest: padding is never scored nor context."""

    windows: Sequence[Window]
    x: Tensor  # (B, L) input ids
    y: Tensor  # (B, L) target ids
    scored: Tensor  # (B, L) bool: positions whose targets this batch scores
    context: Tensor  # (B, L) bool: real positions before score_from (already scored elsewhere)
    positions: Tensor  # (B, L) int64 pair position of every column (−1 on padding)

    @property
    def valid(self) -> Tensor:
        return self.scored | self.context


def gather_batch(tokens: Tensor, windows: Sequence[Window], device: torch.device) -> WindowBatch:
    """Stack windows of `tokens` (on any device) into one right-padded batch on `device`."""
    width = max(w.length for w in windows)
    count = len(windows)
    positions = torch.full((count, width), -1, dtype=torch.int64)
    scored = torch.zeros((count, width), dtype=torch.bool)
    context = torch.zeros((count, width), dtype=torch.bool)
    for row, w in enumerate(windows):
        positions[row, : w.length] = torch.arange(w.start, w.end)
        scored[row, w.score_from : w.length] = True
        context[row, : w.score_from] = True
    index = positions.clamp_min(0)
    x = tokens[index].to(device=device, dtype=torch.int64, non_blocking=True)
    y = tokens[index + 1].to(device=device, dtype=torch.int64, non_blocking=True)
    return WindowBatch(windows, x, y, scored.to(device), context.to(device), positions.to(device))
