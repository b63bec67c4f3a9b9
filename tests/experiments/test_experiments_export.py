"""The single-file train_gpt.py runs where pgolf cannot be imported and reproduces the run exactly;
its own size is the code bytes it reports."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from pgolf.experiments.export import minify, module_closure, write_export
from pgolf.pipeline import load_run_config

# Only the venv's site-packages, without processing its .pth files: the editable pgolf is invisible.
_BARE = ("import sys; sys.path[:0] = {paths!r}; import runpy; "
         "runpy.run_path('train_gpt.py', run_name='__main__')")


def _bare_python(folder: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEED", "RUN_ID")} | env
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=folder, env=clean, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize(("minified", "compressed"), [(False, False), (True, True)])
def test_export_runs_alone_and_reproduces_the_run(finished_ablation, tmp_path: Path, minified: bool,
                                                  compressed: bool) -> None:
    run = finished_ablation.run_dir("baseline-s2")
    original = json.loads((run / "summary.json").read_text())
    script = tmp_path / "train_gpt.py"
    info = write_export(script, load_run_config(run), "test", "baseline-s2",
                        original["manifest"]["code_sha256"], minified, compressed)
    assert info.bytes == script.stat().st_size
    paths = site.getsitepackages()
    probe = _bare_python(tmp_path, f"import sys; sys.path[:0] = {paths!r}\ntry:\n import pgolf\nexcept ImportError:\n"
                                   " print('absent')")
    assert probe.stdout.strip() == "absent", probe.stderr

    result = _bare_python(tmp_path, _BARE.format(paths=paths), RUN_ID="exported")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rerun = json.loads((tmp_path / "runs" / "exported" / "summary.json").read_text())
    assert rerun["weights_sha256"] == original["weights_sha256"]
    assert (rerun["val_bpb"], rerun["val_loss"], rerun["model_bytes"]) == (
        original["val_bpb"], original["val_loss"], original["model_bytes"])
    assert rerun["code_bytes"] == script.stat().st_size == info.bytes  # the shipped bytes are the counted bytes
    assert rerun["code_files"] == ["train_gpt.py"] or rerun["code_files"][0].endswith("train_gpt.py")


def test_module_closure_is_what_training_imports() -> None:
    modules = module_closure()
    assert {"pgolf.pipeline", "pgolf.config", "pgolf.train.trainer", "pgolf.model.gpt"} <= set(modules)
    assert not {"pgolf.cli", "pgolf.experiments.ablate", "pgolf.bench.train"} & set(modules)


def test_minify_keeps_behaviour_and_drops_docstrings() -> None:
    source = 'def f(x):\n    """Doc."""\n    # comment\n    return x + 1\n\nclass A:\n    """Only a docstring."""\n'
    small = minify(source)
    assert "Doc." not in small and "comment" not in small and len(small) < len(source)
    scope: dict = {}
    exec(small, scope)
    assert scope["f"](2) == 3 and isinstance(scope["A"](), scope["A"])
