"""Single-file `train_gpt.py`: the pgolf modules a training run needs, embedded as source, plus the
run's resolved config, runnable with pgolf not installed.

The script installs an import hook that serves the embedded modules, declares itself as the code
that ships (`pgolf.SHIPPED_CODE`), so the code bytes counted in the budget are exactly its own file
size, and calls the same `pgolf.pipeline.run_train` as `pgolf train`. Optional forms: `minify`
(docstrings and comments removed through the AST) and `compress` (the records' self-extracting
lzma + base85 wrapper; the wrapper's bytes are what is counted).
"""

from __future__ import annotations

import ast
import base64
import lzma
from dataclasses import dataclass
from pathlib import Path

import tomli_w

import pgolf
from pgolf.config import Config
from pgolf.data.resolve import EMBEDDED_PREFIX, resolve_dataset
from pgolf.utils import atomic_write_text, sha256_file

ENTRY_MODULE = "pgolf.pipeline"  # what `pgolf train` calls; everything it imports is embedded

_TEMPLATE = '''#!/usr/bin/env python3
"""{title}

Single-file export of pgolf {version} (package code sha256 {code_sha256}) with the resolved config
of run {run_id}. Needs torch, numpy, sentencepiece, zstandard, brotli and tomli-w; pgolf itself is
embedded below ({module_count} modules) and need not be installed.

    python train_gpt.py                                     # one process: CPU or one GPU
    torchrun --standalone --nproc_per_node=8 train_gpt.py   # 8 GPUs
    SEED=1337 RUN_ID=seed1337 DATA_PATH=... TOKENIZER_PATH=... python train_gpt.py

The official environment variables override CONFIG; results go to runs/<RUN_ID>/ (summary.json).
The code bytes counted in the artifact budget are the bytes of this file.
"""
import importlib.abc
import importlib.util
import linecache
import os
import sys

CONFIG = {config}

MODULES = {{
{modules}
}}


class _EmbeddedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the pgolf modules above, ahead of any installed pgolf."""

    def find_spec(self, name, path=None, target=None):
        if name not in MODULES:
            return None
        is_package = MODULES[name][0]
        origin = os.path.join(os.path.abspath(__file__), *name.split(".")) + ("/__init__.py" if is_package else ".py")
        return importlib.util.spec_from_loader(name, self, origin=origin, is_package=is_package)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source, filename = MODULES[module.__name__][1], module.__spec__.origin
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(source, filename, "exec"), module.__dict__)


def main():
    sys.meta_path.insert(0, _EmbeddedModules())
    import pgolf

    pgolf.SHIPPED_CODE = (os.path.abspath(__file__),)
    from pgolf.config import load_config, tomllib
    from pgolf.pipeline import run_train

    cfg = load_config(base=tomllib.loads(CONFIG), world_size=int(os.environ.get("WORLD_SIZE", "1")))
    run_train(cfg)


if __name__ == "__main__":
    main()
'''

_WRAPPER = ('import lzma,base64\n'
            'exec(compile(lzma.decompress(base64.b85decode(b"{payload}")),__file__,"exec"))\n')


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    bytes: int  # the shipped file's size: the code bytes of the budget
    sha256: str
    modules: tuple[str, ...]
    form: str  # plain | minified | lzma | minified+lzma
    source_bytes: int  # size of the script before the self-extracting wrapper


def _module_path(root: Path, name: str) -> Path | None:
    relative = Path(*name.split(".")[1:])
    for candidate in (root / relative / "__init__.py", (root / relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.AST) -> set[str]:
    """Absolute pgolf modules named by any import statement, at any depth (function-level ones too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "pgolf")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "pgolf":
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def module_closure(entry: str = ENTRY_MODULE) -> dict[str, Path]:
    """Every pgolf module `entry` can import, found statically, with its parent packages."""
    root = Path(pgolf.__file__).parent
    found: dict[str, Path] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            module = ".".join(parts[:i])
            path = _module_path(root, module) if module != "pgolf" else root / "__init__.py"
            if module in found or path is None:
                continue
            found[module] = path
            todo += sorted(_imported_names(ast.parse(path.read_text(encoding="utf-8"))))
    return dict(sorted(found.items()))


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: ast.AST) -> ast.AST:
        self.generic_visit(node)
        body = node.body  # type: ignore[attr-defined]
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _strip


def minify(source: str) -> str:
    """The same program without docstrings, comments and blank lines (through the AST)."""
    return ast.unparse(_StripDocstrings().visit(ast.parse(source))) + "\n"


def _literal(text: str) -> str:
    """A Python literal for `text`: a readable raw triple-quoted string where that is exact, else repr."""
    for quote in ("'''", '"""'):
        if quote not in text and not text.endswith("\\") and not text.endswith(quote[0]):
            return f"r{quote}{text}{quote}"
    return repr(text)


def export_config(cfg: Config, concrete_data: bool = True) -> str:
    """The config the script embeds: a fresh run id, runs/ beside the script, and (with `concrete_data`)
    real data paths in place of `embedded:` (the shipped corpus is package data, not code)."""
    table = cfg.to_dict()
    table["run"]["run_id"] = ""
    table["run"]["out_dir"] = "runs"
    if concrete_data and cfg.data.dataset.startswith(EMBEDDED_PREFIX):
        paths = resolve_dataset(cfg)
        table["data"]["dataset"], table["data"]["tokenizer"] = str(paths.dataset_dir), str(paths.tokenizer_path)
    return tomli_w.dumps(table)


def render_script(cfg: Config, title: str, run_id: str, code_sha256: str, minified: bool = False,
                  concrete_data: bool = True) -> tuple[str, tuple[str, ...]]:
    modules = module_closure()
    entries = []
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        if minified:
            source = minify(source)
        entries.append(f"    {name!r}: ({path.name == '__init__.py'}, {_literal(source)}),")
    script = _TEMPLATE.format(title=title, version=pgolf.__version__, code_sha256=code_sha256, run_id=run_id,
                              module_count=len(modules), config=_literal(export_config(cfg, concrete_data)),
                              modules="\n".join(entries))
    return script, tuple(modules)


def write_export(path: Path, cfg: Config, title: str, run_id: str, code_sha256: str, minified: bool = False,
                 compressed: bool = False, concrete_data: bool = True) -> ExportInfo:
    script, modules = render_script(cfg, title, run_id, code_sha256, minified, concrete_data)
    shipped = script
    if compressed:
        payload = base64.b85encode(lzma.compress(script.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)).decode("ascii")
        shipped = _WRAPPER.format(payload=payload)
    atomic_write_text(path, shipped)
    form = "+".join(f for f, on in (("minified", minified), ("lzma", compressed)) if on) or "plain"
    return ExportInfo(path, path.stat().st_size, sha256_file(path), modules, form, len(script.encode("utf-8")))
