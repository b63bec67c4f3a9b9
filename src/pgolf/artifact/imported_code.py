"""The conservative code count: every imported pgolf source file at its raw UTF-8 size.

Tooling: a run counts its code as it ships (`pgolf.packing.counted_code`: the single-file export, rendered,
or the running one's own file), so no export embeds this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pgolf.artifact.budget import BUDGET_BYTES, Budget, count_code_bytes
from pgolf.artifact.format import artifact_model_bytes
from pgolf.errors import ArtifactError


def code_files(package: str = "pgolf") -> list[Path]:
    """Sorted `.py` files inside `package`'s folder belonging to currently imported modules.

    A single-file export declares the file it ships in `SHIPPED_CODE`; then that file is the code.
    """
    root_module = sys.modules.get(package)
    if root_module is None or root_module.__file__ is None:
        raise ArtifactError(f"package {package!r} is not imported, so its code cannot be counted: import it first")
    shipped = getattr(root_module, "SHIPPED_CODE", ())
    if shipped:
        return sorted(Path(p).resolve() for p in shipped)
    root = Path(root_module.__file__).resolve().parent
    files: set[Path] = set()
    for name, module in list(sys.modules.items()):
        if name != package and not name.startswith(package + "."):
            continue
        source = getattr(module, "__file__", None)
        if source is None or not source.endswith(".py"):
            continue
        resolved = Path(source).resolve()
        if resolved.is_relative_to(root):
            files.add(resolved)
    return sorted(files)


def measure_budget(artifact: str | os.PathLike[str], package: str = "pgolf", limit: int = BUDGET_BYTES) -> Budget:
    """Budget of `artifact` plus the imported source of `package`."""
    files = tuple(code_files(package))
    return Budget(count_code_bytes(files), artifact_model_bytes(artifact), limit, files)
