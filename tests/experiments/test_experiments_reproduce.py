"""`pgolf reproduce` re-runs a run from its manifest: on CPU the weights come back bit-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pgolf.cli import main


def test_reproduce_gives_identical_weights_and_says_so(finished_ablation, tmp_path: Path, capsys) -> None:
    run = tmp_path / "deeper-s1"
    shutil.copytree(finished_ablation.run_dir("deeper-s1"), run)
    assert main(["reproduce", str(run / "summary.json")]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED: bit-identical weights" in out
    rerun = json.loads((tmp_path / "deeper-s1-repro" / "summary.json").read_text())
    original = json.loads((run / "summary.json").read_text())
    assert rerun["weights_sha256"] == original["weights_sha256"] and rerun["val_bpb"] == original["val_bpb"]


def test_a_result_that_does_not_match_exits_3(finished_ablation, tmp_path: Path, capsys) -> None:
    run = tmp_path / "baseline-s1"
    shutil.copytree(finished_ablation.run_dir("baseline-s1"), run)
    summary = json.loads((run / "summary.json").read_text())
    summary["val_bpb"] += 0.01  # a claimed result the code does not produce
    summary["weights_sha256"] = "0" * 64
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["reproduce", str(run), "--tolerance", "0.001"]) == 3
    assert "did NOT reproduce: val_bpb differs by -0.010000" in capsys.readouterr().out
