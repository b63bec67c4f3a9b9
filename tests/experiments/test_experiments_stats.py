"""Significance under both acceptance rules, the nats→bpb margin, seeds needed, pooling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from pgolf.cli import main
from pgolf.experiments.stats import RULES, Sample, compare, load_sample, one_sided_p, seeds_needed
from testkit import present

TOKENS_PER_BYTE = 0.4105  # sp1024 on the FineWeb val set


def _sample(label: str, bpb: list[float]) -> Sample:
    loss = [b * math.log(2) / TOKENS_PER_BYTE for b in bpb]
    return Sample(label, tuple(loss), tuple(bpb), TOKENS_PER_BYTE, ())


def test_welch_p_value_is_the_one_sided_test_against_the_shifted_reference() -> None:
    cand, ref = [1.080, 1.081, 1.079], [1.086, 1.088, 1.085]
    margin = 0.003
    t = (np.mean(ref) - margin - np.mean(cand)) / math.sqrt(np.var(cand, ddof=1) / 3 + np.var(ref, ddof=1) / 3)
    df = (np.var(cand, ddof=1) / 3 + np.var(ref, ddof=1) / 3) ** 2 / (
        (np.var(cand, ddof=1) / 3) ** 2 / 2 + (np.var(ref, ddof=1) / 3) ** 2 / 2)
    assert one_sided_p(cand, ref, margin).p == pytest.approx(sps.t.sf(t, df), rel=1e-9)
    assert present(one_sided_p(ref, cand, 0.0).p) > 0.99  # the worse side never "wins"


def test_record_rule_margin_is_0005_nats_in_the_candidates_bpb() -> None:
    ref = _sample("ref", [1.2244, 1.2246, 1.2242])
    # 0.0040 bpb better: clears the frontier rule easily, but 0.005 nats is 0.00296 bpb at sp1024 ...
    clear = compare(_sample("cand", [1.2204, 1.2206, 1.2202]), ref)
    record, frontier = clear.outcomes
    assert record.margin_bpb == pytest.approx(0.005 * TOKENS_PER_BYTE / math.log(2))
    assert record.margin_bpb == pytest.approx(0.00296, abs=1e-5)
    assert record.clears and frontier.clears
    # ... so 0.0020 bpb better clears only the frontier rule.
    small = compare(_sample("cand", [1.2224, 1.2226, 1.2222]), ref)
    assert [o.clears for o in small.outcomes] == [False, True]
    assert small.outcomes[0].bpb.p == pytest.approx(small.outcomes[0].nats.p, rel=1e-6)  # same tokenizer: same test


def test_seeds_needed_is_the_smallest_n_with_the_power() -> None:
    delta, std, alpha = 0.001, 0.0007, 0.01
    n = seeds_needed(delta, 0.0, std, alpha)
    def power(k: int) -> float:
        df, nc = 2 * k - 2, delta / (std * math.sqrt(2 / k))
        return float(1 - sps.nct.cdf(sps.t.ppf(1 - alpha, df), df, nc))
    assert n is not None and power(n) >= 0.8 > power(n - 1)
    assert present(seeds_needed(delta, 0.0, std, 0.25)) < n  # the frontier rule needs fewer seeds
    assert seeds_needed(0.002, 0.00296, std, alpha) is None  # below the record margin: impossible


def test_runs_pool_and_a_run_given_twice_counts_once(finished_ablation, tmp_path: Path) -> None:
    a, b = finished_ablation.run_dir("deeper-s1"), finished_ablation.run_dir("deeper-s2")
    sample = load_sample("cand", [a, b, a / "summary.json"])
    assert len(sample.bpb) == 2
    summary = json.loads((a / "summary.json").read_text())
    assert sample.tokens_per_byte == pytest.approx(summary["val_tokens"] / summary["val_bytes"])
    record = tmp_path / "submission.json"
    record.write_text(json.dumps({"seed_results": {"42": {"val_loss": 2.0, "val_bpb": 1.2}, "7": {"val_loss": 2.1,
                                                                                                "val_bpb": 1.25}}}))
    assert load_sample("ref", [record]).bpb == (1.2, 1.25)


def test_cli_says_plainly_whether_each_rule_is_cleared(finished_ablation, capsys) -> None:
    deeper = [str(finished_ablation.run_dir(f"deeper-s{s}")) for s in (1, 2)]
    base = [str(finished_ablation.run_dir(f"baseline-s{s}")) for s in (1, 2)]
    assert main(["stats", *deeper, "--against", *base, "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result["rules"]) == {r.name for r in RULES}
    for name, rule in result["rules"].items():
        verdict = "CLEARS" if rule["clears"] else "does NOT clear"
        assert any(line.startswith(name) and verdict in line for line in out.splitlines())
    assert "seeds needed per side" in out


def test_a_missing_run_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert main(["stats", str(tmp_path / "nope")]) == 2
    assert "no summary.json" in capsys.readouterr().err
