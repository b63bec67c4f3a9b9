"""The conservative code count: the imported package's source files, plus the whole artifact."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

import pgolf
from pgolf.artifact.budget import count_code_bytes
from pgolf.artifact.format import write_artifact
from pgolf.artifact.imported_code import code_files, measure_budget
from pgolf.errors import ArtifactError
from pgolf.quant import quantize_state_dict_int8


def test_code_files_are_the_imported_package_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = Path(pgolf.__file__).resolve().parent
    outside = tmp_path / "pgolf_fake.py"
    outside.write_text("x = 1\n")
    monkeypatch.setitem(sys.modules, "pgolf.fake_outside", types.SimpleNamespace(__file__=str(outside)))
    monkeypatch.setitem(sys.modules, "pgolfish", types.SimpleNamespace(__file__=str(root / "utils.py")))
    monkeypatch.setitem(sys.modules, "pgolf.compiled", types.SimpleNamespace(__file__=str(root / "x.so")))
    files = code_files()
    assert files == sorted(files) and len(set(files)) == len(files)
    assert root / "__init__.py" in files and root / "artifact" / "budget.py" in files
    assert root / "quant" / "int8.py" in files
    assert outside not in files and all(f.suffix == ".py" and f.is_relative_to(root) for f in files)
    modules = [m for n, m in list(sys.modules.items()) if n == "pgolf" or n.startswith("pgolf.")]
    imported = {Path(f).resolve() for m in modules if (f := getattr(m, "__file__", None) or "").endswith(".py")}
    assert set(files) == {f for f in imported if f.is_relative_to(root)}


def test_code_files_needs_an_imported_package() -> None:
    with pytest.raises(ArtifactError, match="not imported"):
        code_files("surely_not_imported_pkg")


def test_measure_budget_counts_the_whole_artifact(tmp_path: Path) -> None:
    path = tmp_path / "m.pgolf"
    info = write_artifact(path, quantize_state_dict_int8({"w": torch.randn(300, 300)}), {"k": 1})
    budget = measure_budget(path)
    assert budget.model_bytes == info.total_bytes == path.stat().st_size
    assert budget.code_bytes == count_code_bytes(code_files()) > 0
    assert budget.code_files == tuple(code_files()) and budget.fits
