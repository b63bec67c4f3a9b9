"""`pgolf bench code-floor`: the least a preset's shipped code could weigh if pgolf were specialized to its
config, measured from what a run of it executes.

The shipped script keeps every definition its config can reach by name (`pgolf.shake`); inside them, every
branch stays, whichever the config takes. Any finer specialization (partial evaluation on the config, a
call-graph shaker) still has to keep what a run executes. So a short run of the preset's CPU counterpart is
traced line by line (coverage.py), and the preset's script is measured, in its counted form, three ways:

* `shipped`: as it ships;
* `functions`: without the functions and methods the run never entered;
* `statements`: also without every statement inside a function that the run never executed (branches not
  taken, error paths, checks that did not fire).

`statements` is a lower bound for the CPU run, and so for the record's: a GPU run executes more (kernels,
compilation, several ranks), never less of the same program. The pruned scripts are measured, not run.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import brotli

import pgolf
from pgolf.bench.bytes import RECORD_OF_PRESET, record_code_bytes
from pgolf.config import Config, load_config
from pgolf.config.embedded import embedded_config
from pgolf.config.presets import preset_names
from pgolf.errors import UserError
from pgolf.export import (
    changed_fields,
    compacted,
    render_script,
    shaken_trees,
    shipped_bytes,
    shipped_config,
)
from pgolf.pipeline import run_train
from pgolf.train import provenance
from pgolf.utils import atomic_write_json

LEVELS = ("shipped", "functions", "statements")
# Statements without code of their own: a line tracer never reports them, and they only shape the program.
_NO_CODE = (ast.Pass, ast.Global, ast.Nonlocal)
_BLOCKS = ("body", "orelse", "finalbody")
TRACE_VAL_TOKENS = 16384  # the traced run scores a val prefix: every eval stage runs, in seconds, not minutes

Lines = Mapping[Path, frozenset[int]]


def traced_lines(cfg: Config, seconds: float) -> Lines:
    """The lines of pgolf's source files that a run of `cfg` executes, trained for `seconds` and scored on a
    val prefix. The run starts as the exported script starts it: from the table the script would embed."""
    try:
        import coverage
    except ImportError:
        raise UserError("the code floor traces a run with coverage.py, which is not installed: "
                        "pip install coverage (make setup installs it with pgolf's dev extras)") from None
    package = Path(pgolf.__file__).parent
    with tempfile.TemporaryDirectory(prefix="pgolf-code-floor-") as tmp:
        shipped = shipped_config(cfg)
        shipped = dataclasses.replace(
            shipped, run=dataclasses.replace(shipped.run, out_dir=tmp),
            train=dataclasses.replace(shipped.train, max_wallclock_seconds=seconds),
            eval=dataclasses.replace(shipped.eval, val_max_tokens=TRACE_VAL_TOKENS))
        tracer = coverage.Coverage(data_file=None, source=[str(package)], config_file=False)
        tracer.start()
        try:
            run_train(embedded_config(changed_fields(shipped), {}))
        finally:
            tracer.stop()
    data = tracer.get_data()
    return {Path(name).resolve(): frozenset(data.lines(name) or ()) for name in data.measured_files()}


def _ran(stmt: ast.stmt, lines: frozenset[int]) -> bool:
    """Whether `stmt` or any statement inside it executed (a `try:` line has no code of its own in 3.11)."""
    return any(isinstance(sub, ast.stmt) and getattr(sub, "lineno", None) in lines for sub in ast.walk(stmt))


class _Pruner(ast.NodeTransformer):
    """Removes the functions the run never entered and, with `statements`, the statements inside a function
    that never executed."""

    def __init__(self, lines: frozenset[int], statements: bool) -> None:
        self.lines, self.statements = lines, statements
        self.depth = 0  # > 0 inside a function body

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST | None:
        if not any(_ran(stmt, self.lines) for stmt in node.body):
            return None
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in _BLOCKS:
            block = getattr(node, field, None)
            if not isinstance(block, list) or not all(isinstance(stmt, ast.stmt) for stmt in block):
                continue
            if self.statements and self.depth > 0 and not isinstance(node, ast.ClassDef):
                block = [stmt for stmt in block if isinstance(stmt, _NO_CODE) or _ran(stmt, self.lines)]
            if field == "body" and not block:
                block = [ast.Pass()]
            setattr(node, field, block)
        return node


def pruned(trees: Mapping[str, ast.Module], paths: Mapping[str, Path], lines: Lines,
           level: str) -> dict[str, ast.Module]:
    """`trees` (module → shaken tree) at `level` (one of LEVELS), given the executed `lines` of each file."""
    if level == "shipped":
        return dict(trees)
    return {name: _Pruner(lines.get(paths[name].resolve(), frozenset()), level == "statements")
            .visit(copy.deepcopy(tree)) for name, tree in trees.items()}


def measure(cfg: Config, lines: Lines, levels: Iterable[str] = LEVELS) -> dict[str, dict[str, Any]]:
    """`cfg`'s shipped script at each of `levels`: its counted bytes (`quant.code_form`), its source bytes, and
    the 8 largest modules (compacted source bytes; brotli-11 of each alone)."""
    return {level: _measure_level(cfg, lines, level) for level in levels}


def _measure_level(cfg: Config, lines: Lines, level: str) -> dict[str, Any]:
    embedded: dict[str, str] = {}

    def sources(closure: dict[str, Path]) -> dict[str, str]:
        texts = tuple((name, path.read_text(encoding="utf-8")) for name, path in closure.items())
        embedded.update(compacted(pruned(shaken_trees(texts), closure, lines, level)))
        return embedded

    script, _ = render_script(cfg, f"pgolf run of preset {cfg.run.preset or 'custom'}", provenance.code_hash(),
                              minified=True, sources=sources)
    data, form = shipped_bytes(script, cfg.quant.code_form)
    largest = sorted(embedded.items(), key=lambda item: -len(item[1]))[:8]
    return {"bytes": len(data), "form": form, "source_bytes": len(script.encode("utf-8")), "modules": len(embedded),
            "largest_modules": {name: {"bytes": len(text), "brotli": len(brotli.compress(text.encode(), quality=11))}
                                for name, text in largest}}


def _trace_preset(preset: str) -> str:
    return f"{preset}_cpu" if f"{preset}_cpu" in preset_names() else preset


def bench_code_floor(preset: str, records: Path | None, trace: str | None = None, seconds: float = 25.0,
                     out: Path | None = None) -> dict[str, Any]:
    """Trace `trace` (default: the preset's `_cpu` counterpart) and measure `preset`'s script at every level,
    against the record's counted code bytes where `records` holds the preset's record."""
    traced = trace or _trace_preset(preset)
    cfg = load_config(preset, env={})
    start = time.perf_counter()
    lines = traced_lines(load_config(traced, env={}), seconds)
    traced_seconds = time.perf_counter() - start
    levels = measure(cfg, lines)
    record = RECORD_OF_PRESET.get(preset)
    own = record_code_bytes(records / record) if records is not None and record is not None else None
    result = {
        "preset": preset, "traced": traced, "train_seconds": seconds, "trace_seconds": round(traced_seconds, 1),
        "record": record, "record_code_bytes": own[0] if own else None,
        "record_code_source": own[1] if own else None, "levels": levels,
        "floor_within_record": own[0] >= levels["statements"]["bytes"] if own else None,
    }
    if out is not None:
        atomic_write_json(out, result)
    return result


def report(result: dict[str, Any]) -> str:
    own = result["record_code_bytes"]
    lines = [f"{result['preset']}: code bytes by what a run of {result['traced']} executed "
             f"(record {result['record']}: {own:,})" if own else f"{result['preset']}: code bytes by what a run of "
             f"{result['traced']} executed"]
    for level, row in result["levels"].items():
        largest = ", ".join(f"{name} {m['brotli']:,}" for name, m in list(row["largest_modules"].items())[:4])
        lines.append(f"  {level:<10} {row['bytes']:>8,} B  ({row['form']}, {row['modules']} modules; "
                     f"largest, brotli alone: {largest})")
    if own:
        floor = result["levels"]["statements"]["bytes"]
        lines.append(f"  executed code alone {'fits within' if floor <= own else 'is over'} the record's "
                     f"{own:,} by {abs(own - floor):,} B")
    return "\n".join(lines)
