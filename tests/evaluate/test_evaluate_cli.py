"""`pgolf eval` stages, `--dump-losses` for every stage, `pgolf verify`, `pgolf bench eval`, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pgolf.cli import VERIFY_FAILED, main
from pgolf.config import load_config
from pgolf.errors import ConfigError
from pgolf.packing import pack_state_dict
from testkit import SHIPPED_SP8192, mixing_model, tiny_overrides


@pytest.fixture(scope="module")
def artifact(small_dataset, tmp_path_factory) -> Path:
    cfg = load_config(None, overrides=tiny_overrides(small_dataset, **{"eval.val_max_tokens": 512}), env={})
    path = tmp_path_factory.mktemp("eval_cli") / "artifact.pgolf"
    pack_state_dict(mixing_model(cfg).state_dict(), cfg, path, {})
    return path


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_reports_every_stage_and_dumps_its_losses(artifact, tmp_path, capsys) -> None:
    dump = tmp_path / "losses.npy"
    result = _json(capsys, ["eval", str(artifact), "--stride", "16", "--ttt", "full", "--slot", "published",
                            "--set", "eval.ttt_chunk_tokens=128", "--dump-losses", str(dump)])
    stages = result["stages"]
    assert [s["stage"] for s in stages] == ["plain", "sliding", "sliding+ttt-full", "sliding+ttt-full+slot-published"]
    assert result["stage"] == stages[-1]["stage"] and result["val_bpb"] == stages[-1]["val_bpb"]
    assert [s["legality"]["compliant"] for s in stages] == [True, True, True, False]
    assert result["legality"]["label"] == "NON-COMPLIANT" and "1176" in result["legality"]["reason"]
    for stage in stages:
        assert stage["complete"] and stage["val_tokens"] == 512 and stage["tokens_per_s"] > 0
        assert stage["projection"]["val_tokens"] == 62_021_632 and stage["projection"]["seconds"] > 0
        file = dump if stage is stages[-1] else tmp_path / f"losses.{stage['stage']}.npy"
        losses = np.load(file, allow_pickle=False)
        assert losses.dtype == np.float64 and losses.shape == (512,)
        assert losses.sum() == pytest.approx(stage["loss_sum_nats"], rel=1e-9)

    capsys.readouterr()
    assert main(["eval", str(artifact), "--slot", "published"]) == 0
    printed = capsys.readouterr().out
    assert "stage:sliding+slot-published" in printed and "NON-COMPLIANT (pgolf-eval-legality/1)" in printed


def test_max_eval_seconds_stops_cleanly_and_reports_the_scored_part(artifact, capsys) -> None:
    result = _json(capsys, ["eval", str(artifact), "--stride", "4", "--set", "eval.batch_seqs=1",
                            "--max-eval-seconds", "1e-9"])
    sliding = result["stages"][1]
    assert not sliding["complete"] and 0 < sliding["val_tokens"] < sliding["targets"] == 512
    assert sliding["val_bpb"] > 0


def test_verify_passes_compliant_modes_and_fails_published_slot(artifact, capsys) -> None:
    report = _json(capsys, ["verify", str(artifact), "--mode", "plain", "slot-context", "--tokens", "256",
                            "--positions", "1"])
    assert report["passed"] and [m["mode"] for m in report["modes"]] == ["plain", "slot-context"]
    assert main(["verify", str(artifact), "--mode", "slot-published", "--tokens", "256", "--positions", "1"]) \
        == VERIFY_FAILED
    assert "NON-COMPLIANT" in capsys.readouterr().out


def test_bench_eval_times_every_mode(artifact, tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    result = _json(capsys, ["bench", "eval", str(artifact), "--tokens", "256", "--stride", "16", "--out", str(out)])
    assert [s["stage"] for s in result["stages"]] == ["plain", "sliding", "sliding+ttt-full", "ttt-lora",
                                                      "sliding+slot-context"]
    assert all(s["tokens_per_s"] > 0 and s["compliant"] and s["val_tokens"] == 256 for s in result["stages"])
    assert result["ttt_chunk_tokens"] == 32 and json.loads(out.read_text())["stages"] == result["stages"]


@pytest.mark.parametrize(("argv", "key"), [
    (["--stride", "100"], "eval.stride"),
    (["--set", "eval.ttt_chunk_tokens=0"], "eval.ttt_chunk_tokens"),
    (["--set", "eval.ttt_lr=0"], "eval.ttt_lr"),
    (["--set", "eval.ttt_lr=-1"], "eval.ttt_lr"),
    (["--tokenizer", str(SHIPPED_SP8192)], "model.vocab_size"),
])
def test_bad_eval_input_names_the_key(artifact, capsys, argv: list[str], key: str) -> None:
    capsys.readouterr()
    assert main(["eval", str(artifact), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0]


@pytest.mark.parametrize(("override", "key"), [
    ("eval.stride=300", "eval.stride"), ("eval.context=-1", "eval.context"), ("eval.ttt=sgd", "eval.ttt"),
    ("eval.slot=always", "eval.slot"), ("eval.ttt_lora_chunk=512", "eval.ttt_lora_chunk"),
    ("eval.ttt_lora_targets=q,gate", "eval.ttt_lora_targets"), ("eval.ttt_freeze_blocks=10", "eval.ttt_freeze_blocks"),
    ("eval.slot_lr=0", "eval.slot_lr"), ("eval.ttt_epochs=0", "eval.ttt_epochs"),
])
def test_eval_config_errors_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("tiny", overrides=[override], env={})
    assert load_config("tiny", overrides=["eval.stride=256", "eval.ttt=phased"], env={}).eval.stride == 256


def test_slot_composes_only_with_full_ttt() -> None:
    with pytest.raises(ConfigError, match=r"eval\.slot"):
        load_config("tiny", overrides=["eval.slot=context", "eval.ttt=lora"], env={})
    assert load_config("tiny", overrides=["eval.slot=context", "eval.ttt=full"], env={}).eval.slot == "context"
