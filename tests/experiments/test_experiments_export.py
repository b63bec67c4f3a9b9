"""The single-file train_gpt.py runs where pgolf cannot be imported and reproduces the run exactly;
its own size is the code bytes it reports."""

from __future__ import annotations

import hashlib
import json
import os
import site
import subprocess
import sys
from pathlib import Path

from pgolf.export import embedded_sources, minify, module_closure, shipped_config, write_export
from pgolf.pipeline import load_run_config
from pgolf.train import provenance

# Only the venv's site-packages, without processing its .pth files: the editable pgolf is invisible.
_RUN = ("import sys; sys.path[:0] = {paths!r}; import runpy; "
        "runpy.run_path('train_gpt.py', run_name={run_name!r})")


def _bare_python(folder: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEED", "RUN_ID")} | env
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=folder, env=clean, capture_output=True, text=True,
                          timeout=600, check=False)


def test_export_runs_alone_and_reproduces_the_run(finished_ablation, tmp_path: Path) -> None:
    run = finished_ablation.run_dir("baseline-s2")
    original = json.loads((run / "summary.json").read_text())
    script = tmp_path / "train_gpt.py"
    info = write_export(script, load_run_config(run), "test", "baseline-s2", original["manifest"]["code_sha256"],
                        form="plain")
    assert info.bytes == script.stat().st_size and info.form == "plain"
    paths = site.getsitepackages()
    probe = _bare_python(tmp_path, f"import sys; sys.path[:0] = {paths!r}\ntry:\n import pgolf\nexcept ImportError:\n"
                                   " print('absent')")
    assert probe.stdout.strip() == "absent", probe.stderr

    result = _bare_python(tmp_path, _RUN.format(paths=paths, run_name="__main__"), RUN_ID="exported")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rerun = json.loads((tmp_path / "runs" / "exported" / "summary.json").read_text())
    assert rerun["weights_sha256"] == original["weights_sha256"]
    assert (rerun["val_bpb"], rerun["val_loss"], rerun["steps"]) == (original["val_bpb"], original["val_loss"],
                                                                     original["steps"])
    assert rerun["code_bytes"] == script.stat().st_size == info.bytes  # the shipped bytes are the counted bytes
    assert Path(rerun["code_files"][0]).name == "train_gpt.py" and len(rerun["code_files"]) == 1


def test_compressed_form_unpacks_to_the_minified_modules_and_config(finished_ablation, tmp_path: Path) -> None:
    run = finished_ablation.run_dir("baseline-s2")
    cfg = load_run_config(run)
    script = tmp_path / "train_gpt.py"
    info = write_export(script, cfg, "test", "baseline-s2", provenance.code_hash())
    assert info.form.startswith("minified+") and info.bytes == script.stat().st_size < info.source_bytes / 2
    # Run the wrapper as a module (not __main__): it unpacks itself; its import hook then serves pgolf.config.
    run = _RUN.format(paths=site.getsitepackages(), run_name="export_check")
    check = (run.replace("runpy.run_path", "g = runpy.run_path")
             + "; import hashlib, json; sys.meta_path.insert(0, g['_EmbeddedModules']()); "
             "import pgolf.config.embedded as c; print(json.dumps({'modules': "
             "{k: hashlib.sha256(v[1].encode()).hexdigest() for k, v in g['MODULES'].items()}, "
             "'config': c.embedded_config(g['CONFIG'], {}).to_dict(), 'file': c.__file__}))")
    result = _bare_python(tmp_path, check)
    assert result.returncode == 0, result.stderr[-2000:]
    unpacked = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {name: hashlib.sha256(source.encode()).hexdigest()
                for name, source in embedded_sources(module_closure(shipped_config(cfg))).items()}
    assert unpacked["modules"] == expected
    assert unpacked["config"]["model"] == cfg.to_dict()["model"] and unpacked["config"]["run"]["run_id"] == ""
    assert unpacked["file"].startswith(str(script))  # served from inside the shipped file


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

