"""`pgolf ablate` end to end on real runs: the report's numbers, skipping, resuming, stale results."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
from experiments_kit import ablation_toml

from pgolf.errors import UserError
from pgolf.experiments.ablate import run_ablation
from pgolf.experiments.results import load_run
from testkit import present

CONFIGS = ("baseline", "deeper")


def _summaries(ablation, config: str) -> list[dict]:
    return [json.loads((ablation.run_dir(f"{config}-s{seed}") / "summary.json").read_text()) for seed in (1, 2)]


def test_every_configuration_ran_every_seed_and_the_shell_environment_stayed_out(finished_ablation) -> None:
    # The fixture ran with SEED=999 and NUM_LAYERS=1 exported: the file alone decides each run.
    for config, layers in zip(CONFIGS, (2, 3), strict=True):
        for seed, summary in zip((1, 2), _summaries(finished_ablation, config), strict=True):
            assert (summary["seed"], summary["run_id"]) == (seed, f"{config}-s{seed}")
            assert summary["manifest"]["config"]["model"]["num_layers"] == layers


def test_results_csv_holds_each_run_and_the_mean_and_std_of_every_metric(finished_ablation) -> None:
    rows = list(csv.DictReader((finished_ablation.folder / "results.csv").open()))
    for config in CONFIGS:
        summaries = _summaries(finished_ablation, config)
        runs = [r for r in rows if r["config"] == config and r["kind"] == "run"]
        assert sorted(float(r["val_bpb"]) for r in runs) == sorted(s["val_bpb"] for s in summaries)
        mean = next(r for r in rows if r["config"] == config and r["kind"] == "mean")
        std = next(r for r in rows if r["config"] == config and r["kind"] == "std")
        for metric in ("val_bpb", "val_loss", "artifact_bytes", "params", "pre_quant_val_bpb"):
            values = [float(s[metric]) for s in summaries]
            assert float(mean[metric]) == pytest.approx(statistics.fmean(values))
            assert float(std[metric]) == pytest.approx(statistics.stdev(values))
        step_ms = statistics.fmean(1000 * s["wallclock_s"] / s["steps"] for s in summaries)
        assert float(mean["step_ms"]) == pytest.approx(step_ms)


def test_results_md_reports_deltas_and_the_isolated_contribution(finished_ablation) -> None:
    text = (finished_ablation.folder / "results.md").read_text()
    base = statistics.fmean(s["val_bpb"] for s in _summaries(finished_ablation, "baseline"))
    deeper = statistics.fmean(s["val_bpb"] for s in _summaries(finished_ablation, "deeper"))
    row = next(line for line in text.splitlines() if line.startswith("| deeper | 3 layers"))
    assert f"{deeper - base:+,.4f}" in row
    assert "## Isolated contribution of each feature" in text
    contribution = next(line for line in text.splitlines() if line.startswith("| deeper | deeper vs baseline"))
    assert f"{deeper - base:+,.4f}" in contribution and "%" in contribution
    for plot in ("loss_curves", "val_bpb_bars", "bpb_vs_bytes"):
        assert (finished_ablation.folder / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"plots/{plot}.png" in text
    curves = list(csv.DictReader((finished_ablation.folder / "plots" / "loss_curves.csv").open()))
    assert {(r["run_id"], int(r["step"])) for r in curves} == {(f"{c}-s{s}", step) for c in CONFIGS for s in (1, 2)
                                                                 for step in range(1, 7)}


def test_rerun_skips_finished_runs(finished_ablation) -> None:
    before = {p: p.stat().st_mtime_ns for p in (finished_ablation.folder / "runs").glob("*/summary.json")}
    log: list[str] = []
    run_ablation(finished_ablation.file, out=finished_ablation.folder, echo=log.append)
    assert "4 of 4 runs already finished: skipped" in log
    assert not any("start" in line for line in log)
    assert before == {p: p.stat().st_mtime_ns for p in (finished_ablation.folder / "runs").glob("*/summary.json")}


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(finished_ablation, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(finished_ablation.folder, folder)
    run = folder / "runs" / "deeper-s2"
    original = load_run(run).summary
    (run / "summary.json").unlink()  # as if killed after the step-4 checkpoint
    log: list[str] = []
    run_ablation(finished_ablation.file, out=folder, echo=log.append)
    assert any("start deeper-s2 (resume)" in line for line in log)
    resumed = load_run(run).summary
    assert resumed["weights_sha256"] == original["weights_sha256"]
    assert resumed["val_bpb"] == original["val_bpb"]
    assert [step for step, _ in load_run(run).loss_curve()] == list(range(1, 7))


def test_a_changed_configuration_does_not_silently_reuse_old_results(finished_ablation, tmp_path: Path) -> None:
    changed = tmp_path / "changed.toml"
    text = finished_ablation.file.read_text()
    changed.write_text(text.replace('"train.iterations" = "6"', '"train.iterations" = "7"'))
    assert changed.read_text() != finished_ablation.file.read_text()
    with pytest.raises(UserError, match=r"was made with train.iterations=6 but the ablation now asks for 7"):
        run_ablation(changed, out=finished_ablation.folder, echo=lambda _: None)


@pytest.mark.parametrize("design", ["forward", "leave_one_out"])
def test_adaptive_and_leave_one_out_designs_reuse_the_same_runs(finished_ablation, small_dataset, tmp_path: Path,
                                                                design: str) -> None:
    folder = tmp_path / design
    shutil.copytree(finished_ablation.folder, folder)
    file = tmp_path / f"{design}.toml"
    file.write_text(ablation_toml(small_dataset, design=design))
    log: list[str] = []
    outcome = present(run_ablation(file, out=folder, echo=log.append))
    assert not any(" start " in line for line in log)  # feature sets name their runs canonically: all reused
    base = statistics.fmean(s["val_bpb"] for s in _summaries(finished_ablation, "baseline"))
    deeper = statistics.fmean(s["val_bpb"] for s in _summaries(finished_ablation, "deeper"))
    text = (folder / "results.md").read_text()
    if design == "forward":
        expected = ["deeper"] if deeper < base else []
        rounds = present(outcome.rounds)
        assert [r.added for r in rounds if r.added] == expected
        assert rounds[1].candidates == {"deeper": pytest.approx(deeper)}
        assert "## Greedy forward selection" in text
    else:
        assert "## Leave-one-out contribution of each feature" in text
        row = next(line for line in text.splitlines() if line.startswith("| deeper | deeper vs baseline"))
        assert f"{deeper - base:+,.4f}" in row
