"""The shape of the source tree: stages import only stages to their left, and functions stay short.

The stage order is the one ARCHITECTURE.md documents. A module belongs to the stage of its
package (`pgolf.quant.plan` → quant) or, at the top level, to its own name (`pgolf.packing`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "pgolf"

STAGES = ("config", "data", "model", "interop", "quant", "artifact", "optim", "evaluate", "train", "export", "packing",
          "pipeline", "targets", "experiments", "inspect_model", "doctor", "bench", "cli")
# Modules every stage may import: they import nothing from the stages (train.distributed is the
# process-group layer; rundir holds the run folder's paths and the typed hand-offs).
FOUNDATION = {"pgolf", "pgolf.errors", "pgolf.utils", "pgolf.lazy", "pgolf.rundir", "pgolf.train.distributed"}
STAGE_OF_MODULE = {"pgolf.precision": "config", "pgolf.shake": "export", "pgolf.__main__": "cli"}
# (importer prefix, imported module): why this right-pointing import is allowed.
EXCEPTIONS = {
    ("pgolf.config", "pgolf.quant.policy"): "validation parses quant.policy so its errors come before any work",
}
COLLECTIVE_MODULES = {"pgolf.train.distributed", "pgolf.optim.parallel_muon"}
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield _module_name(path), path


def stage_of(module: str) -> str | None:
    if module in FOUNDATION:
        return None
    if module in STAGE_OF_MODULE:
        return STAGE_OF_MODULE[module]
    return module.split(".")[1]


def imports_of(path: Path, module: str) -> Iterator[str]:
    """Every pgolf module `path` imports, at any depth (lazy imports count too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "pgolf")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "pgolf":
                continue
            for alias in node.names:  # `from pgolf.data import resolve` imports the module pgolf.data.resolve
                candidate = f"{base}.{alias.name}"
                yield candidate if _is_module(candidate) else base


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (SRC / relative).with_suffix(".py").is_file() or (SRC / relative / "__init__.py").is_file()


def _excepted(importer: str, imported: str) -> bool:
    return any(importer.startswith(prefix) and imported == target for prefix, target in EXCEPTIONS)


def test_every_module_has_a_stage() -> None:
    unknown = {m for m, _ in _modules() if stage_of(m) is not None and stage_of(m) not in STAGES}
    assert not unknown, f"modules outside the stage order: {sorted(unknown)}; add them to STAGES/ARCHITECTURE.md"


def test_no_stage_imports_a_stage_to_its_right() -> None:
    violations = []
    for module, path in _modules():
        own = stage_of(module)
        for imported in imports_of(path, module):
            target = stage_of(imported)
            if own is None and target is not None:
                violations.append(f"{module} (foundation) imports {imported}")
            elif own is not None and target is not None and STAGES.index(target) > STAGES.index(own) \
                    and not _excepted(module, imported):
                violations.append(f"{module} ({own}) imports {imported} ({target})")
    assert not violations, "imports against the stage order:\n" + "\n".join(violations)


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def _uses_torch_distributed(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.startswith("torch.distributed") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module is not None and (
                node.module.startswith("torch.distributed")
                or (node.module == "torch" and any(a.name == "distributed" for a in node.names))):
            return True
    return False


def test_collectives_live_in_the_process_group_layer_and_parallel_muon_only() -> None:
    users = {module for module, path in _modules() if _uses_torch_distributed(path)}
    assert users == COLLECTIVE_MODULES


def test_the_checks_see_real_imports() -> None:
    """The walker finds a known edge, so an empty violation list means something."""
    path = PACKAGE / "pipeline.py"
    assert "pgolf.train.setup" in set(imports_of(path, "pgolf.pipeline"))
    assert stage_of("pgolf.quant.plan") == "quant" and stage_of("pgolf.rundir") is None
