"""Packing a run per the [quant] config: baseline int8, policies, GPTQ, budget fit, CLI, inspect, bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pgolf.artifact.format import read_artifact, read_artifact_meta
from pgolf.bench.quant import bench_quant
from pgolf.cli import main
from pgolf.config import load_config, read_toml_file
from pgolf.export import shipped_code
from pgolf.model.gpt import build_model, count_parameters, flops_per_token
from pgolf.packing import load_packed_state, pack_weights
from pgolf.quant.int8 import quantize_state_dict_int8
from pgolf.rundir import WEIGHTS_NAME
from testkit import same_tensor


def run_config(run: Path, *overrides: str):
    return load_config(base=read_toml_file(run / "config.toml"), overrides=list(overrides), env={})


def pack(run: Path, out: Path, *args: str) -> int:
    return main(["pack", str(run), "--out", str(out), *args])


def test_training_packs_with_the_configured_policy(tiny_run: Path) -> None:
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["quant"]["policy"] == "int6" and summary["quant"]["scheme"] == "policy"
    model, meta = read_artifact(tiny_run / "artifact.pgolf")
    assert model["blocks.0.mlp.fc.weight"].bits == 6 and meta["quant"]["policy"] == "int6"
    assert "final_policy_zlib_roundtrip_exact" in (tiny_run / "train.log").read_text()
    assert (tiny_run / "artifact.tensors.json").is_file()


def test_int8_scheme_is_the_baseline_export_unchanged(tiny_run: Path) -> None:
    state, _ = load_packed_state(tiny_run / WEIGHTS_NAME)
    packed = pack_weights(state, run_config(tiny_run, "quant.scheme=int8"), {}, torch.device("cpu"), list)
    expected = quantize_state_dict_int8(state)
    assert packed.codec == "zlib" and packed.transform == "bykind"
    for name, qt in expected.items():
        got = packed.quantized[name]
        assert torch.equal(got.data, qt.data) and got.scheme == qt.scheme
        assert same_tensor(got.scale, qt.scale)


def test_pack_with_policy_and_auto_codec_then_eval(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "int6.pgolf"
    assert pack(tiny_run, out, "--policy", "int6", "--codec", "auto", "--transform", "auto") == 0
    printed = capsys.readouterr().out
    assert "blocks.1.mlp.fc.weight" in printed and "int6/search" in printed and "margin:" in printed
    report = json.loads((tmp_path / "int6.tensors.json").read_text())
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["blocks.0.attn.c_q.weight"]["bits"] == 6 and rows["tok_emb.weight"]["bits"] == 8
    assert rows["blocks.0.attn_scale"]["format"] == "fp32" and rows["blocks.0.attn_scale"]["rel_error"] == 0.0
    assert 0 < rows["blocks.0.mlp.proj.weight"]["rel_error"] < 0.1
    _, meta = read_artifact(out)
    assert meta["quant"]["policy"] == "int6" and meta["quant"]["methods"]["blocks.0.mlp.fc.weight"] == "rtn"
    assert main(["eval", str(out), "--json"]) == 0
    post = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pre = json.loads((tiny_run / "summary.json").read_text())["pre_quant_val_bpb"]
    assert abs(post["val_bpb"] - pre) < 0.02


def test_gptq_records_its_legal_calibration_source(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "gptq.pgolf"
    assert pack(tiny_run, out, "--policy", "int5mlp", "--gptq", "--set", "quant.calibration_seqs=4",
                "--set", "quant.calibration_seq_len=32") == 0
    assert "calibration: 128 tokens from ar (legal" in capsys.readouterr().err
    quant = read_artifact_meta(out)["quant"]
    assert quant["calibration"]["source"] == "ar" and quant["calibration"]["legality"].startswith("legal:")
    assert quant["methods"]["blocks.0.mlp.fc.weight"] == "gptq" and quant["methods"]["tok_emb.weight"] == "gptq"


def test_gptq_calibrates_on_the_first_training_batches_with_the_pr1291_policy(tiny_run: Path, tmp_path: Path) -> None:
    """`loader` calibration (rank 0's first batches of a fresh training loader) and policy `pr1291`: in this 2 × 128
    model only tok_emb exceeds the fp16 rule's 65,536 elements, and as int8 it never takes GPTQ (`gptq = false`)."""
    out = tmp_path / "loader.pgolf"
    assert pack(tiny_run, out, "--policy", "pr1291", "--gptq", "--set", "quant.calibration=loader",
                "--set", "quant.calibration_seqs=4") == 0
    quant = read_artifact_meta(out)["quant"]
    assert quant["calibration"]["source"] == "loader" and "training time budget" in quant["calibration"]["legality"]
    model, _ = read_artifact(out)
    assert quant["methods"]["tok_emb.weight"] == "rtn" and model["tok_emb.weight"].bits == 8
    assert model["blocks.0.attn.c_q.weight"].bits is None  # 128 × 128 ≤ 65,536: fp16


def test_fit_lands_within_the_budget_with_mixed_widths_and_lqer(tiny_run: Path, tmp_path: Path) -> None:
    state, _ = load_packed_state(tiny_run / WEIGHTS_NAME)
    sizes = {}
    for bits in (8, 4):
        cfg = run_config(tiny_run, "quant.scheme=policy", "quant.policy=int6")
        sizes[bits] = len(pack_weights(state, cfg, {}, torch.device("cpu"), list, uniform_bits=bits).blob)
    code = json.loads((tiny_run / "summary.json").read_text())["code_bytes"]  # close to this process's code
    budget = code + (sizes[8] + sizes[4]) // 2
    out = tmp_path / "fit.pgolf"
    assert pack(tiny_run, out, "--fit", "--policy", "int6", "--set", f"quant.budget_bytes={budget + 40_000}",
                "--set", "quant.budget_margin=40000", "--set", "quant.fit_bits=4,6,8", "--set",
                "quant.calibration=train", "--set", "quant.calibration_seqs=4",
                "--set", "quant.calibration_seq_len=64", "--set", "quant.lqer_rank=2",
                "--set", "quant.lqer_top_k=1") == 0
    quant = read_artifact_meta(out)["quant"]
    assert quant["calibration"]["source"] == "train"
    assert "inside the training time budget" in quant["calibration"]["legality"]
    widths = set(quant["fit_bits"].values())
    assert len(widths) > 1 and widths <= {4, 6, 8}
    assert out.stat().st_size <= quant["fit_available_bytes"]
    model, _ = read_artifact(out)
    assert {model[n].bits for n in quant["fit_bits"]} == widths
    assert len(quant["lqer"]) == 2 and all(name in model for name in quant["lqer"])  # one matrix's A and B


def test_over_budget_is_refused_with_the_excess_and_nothing_written(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "big.pgolf"
    assert pack(tiny_run, out, "--policy", "int6", "--set", "quant.budget_bytes=100000") == 2
    err = capsys.readouterr().err
    assert "bytes over the 100,000-byte cap" in err and not out.exists()
    assert pack(tiny_run, out, "--set", "quant.calibration=val") == 2
    assert "never be used for calibration" in capsys.readouterr().err


def test_inspect_projects_without_training(capsys) -> None:
    small = ["--set", "model.num_layers=2", "--set", "model.model_dim=128"]
    assert main(["inspect", "--preset", "tiny", *small, "--set", "quant.scheme=policy", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    cfg = load_config("tiny", overrides=["model.num_layers=2", "model.model_dim=128"], env={})
    assert info["params"] == count_parameters(build_model(cfg.model, torch.device("cpu")))
    assert info["flops_per_token"] == flops_per_token(cfg.model, cfg.train.train_seq_len)
    assert sum(info["params_per_module"].values()) == info["params"] and "blocks.1.mlp" in info["params_per_module"]
    assert 0 < info["model_bytes"] < info["raw_payload_bytes"]
    assert info["projected_total_bytes"] == info["model_bytes"] + info["code_bytes"]
    shipped = shipped_code(load_config("tiny", overrides=["model.num_layers=2", "model.model_dim=128",
                                                          "quant.scheme=policy"], env={}))
    assert info["code_bytes"] == shipped.bytes and shipped.form.startswith("minified+")  # as `pgolf train` counts
    assert main(["inspect", "--preset", "tiny", *small, "--set", "quant.scheme=fit"]) == 0
    assert "fit range:" in capsys.readouterr().out


def test_bench_quant_table(tiny_run: Path, tmp_path: Path) -> None:
    result = bench_quant(tiny_run, ["eval.val_max_tokens=4096", "quant.calibration_seqs=4",
                                    "quant.calibration_seq_len=32"], ["int8", "int6", "int6:gptq"], ["zlib", "auto"],
                         out=tmp_path / "bench.json")
    table = result["table"]
    assert [(r["policy"], r["codec"].split("→")[0]) for r in table] == [
        ("int8", "zlib"), ("int8", "auto"), ("int6", "zlib"), ("int6", "auto"),
        ("int6:gptq", "zlib"), ("int6:gptq", "auto")]
    assert result["targets"]["auto_never_worse_than_best_single_codec"] is True
    assert all(r["quant_gap_bpb"] == pytest.approx(r["val_bpb"] - result["pre_quant_val_bpb"]) for r in table)
    assert json.loads((tmp_path / "bench.json").read_text())["table"] == table


@pytest.mark.parametrize("reserve", [0.0, 2.0])
def test_train_calibration_is_timed_inside_the_training_budget(reserve: float, small_dataset, tmp_path: Path,
                                                               capsys) -> None:
    """Calibrating on training shards must run inside the wallclock budget: training stops `reserve` early."""
    from testkit import tiny_overrides

    sets = tiny_overrides(small_dataset, **{"run.out_dir": str(tmp_path), "run.run_id": "cal",
                                            "train.iterations": 10_000, "train.max_wallclock_seconds": 4.0,
                                            "quant.scheme": "policy", "quant.gptq": "true",
                                            "quant.calibration": "train", "quant.calibration_seqs": 4,
                                            "quant.calibration_reserve_seconds": reserve})
    assert main(["train", *(a for s in sets for a in ("--set", s))]) == 0
    summary = json.loads((tmp_path / "cal" / "summary.json").read_text())
    log = (tmp_path / "cal" / "train.log").read_text()
    pass_seconds = summary["quant"]["calibration"]["pass_seconds"]
    assert pass_seconds > 0
    assert summary["train_plus_calibration_s"] == pytest.approx(summary["wallclock_s"] + pass_seconds)
    log = log.split("=" * 100)[-1]  # the run's own lines, after the logged source
    verdict = log.split("calibration_budget:")[1].splitlines()[0]
    if reserve:
        assert "calibration_reserve: training stops at 2.0s" in log
        assert summary["wallclock_s"] < 4.0  # stopped at the reduced cap, before the full one
        # the verdict follows the measured times (a loaded machine may push the pass over the reserve)
        inside = summary["train_plus_calibration_s"] <= 4.0
        assert summary["calibration_inside_budget"] == inside
        assert ("of 4.0s: inside the training budget" if inside else "of 4.0s: OVER the training budget") in verdict
    else:  # training used the whole budget, so the pass after it is over: said, not hidden
        assert "calibration_warning: quant.calibration=train reads training shards" in log
        assert "of 4.0s: OVER the training budget" in verdict and not summary["calibration_inside_budget"]
    assert load_config(None, env={}, overrides=["train.max_wallclock_seconds=3"]).quant.calibration_reserve_seconds == 0
    with pytest.raises(Exception, match=r"quant\.calibration_reserve_seconds"):
        load_config(None, env={}, overrides=["train.max_wallclock_seconds=3", "quant.calibration_reserve_seconds=3"])
