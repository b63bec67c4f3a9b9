"""The config package reads the environment in one place (function length: tests/test_import_graph.py)."""

from __future__ import annotations

from pathlib import Path

import pgolf

ROOT = Path(pgolf.__file__).parent
FILES = sorted((ROOT / "config").glob("*.py"))


def test_only_the_loader_reads_the_environment_for_config() -> None:
    readers = [f.name for f in FILES if "os.environ" in f.read_text(encoding="utf-8")]
    assert readers == ["loader.py"]
