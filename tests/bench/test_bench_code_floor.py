"""`pgolf bench code-floor`: the pruning by executed lines, and its measurement through the export path."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import coverage
import pytest

from pgolf.bench.code_floor import measure, pruned, traced_lines
from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.export import module_closure, shipped_code, shipped_config

SOURCE = '''\
def used(x):
    if x > 0:
        y = x * 2
    else:
        raise ValueError("negative")
    try:
        z = y + 1
    except KeyError:
        z = 0
    return z


def unused(x):
    return x - 1


class Box:
    def run(self):
        return used(3)

    def never(self):
        return 0
'''


def _traced_module(tmp_path: Path) -> tuple[Path, frozenset[int]]:
    """SOURCE as a module file, imported and run (`Box().run()`) under coverage.py: its executed lines."""
    path = tmp_path / "floor_example.py"
    path.write_text(SOURCE, encoding="utf-8")
    tracer = coverage.Coverage(data_file=None, include=[str(path)], config_file=False)
    tracer.start()
    try:
        spec = importlib.util.spec_from_file_location("floor_example", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.Box().run() == 7
    finally:
        tracer.stop()
        sys.modules.pop("floor_example", None)
    return path, frozenset(tracer.get_data().lines(str(path.resolve())) or ())


def _run_pruned(tree: ast.Module) -> object:
    namespace: dict[str, object] = {}
    exec(compile(ast.fix_missing_locations(tree), "<pruned>", "exec"), namespace)
    return namespace["Box"]().run()  # type: ignore[operator]


def _names(tree: ast.Module) -> set[str]:
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_pruning_keeps_what_ran_and_the_pruned_program_still_runs_that_path(tmp_path: Path) -> None:
    path, lines = _traced_module(tmp_path)
    trees, paths, executed = {"m": ast.parse(SOURCE)}, {"m": path}, {path.resolve(): lines}

    assert pruned(trees, paths, executed, "shipped")["m"] is trees["m"]
    functions = pruned(trees, paths, executed, "functions")["m"]
    assert _names(functions) == {"used", "Box", "run"}  # `unused` and `Box.never` were never entered
    assert "ValueError" in ast.unparse(functions)  # branches stay at this level
    statements = pruned(trees, paths, executed, "statements")["m"]
    text = ast.unparse(statements)
    assert "ValueError" not in text and "z = 0" not in text  # the branch and the handler never ran
    assert "try:" in text  # `try:` has no line of its own in the trace; its body ran, so it stays
    assert _run_pruned(functions) == _run_pruned(statements) == 7
    assert ast.unparse(trees["m"]) == ast.unparse(ast.parse(SOURCE))  # the input trees are not changed


def test_fully_executed_code_measures_as_shipped_and_unexecuted_code_less() -> None:
    cfg = load_config("tiny", env={})
    closure = module_closure(shipped_config(cfg))
    every_line = {path.resolve(): frozenset(range(1, len(path.read_text(encoding="utf-8").splitlines()) + 1))
                  for path in closure.values()}
    full = measure(cfg, every_line, ("shipped", "statements"))
    assert full["shipped"]["bytes"] == full["statements"]["bytes"] == shipped_code(cfg).bytes
    nothing = measure(cfg, {}, ("functions",))["functions"]
    assert nothing["bytes"] < full["shipped"]["bytes"] * 0.7
    assert nothing["modules"] == full["shipped"]["modules"]


def test_tracing_without_coverage_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "coverage", None)  # import coverage → ImportError
    with pytest.raises(UserError, match="pip install coverage"):
        traced_lines(load_config("tiny", env={}), 1.0)
