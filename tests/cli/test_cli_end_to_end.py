"""The CLI end to end on a tiny config: train → eval (run, artifact, official exports) → pack; errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

from artifact_fixtures import official_int8_export
from pgolf.artifact.format import read_artifact
from pgolf.cli import main
from testkit import tiny_overrides


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


@pytest.fixture(scope="module")
def trained_run(small_dataset, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *_sets(tiny_overrides(small_dataset, **{"run.out_dir": str(out), "run.run_id": "e2e"}))]) == 0
    return out / "e2e", json.loads((out / "e2e" / "summary.json").read_text())


def _eval_json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_run_and_artifact_reproduce_the_summary(trained_run, capsys) -> None:
    run, summary = trained_run
    from_run = _eval_json(capsys, [str(run)])
    from_artifact = _eval_json(capsys, [str(run / "artifact.pgolf")])
    for result in (from_run, from_artifact):
        assert result["val_bpb"] == summary["val_bpb"]
        assert result["val_loss"] == summary["val_loss"]
        assert (result["val_tokens"], result["val_bytes"]) == (summary["val_tokens"], summary["val_bytes"])


def test_official_state_dict_and_int8_export(trained_run, small_dataset, tmp_path: Path, capsys) -> None:
    run, summary = trained_run
    quantized, _meta = read_artifact(run / "weights.pgolf")
    state = {name: qt.data for name, qt in quantized.items()}
    kept = ("model.", "train.train_seq_len", "eval.", "train.dtype", "data.")
    model_sets = [s for s in tiny_overrides(small_dataset) if s.startswith(kept)]
    pt = tmp_path / "final_model.pt"
    torch.save(state, pt)
    result = _eval_json(capsys, [str(pt), "--preset", "baseline", *_sets(model_sets)])
    assert result["val_bpb"] == summary["pre_quant_val_bpb"]  # the float weights score exactly as in training

    buffer = io.BytesIO()
    torch.save(official_int8_export(state), buffer)
    ptz = tmp_path / "final_model.int8.ptz"
    ptz.write_bytes(zlib.compress(buffer.getvalue(), level=9))
    result = _eval_json(capsys, [str(ptz), "--preset", "baseline", *_sets(model_sets)])
    assert result["val_bpb"] == summary["post_quant_val_bpb"]  # official int8 roundtrip == pgolf's int8 roundtrip

    repack = ["pack", str(ptz), "--preset", "baseline", *_sets(model_sets), "--out", str(tmp_path / "re.pgolf")]
    assert main(repack) == 0
    repacked = _eval_json(capsys, [str(tmp_path / "re.pgolf")])
    assert repacked["val_bpb"] == summary["post_quant_val_bpb"]


def test_pack_run_with_other_codec_and_dump_losses(trained_run, tmp_path: Path, capsys) -> None:
    run, summary = trained_run
    out = tmp_path / "zstd.pgolf"
    assert main(["pack", str(run), "--codec", "zstd", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "16,000,000" in printed and "code bytes" in printed
    dump = tmp_path / "losses.npy"
    result = _eval_json(capsys, [str(out), "--dump-losses", str(dump)])
    assert result["val_bpb"] == summary["val_bpb"]
    import numpy as np

    losses = np.load(dump, allow_pickle=False)
    assert losses.dtype == np.float64 and losses.shape == (summary["val_tokens"],)
    assert abs(losses.sum() / len(losses) - summary["val_loss"]) < 1e-9


def _cli(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")} | (env or {})
    return subprocess.run([sys.executable, "-m", "pgolf", *argv], capture_output=True, text=True, env=full_env,
                          timeout=120, check=False)


def test_user_errors_exit_2_with_one_line_per_error(small_dataset, tmp_path: Path) -> None:
    cases = [
        (["train", *_sets(tiny_overrides(small_dataset, **{"data.dataset": str(tmp_path / "missing"),
                                                           "run.out_dir": str(tmp_path / "runs")}))], "does not exist"),
        (["train", *_sets(tiny_overrides(small_dataset, **{"model.vocab_size": 2048,
                                                           "run.out_dir": str(tmp_path / "runs")}))], "vocab"),
        (["train", "--set", "model.num_heads=3"], "model.model_dim"),
        (["config", "show", "--set", "model.nope=1"], "model.nope"),
        (["eval", str(tmp_path / "nothing.pgolf")], "does not exist"),
    ]
    for argv, needle in cases:
        proc = _cli(argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        first, *more = proc.stderr.splitlines()
        assert needle in proc.stderr and first.startswith("pgolf: error: "), proc.stderr
        assert all(line.startswith("  ") for line in more), proc.stderr  # config errors: one indented line each
    assert not (tmp_path / "runs").exists()  # nothing half-written for a run that could not start
    pickle_file = tmp_path / "evil.pgolf"
    pickle_file.write_bytes(b"\x80\x04\x95" + b"\x00" * 40)
    proc = _cli(["eval", str(pickle_file), "--preset", "tiny"])
    assert proc.returncode == 2 and "pickle" in proc.stderr
    proc = _cli(["config", "show"], env={"NUM_LAYERS": "many"})
    assert proc.returncode == 2 and "NUM_LAYERS" in proc.stderr


def test_every_config_error_is_listed_before_any_work(tmp_path: Path) -> None:
    proc = _cli(["train", "--set", "model.num_heads=3", "--set", "train.dtype=fp8", "--set", "model.nope=1",
                 "--set", f"run.out_dir={tmp_path / 'runs'}"], env={"NUM_LAYERS": "many"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "pgolf: error: 5 config errors:",
        "  model.num_layers: must be int, got 'many' (from environment NUM_LAYERS)",
        f"  model.nope: {proc.stderr.split('model.nope: ')[1].splitlines()[0]}",
        "  train.dtype: must be one of auto, bf16, fp32, got 'fp8' (from --set)",
        "  model.model_dim: 512 is not divisible by model.num_heads=3 (default value)",
        "  model.num_heads: 3 is not a multiple of model.num_kv_heads=4 (from --set)",
    ]
    assert "valid keys in [model] are" in proc.stderr and "(from --set)" in proc.stderr.split("model.nope: ")[1]
    assert not (tmp_path / "runs").exists()


def test_config_show_and_doctor(capsys) -> None:
    assert main(["config", "show", "--preset", "tiny", "--set", "model.num_layers=3"]) == 0
    assert "num_layers = 3" in capsys.readouterr().out
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["will_use"]["attention"] == "sdpa" and info["gloo"] is True


def test_train_scores_the_configured_eval_stages_and_eval_reproduces_them(small_dataset, tmp_path: Path,
                                                                         capsys) -> None:
    """A run with sliding + SLOT reports its last stage as val_bpb, labelled; no track takes a NON-COMPLIANT score."""
    sets = tiny_overrides(small_dataset, **{"run.out_dir": str(tmp_path), "run.run_id": "staged", "eval.stride": 32,
                                            "eval.slot": "published", "eval.slot_steps": 2})
    assert main(["train", *_sets(sets)]) == 0
    summary = json.loads((tmp_path / "staged" / "summary.json").read_text())
    assert [s["stage"] for s in summary["eval_stages"]] == ["sliding", "sliding+slot-published"]
    assert summary["eval_stage"] == "sliding+slot-published"
    assert summary["val_bpb"] == summary["eval_stages"][-1]["val_bpb"] != summary["post_quant_val_bpb"]
    assert summary["legality"]["label"] == "NON-COMPLIANT"
    assert "final_sliding+slot-published_exact" in (tmp_path / "staged" / "train.log").read_text()
    replay = _eval_json(capsys, [str(tmp_path / "staged")])  # the stages ran on the artifact's weights
    assert [s["val_bpb"] for s in replay["stages"]] == [summary["post_quant_val_bpb"],
                                                         *(s["val_bpb"] for s in summary["eval_stages"])]
    capsys.readouterr()
    code = main(["submit", str(tmp_path / "staged"), "--name", "x", "--author", "a", "--github-id", "g",
                 "--track", "non_record_16mb", "--out", str(tmp_path / "rec")])
    assert code == 2 and "NON-COMPLIANT" in capsys.readouterr().err and not (tmp_path / "rec").exists()
