"""The config package and the CLI stay small: no function over 60 lines; the package reads no env elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pgolf

ROOT = Path(pgolf.__file__).parent
FILES = [*sorted((ROOT / "config").glob("*.py")), ROOT / "cli.py"]


def test_no_function_over_60_lines() -> None:
    long = []
    for file in FILES:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if is_function and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{file.name}:{node.lineno} {node.name}")
    assert long == []


def test_only_the_loader_reads_the_environment_for_config() -> None:
    readers = [f.name for f in FILES[:-1] if "os.environ" in f.read_text(encoding="utf-8")]
    assert readers == ["loader.py"]
