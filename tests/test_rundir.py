"""The typed hand-offs serialise to the summary.json and `pgolf pack --json` keys their readers use."""

from __future__ import annotations

import json
from pathlib import Path

from pgolf.rundir import PackResult, RunDir, StageScore, Summary, TrainResult

SUMMARY_KEYS = {
    "val_loss", "val_bpb", "val_tokens", "val_bytes", "eval_stage", "legality", "eval_stages",
    "pre_quant_val_loss", "pre_quant_val_bpb", "post_quant_val_loss", "post_quant_val_bpb", "quant_gap_bpb",
    "artifact_bytes", "code_bytes", "model_bytes", "budget_margin", "fits_budget", "codec", "transform", "quant",
    "pack_seconds", "code_files", "params", "steps", "train_tokens", "train_tokens_per_s", "wallclock_s",
    "stopped_early", "last_train_loss", "seed", "preset", "run_id", "git_commit", "weights_sha256",
    "artifact_sha256", "phases", "proxy", "manifest", "recompiles_after_warmup",
}


def _pack(tmp_path: Path) -> PackResult:
    return PackResult(artifact=tmp_path / "artifact.pgolf", codec="zlib", model_bytes=900, code_bytes=100,
                      budget_limit=1500, code_files=("pgolf/a.py",), budget_report="report", payload_bytes=950,
                      quant={"scheme": "int8"}, tensor_rows=({"name": "w"},), tensor_report=tmp_path / "t.json")


def test_summary_keeps_the_summary_json_keys(tmp_path: Path) -> None:
    legality = {"compliant": True}
    plain = StageScore("plain", 2.0, 1.2, 100, 400, legality)
    sliding = StageScore.from_report({"stage": "sliding", "val_loss": 1.9, "val_bpb": 1.1, "val_tokens": 100,
                                      "val_bytes": 400, "legality": legality, "elapsed_s": 3.0})
    train = TrainResult(steps=10, train_tokens=5000, training_time_ms=2000.0, stopped_early=False,
                        last_train_loss=2.5, recompiles=0)
    manifest = {"seed": 7, "git_commit": "abc", "config": {"run": {"preset": "tiny", "run_id": "r1"}}, "proxy": None}
    summary = Summary(sliding, (sliding,), (2.0, 1.15), (2.0, 1.2), _pack(tmp_path), train, 123, "w", "a",
                      {"train": 2.0}, manifest, {"averaged_weights": "ema"})
    out = json.loads(json.dumps(summary.to_dict()))
    assert set(out) == SUMMARY_KEYS | {"averaged_weights"}
    assert (out["eval_stage"], out["val_bpb"], out["eval_stages"][0]["elapsed_s"]) == ("sliding", 1.1, 3.0)
    assert out["quant_gap_bpb"] == 1.2 - 1.15 and out["train_tokens_per_s"] == 2500.0
    assert (out["artifact_bytes"], out["budget_margin"], out["fits_budget"]) == (1000, 500, True)
    assert (out["preset"], out["run_id"], out["seed"]) == ("tiny", "r1", 7)
    assert plain.to_dict()["stage"] == "plain"


def test_pack_result_json_and_run_paths(tmp_path: Path) -> None:
    out = _pack(tmp_path).to_dict()
    assert out["tensor_report"] == str(tmp_path / "t.json") and out["tensor_rows"] == [{"name": "w"}]
    bare = PackResult(tmp_path / "x.pgolf", "zlib", 10, 10, 15, (), "r").to_dict()
    assert "tensor_rows" not in bare and bare["fits_budget"] is False and bare["budget_margin"] == -5
    run = RunDir.of(tmp_path, "r1")
    assert run.tensor_report == tmp_path / "r1" / "artifact.tensors.json" and not run.finished()
