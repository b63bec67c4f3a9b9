"""`pgolf submit`: the records folder, its numbers, and the refusals (over budget, missing log, mixed runs)."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from pgolf.cli import main
from pgolf.errors import UserError
from pgolf.experiments.submit import submit


def _runs(ablation, config: str = "baseline") -> list[Path]:
    return [ablation.run_dir(f"{config}-s{seed}") for seed in (1, 2)]


def test_records_folder_has_every_file_with_the_runs_numbers(finished_ablation, tmp_path: Path, capsys) -> None:
    out = tmp_path / "records" / "tiny"
    assert main(["submit", *map(str, _runs(finished_ablation)), "--name", "Tiny test", "--author", "A. Author",
                 "--github-id", "aauthor", "--blurb", "Two seeds of a tiny model.", "--out", str(out),
                 "--track", "non_record_16mb", "--form", "compressed"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "requirements.txt", "submission.json",
                                                     "train_gpt.py", "train_seed1.log", "train_seed2.log"]
    meta = json.loads((out / "submission.json").read_text())
    summaries = [json.loads((r / "summary.json").read_text()) for r in _runs(finished_ablation)]
    code = (out / "train_gpt.py").stat().st_size
    assert meta["bytes_code"] == code
    assert meta["bytes_total"] == code + max(s["model_bytes"] for s in summaries)
    assert meta["val_bpb"] == pytest.approx(statistics.fmean(s["val_bpb"] for s in summaries))
    assert meta["val_bpb_std"] == pytest.approx(statistics.stdev(s["val_bpb"] for s in summaries))
    assert [r["seed"] for r in meta["seed_results"]] == [1, 2]
    required = {"author", "github_id", "name", "blurb", "date", "val_loss", "val_bpb", "bytes_total", "bytes_code"}
    assert required <= set(meta)
    assert meta["code_form"].startswith("minified+")
    assert (out / "train_seed2.log").read_text() == (_runs(finished_ablation)[1] / "train.log").read_text()
    readme = (out / "README.md").read_text()
    for section in ("## Results", "## Architecture", "## Techniques and sources", "## Reproduce"):
        assert section in readme
    assert "| `model.num_layers` | 2 | 9 | depth |" in readme  # a difference from the baseline, with its source
    assert "SEED=2 RUN_ID=seed2 python train_gpt.py" in readme
    assert "torch==" in (out / "requirements.txt").read_text()
    assert f"{code:,}" in capsys.readouterr().out


def test_over_budget_and_missing_logs_are_refused_naming_the_run(finished_ablation, tmp_path: Path) -> None:
    runs = [tmp_path / p.name for p in _runs(finished_ablation)]
    for source, copy in zip(_runs(finished_ablation), runs, strict=True):
        shutil.copytree(source, copy)
    summary = json.loads((runs[1] / "summary.json").read_text())
    summary["model_bytes"] = 15_999_000
    (runs[1] / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "records" / "over"
    with pytest.raises(UserError, match=rf"run {runs[1]} is [\d,]+ bytes over the 16,000,000-byte cap"):
        submit(runs, name="over", author="a", github_id="a", out=out, track="non_record_16mb")
    assert not out.exists() and not list(out.parent.iterdir())  # nothing half-written
    (runs[0] / "train.log").unlink()
    with pytest.raises(UserError, match=rf"run {runs[0]} has no train.log"):
        submit(runs, name="nolog", author="a", github_id="a", out=tmp_path / "records" / "nolog")


def test_a_prefix_score_is_not_a_record(finished_ablation, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"scored only the first 8,192 val tokens .* --track non_record_16mb"):
        submit(_runs(finished_ablation), name="prefix", author="a", github_id="a", out=tmp_path / "prefix")
    assert not (tmp_path / "prefix").exists()


def test_runs_of_different_configurations_are_refused(finished_ablation, tmp_path: Path) -> None:
    mixed = [finished_ablation.run_dir("baseline-s1"), finished_ablation.run_dir("deeper-s2")]
    with pytest.raises(UserError, match=r"differ in model.num_layers \(2 vs 3\)"):
        submit(mixed, name="mixed", author="a", github_id="a", out=tmp_path / "mixed", track="non_record_16mb")
