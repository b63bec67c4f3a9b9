"""The score-first ledger: the one place a per-token score is recorded, and the gate to adaptation.

Every evaluation mode records its scores here, by pair position, and adaptation code obtains the
tokens it learns from only through `released()`. The ledger therefore enforces two of the four
legality conditions by construction:

* single pass — a position can be recorded once; a second `record` of it raises `LegalityError`;
* score before update — `released(a, b)` raises unless every target in [a, b) is already recorded
  (on some rank), so no update can see a token before its score is fixed.

Causality and normalization are properties of the model computation; `pgolf.evaluate.legality`
tests them from outside (perturbation test) and through `NormalizationAudit` below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pgolf.data.tokenizer import ByteCounter
from pgolf.evaluate.bpb import BPBAccumulator, BPBResult
from pgolf.evaluate.windows import WindowBatch
from pgolf.train.distributed import sum_across_group


class LegalityError(RuntimeError):
    """An evaluation mode tried to rescore a token or to learn from one not yet scored (a bug)."""


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-token cross-entropy in nats on fp32 logits: −log of a softmax over the whole vocabulary."""
    flat = logits.float().reshape(-1, logits.size(-1))
    return F.cross_entropy(flat, targets.reshape(-1), reduction="none").view_as(targets)


@dataclass
class NormalizationAudit:
    """Checks, on sampled scored rows, that the recorded loss is −log p(target) of a distribution that
    covers the whole vocabulary and sums to 1."""

    vocab_size: int
    rows_per_batch: int = 8
    rows_checked: int = 0
    batches_without_logits: int = 0
    max_sum_error: float = 0.0  # max |Σ_v p(v) − 1|
    max_nll_error: float = 0.0  # max |recorded nll − (−log p(target))|
    widths: set[int] = field(default_factory=set)

    def observe(self, batch: WindowBatch, nll: Tensor, logits: Tensor | None) -> None:
        if logits is None:
            self.batches_without_logits += 1
            return
        self.widths.add(int(logits.size(-1)))
        rows = batch.scored.nonzero()[: self.rows_per_batch]
        picked = logits[rows[:, 0], rows[:, 1]].detach().double()
        log_probs = torch.log_softmax(picked, dim=-1)
        sums = log_probs.exp().sum(-1)
        targets = batch.y[rows[:, 0], rows[:, 1]]
        reference = -log_probs.gather(1, targets[:, None]).squeeze(1)
        recorded = nll.detach()[rows[:, 0], rows[:, 1]].double()
        self.rows_checked += int(rows.size(0))
        if rows.size(0):
            self.max_sum_error = max(self.max_sum_error, float((sums - 1).abs().max()))
            self.max_nll_error = max(self.max_nll_error, float((recorded - reference).abs().max()))

    def passed(self, tolerance: float = 1e-4) -> bool:
        return (self.rows_checked > 0 and self.batches_without_logits == 0 and self.widths == {self.vocab_size}
                and self.max_sum_error <= tolerance and self.max_nll_error <= tolerance)

    def to_dict(self) -> dict[str, object]:
        return {"rows_checked": self.rows_checked, "batches_without_logits": self.batches_without_logits,
                "distribution_widths": sorted(self.widths), "vocab_size": self.vocab_size,
                "max_abs_sum_minus_1": self.max_sum_error, "max_abs_nll_error": self.max_nll_error}


@dataclass(frozen=True)
class Coverage:
    """How often each target of the stream was scored, over all ranks."""

    n_targets: int
    once: int
    missing: int
    repeated: int

    @property
    def single_pass(self) -> bool:
        return self.repeated == 0

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.repeated == 0


@dataclass
class LedgerResult:
    bpb: BPBResult
    losses: np.ndarray | None  # float64 nats of the scored targets in stream order (all ranks)
    coverage: Coverage | None  # None unless losses were kept (it costs one all-reduce of the stream)


class ScoreLedger:
    """Per-position record of scores for one evaluation pass of `n_targets` targets."""

    def __init__(self, n_targets: int, lut: ByteCounter, device: torch.device, keep_losses: bool = False,
                 audit: NormalizationAudit | None = None) -> None:
        self.n_targets = n_targets
        self.device = device
        self.accumulator = BPBAccumulator(lut, device)
        self.scored = np.zeros(n_targets, dtype=bool)
        self.losses = np.zeros(n_targets, dtype=np.float64) if keep_losses else None
        self.audit = audit

    @property
    def scored_count(self) -> int:
        """Targets scored on this rank."""
        return int(self.scored.sum())

    def record(self, batch: WindowBatch, nll: Tensor, logits: Tensor | None = None) -> None:
        """Fix the scores of the batch's scored positions (`nll` is (B, L) nats, aligned with the batch)."""
        for w in batch.windows:
            if w.first_target < 0 or w.end > self.n_targets:
                raise LegalityError(f"window {w} scores targets outside the stream [0, {self.n_targets})")
            if self.scored[w.first_target : w.end].any():
                first = w.first_target + int(np.argmax(self.scored[w.first_target : w.end]))
                raise LegalityError(f"target at position {first} was already scored: each token is scored once")
            self.scored[w.first_target : w.end] = True
        mask = batch.scored
        values = nll.detach()[mask]
        # pair position i predicts stream token i + 1: byte sidecars are indexed by the target's stream index
        self.accumulator.add(values, batch.x[mask], batch.y[mask], batch.positions[mask] + 1)
        if self.losses is not None:
            self.losses[batch.positions[mask].cpu().numpy()] = values.double().cpu().numpy()
        if self.audit is not None:
            self.audit.observe(batch, nll, logits)

    def require_scored(self, begin: int, end: int) -> None:
        """Raise unless every target in [begin, end) has been scored (on any rank)."""
        local = torch.tensor(int(self.scored[begin:end].sum()), dtype=torch.int64, device=self.device)
        sum_across_group(local)
        if int(local) != end - begin:
            raise LegalityError(f"adaptation asked for targets [{begin}, {end}) but only {int(local)} of them "
                                "are scored: score first, then learn")

    def released(self, tokens: Tensor, begin: int, end: int) -> Tensor:
        """The tokens of pairs [begin, end) (inputs and targets), once all their targets are scored."""
        self.require_scored(begin, end)
        return tokens[begin : end + 1]

    def finish(self) -> LedgerResult:
        """Reduce over ranks: the exact bpb of everything scored, and (if kept) losses and coverage."""
        bpb = self.accumulator.result()
        if self.losses is None:
            return LedgerResult(bpb, None, None)
        counts = torch.from_numpy(self.scored.astype(np.int32))
        losses = torch.from_numpy(self.losses)
        sum_across_group(counts, losses, device=self.device)
        counts_np = counts.numpy()
        coverage = Coverage(self.n_targets, int((counts_np == 1).sum()), int((counts_np == 0).sum()),
                            int((counts_np > 1).sum()))
        return LedgerResult(bpb, losses.numpy()[counts_np > 0].copy(), coverage)
