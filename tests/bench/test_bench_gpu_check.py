"""benchmarks/gpu/check.sh --dry: doctor, then the pgolf half of the check on CPU, JSON written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pgolf.bench.gpu_check import STEP_LINE, main, run_record, write_synthetic_shards
from pgolf.data.shards import open_shard

ROOT = Path(__file__).resolve().parents[2]


def test_check_sh_dry_writes_the_report(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu/check.sh"), "--dry", "--presets", "baseline",
                           "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pgolf will use:" in proc.stdout  # the doctor ran first
    report = json.loads((tmp_path / "gpu_check_cpu-dry.json").read_text())
    run = report["presets"]["baseline"]["pgolf"]
    assert report["dry"] and run["steps"] == 3 and run["tokens_per_s"] > 0 and run["eval_tokens_per_s"] > 0
    assert run["recompiles_after_warmup"] == 0 and run["mfu"] > 0
    assert report["presets"]["baseline"]["record"] == {"status": "skipped", "reason": "--dry"}


def test_synthetic_shards_are_in_the_official_format(tmp_path: Path) -> None:
    folder = write_synthetic_shards(tmp_path, vocab=1024, train_tokens=6000, val_tokens=3000)
    train = np.asarray(open_shard(folder / "fineweb_train_000000.bin"))
    assert train.size == 6000 and train.max() < 1024 and train[0] == 1 and (train == 1).sum() > 2


def test_record_lines_are_parsed_and_a_missing_script_is_skipped(tmp_path: Path) -> None:
    line = "step:200/200 train_loss:3.1 train_time:71234ms step_avg:356.17ms"
    match = STEP_LINE.search(line)
    assert match is not None and match.groups() == ("200", "200", "71234", "356.17")
    result = run_record(tmp_path / "nope.py", tmp_path, 1024, 5, 512, tmp_path / "w", 5.0)
    assert result["status"] == "skipped" and "RECORDS_DIR" in result["reason"]


def test_unknown_preset_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--dry", "--presets", "nano"])
    assert exc.value.code == 2 and "unknown preset 'nano'" in capsys.readouterr().err
