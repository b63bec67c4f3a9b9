"""`pgolf verify`: the legality policy's conditions, tested on a mode from outside.

* causal + score before update — the perturbation test: replace every token after position p by
  random tokens; every per-token loss of a target before p must stay the same (1e-6 relative).
  Repeated at several p. An adaptation that learned from a token before scoring it, or a score that
  looked ahead, changes an earlier loss.
* normalized — on sampled scored rows, the recorded loss equals −log p(target) of a softmax over
  the whole vocabulary, whose probabilities sum to 1.
* single pass — every target of the stream is scored exactly once (the ledger also refuses a
  second score of a position the moment it happens).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pgolf.evaluate.ledger import LedgerResult, NormalizationAudit
from pgolf.evaluate.legality import POLICY, ruling

RELATIVE_TOLERANCE = 1e-6

RunFn = Callable[[Tensor, NormalizationAudit | None], LedgerResult]


@dataclass(frozen=True)
class CheckResult:
    condition: str
    passed: bool
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"condition": self.condition, "passed": self.passed, **self.details}


def perturbation_positions(n_targets: int, count: int) -> list[int]:
    """`count` positions spread over the interior of the stream."""
    return sorted({max(1, n_targets * (i + 1) // (count + 1)) for i in range(count)})


def perturb_after(tokens: Tensor, position: int, vocab_size: int, seed: int) -> Tensor:
    """A copy of `tokens` whose targets from pair `position` on (tokens[position + 1:]) are random."""
    generator = torch.Generator().manual_seed(seed)
    changed = tokens.clone()
    tail = changed[position + 1 :]
    tail.copy_(torch.randint(0, vocab_size, tail.shape, generator=generator, dtype=tail.dtype))
    return changed


def earlier_losses_diff(reference: np.ndarray, perturbed: np.ndarray, position: int) -> tuple[float, int]:
    """(max relative change, count of changed losses) over targets before `position`."""
    before, after = reference[:position], perturbed[:position]
    relative = np.abs(after - before) / np.maximum(np.abs(before), 1e-12)
    return float(relative.max(initial=0.0)), int((relative > RELATIVE_TOLERANCE).sum())


def check_causality(run: RunFn, tokens: Tensor, reference: np.ndarray, positions: list[int], vocab_size: int,
                    seed: int) -> CheckResult:
    trials = []
    for trial, position in enumerate(positions):
        perturbed = run(perturb_after(tokens, position, vocab_size, seed + trial), None).losses
        assert perturbed is not None
        worst, changed = earlier_losses_diff(reference, perturbed, position)
        trials.append({"position": position, "max_relative_change_before": worst, "changed_before": changed})
    passed = all(t["changed_before"] == 0 for t in trials)
    return CheckResult("causal+score_before_update", passed,
                       {"test": "perturb every token after p; losses before p must not move",
                        "relative_tolerance": RELATIVE_TOLERANCE, "trials": trials})


def check_normalization(audit: NormalizationAudit) -> CheckResult:
    return CheckResult("normalized", audit.passed(), audit.to_dict())


def check_single_pass(result: LedgerResult) -> CheckResult:
    coverage = result.coverage
    assert coverage is not None
    return CheckResult("single_pass", coverage.complete,
                       {"targets": coverage.n_targets, "scored_once": coverage.once, "missing": coverage.missing,
                        "scored_more_than_once": coverage.repeated})


def verify_mode(mode_name: str, run: RunFn, tokens: Tensor, vocab_size: int, positions: int = 3,
                seed: int = 0) -> dict[str, Any]:
    """Run all checks of the policy on one mode; `run(tokens, audit)` must keep per-token losses."""
    audit = NormalizationAudit(vocab_size)
    reference = run(tokens, audit)
    assert reference.losses is not None
    checks = [
        check_single_pass(reference),
        check_normalization(audit),
        check_causality(run, tokens, reference.losses, perturbation_positions(tokens.numel() - 1, positions),
                        vocab_size, seed),
    ]
    passed = all(c.passed for c in checks)
    return {"mode": mode_name, "policy": POLICY.id, "ruling": ruling(mode_name), "passed": passed,
            "verdict": "compliant" if passed else "NON-COMPLIANT", "tokens": tokens.numel() - 1,
            "val_bpb": reference.bpb.val_bpb, "checks": [c.to_dict() for c in checks]}
