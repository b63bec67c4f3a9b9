"""Seed statistics under the challenge's acceptance rules (USER_NEEDS need 5, TECHNIQUES §5.4).

Two rules have been used to accept a new record:

* record rule (the README): beat the reference by at least 0.005 nats of val_loss at p < 0.01;
* frontier rule (openai/parameter-golf#1902): a one-sided Welch test at p < 0.25, no margin.

Both are one-sided Welch t-tests of "reference − candidate > margin". The 0.005-nat margin is
converted to bpb with the candidate's own tokens-per-byte (`Δbpb = Δnats · T/B / ln 2`), because nats
are only comparable on the same tokenizer; the verdict is taken in bpb. Independent reproductions
are pooled by passing them together; a run passed twice (same weights) counts once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from pgolf.errors import UserError
from pgolf.experiments.results import aggregate, load_run

NATS_MARGIN = 0.005
DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class Rule:
    name: str
    label: str
    margin_nats: float
    alpha: float


RULES = (
    Rule("record", "record rule: ≥ 0.005 nats better at p < 0.01", NATS_MARGIN, 0.01),
    Rule("frontier", "frontier rule (#1902): one-sided Welch p < 0.25", 0.0, 0.25),
)


@dataclass(frozen=True)
class Sample:
    """Pooled results of one side of a comparison."""

    label: str
    loss: tuple[float, ...]  # val_loss, nats per token
    bpb: tuple[float, ...]
    tokens_per_byte: float  # val_tokens / val_bytes (nan when the source does not say)
    sources: tuple[str, ...]

    def describe(self) -> str:
        bpb, loss = aggregate(self.bpb), aggregate(self.loss)
        return (f"{self.label}: {len(self.bpb)} run{'s' if len(self.bpb) != 1 else ''}, val_bpb {bpb.text(5)}, "
                f"val_loss {loss.text(5)} nats")


def _submission_values(data: dict[str, Any]) -> list[tuple[float, float, str]]:
    """(loss, bpb, label) per seed of a records folder's submission.json (list or dict form)."""
    seeds = data.get("seed_results")
    if isinstance(seeds, dict):
        entries = list(seeds.items())
    else:
        entries = [(e.get("seed", i), e) for i, e in enumerate(seeds or [])]
    values = [(float(e["val_loss"]), float(e["val_bpb"]), f"seed {seed}") for seed, e in entries
              if isinstance(e, dict) and "val_loss" in e and "val_bpb" in e]
    if not values and "val_loss" in data and "val_bpb" in data:
        values = [(float(data["val_loss"]), float(data["val_bpb"]), "mean")]
    return values


def load_sample(label: str, paths: Sequence[str | Path]) -> Sample:
    """Pool run directories, summary.json files and submission.json files into one sample."""
    loss: list[float] = []
    bpb: list[float] = []
    ratios: list[float] = []
    sources: list[str] = []
    seen: set[str] = set()
    for path in map(Path, paths):
        if path.name == "submission.json" or (path / "submission.json").is_file():
            file = path if path.name == "submission.json" else path / "submission.json"
            values = _submission_values(json.loads(file.read_text(encoding="utf-8")))
            if not values:
                raise UserError(f"{file} has neither seed_results nor val_loss/val_bpb: pass run directories instead")
            for value_loss, value_bpb, what in values:
                loss.append(value_loss)
                bpb.append(value_bpb)
                sources.append(f"{file} ({what})")
            continue
        run = load_run(path)
        key = run.summary.get("weights_sha256") or str(run.run_dir.resolve())
        if key in seen:
            continue  # the same run given twice is one observation, not two
        seen.add(key)
        loss.append(float(run.summary["val_loss"]))
        bpb.append(float(run.summary["val_bpb"]))
        ratios.append(run.summary["val_tokens"] / run.summary["val_bytes"])
        sources.append(str(run.run_dir))
    if not bpb:
        raise UserError(f"no results for {label}: pass run directories, summary.json or submission.json files")
    return Sample(label, tuple(loss), tuple(bpb), float(np.mean(ratios)) if ratios else math.nan, tuple(sources))


@dataclass(frozen=True)
class TestResult:
    p: float | None  # None: not testable (a single value on both sides)
    method: str


def one_sided_p(candidate: Sequence[float], reference: Sequence[float], margin: float) -> TestResult:
    """p-value of H1: mean(reference) − mean(candidate) > margin (lower is better)."""
    cand, ref = np.asarray(candidate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(cand) >= 2 and len(ref) >= 2:
        result = sps.ttest_ind(cand, ref - margin, equal_var=False, alternative="less")
        return TestResult(_ttest_p(result), "Welch")
    if len(cand) >= 2:
        result = sps.ttest_1samp(cand, ref[0] - margin, alternative="less")
        return TestResult(_ttest_p(result), "one-sample vs the single reference value")
    if len(ref) >= 2:
        result = sps.ttest_1samp(ref, cand[0] + margin, alternative="greater")
        return TestResult(_ttest_p(result), "one-sample vs the single candidate value")
    return TestResult(None, "untestable: one value on each side")


def _ttest_p(result: tuple[Any, ...]) -> float | None:
    """The p-value of a scipy t-test result: a (statistic, pvalue) tuple whose named fields scipy adds at run time,
    out of a type checker's sight."""
    return _finite(float(result[1]))


def _finite(p: float) -> float | None:
    """A p-value; zero-variance samples give nan, which means the test cannot decide."""
    return float(p) if math.isfinite(p) else None


def seeds_needed(delta: float, margin: float, std: float, alpha: float, power: float = DEFAULT_POWER,
                 max_n: int = 1000) -> int | None:
    """Smallest seeds per side so that a true improvement `delta` passes at `alpha` with `power`.

    Equal n per side and the measured std on both; power from the noncentral t distribution.
    None when `delta` does not exceed the margin (no number of seeds can show it).
    """
    if delta <= margin or not math.isfinite(std):
        return None
    if std == 0:
        return 2
    for n in range(2, max_n + 1):
        df = 2 * n - 2
        noncentrality = (delta - margin) / (std * math.sqrt(2.0 / n))
        if 1.0 - sps.nct.cdf(sps.t.ppf(1.0 - alpha, df), df, noncentrality) >= power:
            return n
    return None


def pooled_std(*samples: Sequence[float]) -> float:
    """Root mean of the sample variances of the groups that have at least two values."""
    variances = [float(np.var(s, ddof=1)) for s in samples if len(s) >= 2]
    return math.sqrt(float(np.mean(variances))) if variances else math.nan


def bpb_per_nat(tokens_per_byte: float) -> float:
    return tokens_per_byte / math.log(2.0)


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    margin_bpb: float
    bpb: TestResult
    nats: TestResult
    seeds_needed: int | None

    @property
    def clears(self) -> bool:
        return self.bpb.p is not None and self.bpb.p < self.rule.alpha


@dataclass(frozen=True)
class Comparison:
    candidate: Sample
    reference: Sample | None
    std_bpb: float
    target_delta_bpb: float | None
    power: float
    outcomes: tuple[RuleOutcome, ...]

    @property
    def delta_bpb(self) -> float | None:
        if self.reference is None:
            return None
        return float(np.mean(self.reference.bpb) - np.mean(self.candidate.bpb))

    @property
    def delta_nats(self) -> float | None:
        if self.reference is None:
            return None
        return float(np.mean(self.reference.loss) - np.mean(self.candidate.loss))

    @property
    def same_tokenization(self) -> bool:
        ref = self.reference
        return ref is not None and math.isclose(self.candidate.tokens_per_byte, ref.tokens_per_byte, rel_tol=1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": {"n": len(self.candidate.bpb), "val_bpb": list(self.candidate.bpb),
                          "val_loss": list(self.candidate.loss), "sources": list(self.candidate.sources)},
            "reference": None if self.reference is None else {
                "n": len(self.reference.bpb), "val_bpb": list(self.reference.bpb),
                "val_loss": list(self.reference.loss), "sources": list(self.reference.sources)},
            "delta_bpb": self.delta_bpb, "delta_nats": self.delta_nats, "std_bpb": self.std_bpb,
            "target_delta_bpb": self.target_delta_bpb, "power": self.power,
            "rules": {o.rule.name: {"alpha": o.rule.alpha, "margin_nats": o.rule.margin_nats,
                                    "margin_bpb": o.margin_bpb, "p_bpb": o.bpb.p, "p_nats": o.nats.p,
                                    "method": o.bpb.method, "clears": o.clears,
                                    "seeds_needed_per_side": o.seeds_needed} for o in self.outcomes},
        }


def compare(candidate: Sample, reference: Sample | None, target_delta_bpb: float | None = None,
            power: float = DEFAULT_POWER) -> Comparison:
    """Test the candidate against the reference under every rule; seeds needed for the target delta."""
    if not math.isfinite(candidate.tokens_per_byte):
        raise UserError("the candidate needs run directories (their val_tokens / val_bytes convert nats to bpb)")
    std = pooled_std(candidate.bpb, *(() if reference is None else (reference.bpb,)))
    delta = target_delta_bpb
    if delta is None and reference is not None:
        delta = float(np.mean(reference.bpb) - np.mean(candidate.bpb))
    outcomes = []
    for rule in RULES:
        margin_bpb = rule.margin_nats * bpb_per_nat(candidate.tokens_per_byte)
        untested = TestResult(None, "no reference given")
        bpb = untested if reference is None else one_sided_p(candidate.bpb, reference.bpb, margin_bpb)
        nats = untested if reference is None else one_sided_p(candidate.loss, reference.loss, rule.margin_nats)
        needed = None if delta is None else seeds_needed(delta, margin_bpb, std, rule.alpha, power)
        outcomes.append(RuleOutcome(rule, margin_bpb, bpb, nats, needed))
    return Comparison(candidate, reference, std, delta, power, tuple(outcomes))


def _p(result: TestResult) -> str:
    return "n/a" if result.p is None else f"{result.p:.3g}"


def render(comparison: Comparison) -> str:
    c = comparison
    lines = [c.candidate.describe()]
    if c.reference is not None:
        lines.append(c.reference.describe())
        lines.append(f"improvement (reference − candidate): {c.delta_bpb:+.5f} bpb, {c.delta_nats:+.5f} nats "
                     f"({bpb_per_nat(c.candidate.tokens_per_byte):.4f} bpb per nat for the candidate's tokenizer)")
        if not c.same_tokenization:
            lines.append("note: the two sides do not share tokens per byte (another tokenizer or val set): "
                         "nats are not comparable, the verdicts use bpb")
    for outcome in c.outcomes:
        rule = outcome.rule
        if c.reference is None:
            verdict = "no reference given (--against)"
        else:
            verdict = ("CLEARS" if outcome.clears else "does NOT clear") + (
                f": one-sided p = {_p(outcome.bpb)} in bpb (margin {outcome.margin_bpb:.5f} bpb), "
                f"{_p(outcome.nats)} in nats; {outcome.bpb.method}")
        lines.append(f"{rule.label}: {verdict}")
    std_text = "unknown (needs ≥ 2 runs on a side)" if math.isnan(c.std_bpb) else f"{c.std_bpb:.5f} bpb"
    lines.append(f"seed std (pooled): {std_text}")
    if c.target_delta_bpb is not None:
        needs = "; ".join(f"{o.rule.name} rule {_seeds_text(o.seeds_needed)}" for o in c.outcomes)
        lines.append(f"seeds needed per side to show {c.target_delta_bpb:+.5f} bpb with {c.power:.0%} power: {needs}")
    return "\n".join(lines)


def _seeds_text(n: int | None) -> str:
    return "impossible (the delta does not exceed the margin, or the std is unknown)" if n is None else str(n)
