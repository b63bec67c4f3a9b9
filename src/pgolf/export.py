"""Single-file `train_gpt.py`: the pgolf modules a training run of one config needs, embedded as
source, plus the run's resolved config, runnable with pgolf not installed.

The script installs an import hook that serves the embedded modules, declares itself as the code
that ships (`pgolf.SHIPPED_CODE`), so the code bytes counted in the budget are exactly its own file
size, and calls the same `pgolf.pipeline.run_train` as `pgolf train`.

Which modules: the static import closure of the script's `main` (`pgolf.config.embedded`, `pgolf.pipeline`),
minus the technique modules the config does not use (`CONFIG_MODULES`; the code imports each of them only
where the config reaches it, so the closure and the run agree: the export tests run every `_cpu` preset's
export without pgolf).

Forms (`CODE_FORMS`): `plain` (the modules as they are, every config field); `minified` (`shrink`:
docstrings, comments and function annotations removed through the AST, the definitions nothing reaches
shaken out (`pgolf.shake`), local names shortened by python-minifier; only the config fields that
differ from the defaults); `compressed` (minified, inside the smallest self-extracting wrapper: lzma,
brotli or zstd, its stream written as base85 as the records ship, or byte for byte in a latin-1 string
literal; the wrapper's bytes are what is counted). `pgolf train` counts the code the same way
(`shipped_code`), in the config's `quant.code_form`.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import pgolf
from pgolf.artifact.codecs import compress
from pgolf.config import Config
from pgolf.config.parsing import (
    LORA_TTT_MODES,
    averages_weights,
    uses_late_qat,
    uses_parallel_muon,
    writes_checkpoints,
)
from pgolf.data.families import BYTE260, may_be_caseops, spec_family
from pgolf.data.resolve import EMBEDDED_PREFIX, may_have_val_sidecar, resolve_dataset
from pgolf.errors import UserError
from pgolf.evaluate.stages import eval_stages
from pgolf.quant.policy import POLICY_FOLDER, shipped_policy_text
from pgolf.shake import WORD, callee, references, runtime_body, shake
from pgolf.train import provenance
from pgolf.utils import atomic_write_bytes, default_cache_dir, sha256_bytes

CODE_FORMS = ("plain", "minified", "compressed", "compressed_ascii")
WRAPPER_CODECS = ("lzma", "brotli", "zstd")  # self-extracting forms; the smallest is shipped
WRAPPER_ENCODINGS = ("base85", "latin1")  # how the compressed stream is written in the file
KEEP_ANNOTATIONS = frozenset({"jit", "autotune", "heuristics"})  # decorators that read the annotations
# Names through which code reads class annotations at run time (the config validator's `get_type_hints`): while
# none is embedded, a class-level annotation only has to be there (dataclasses), not to say anything.
ANNOTATION_READERS = frozenset({"get_type_hints", "get_annotations", "__annotations__"})
DATACLASS_MARKERS = ("ClassVar", "InitVar", "KW_ONLY")  # annotations that change what a dataclass does
SHRINK_CACHE = "export"  # folder of `shrink` results under the pgolf cache (`_stored_shrink`)
SHRINK_CACHE_ENTRIES = 64


def _never(cfg: Config) -> bool:
    return False


def _lora_ttt(cfg: Config) -> bool:
    return cfg.eval.ttt in LORA_TTT_MODES


# Modules a run imports only when its config uses them (the code imports each one where that use is).
# Everything else the script's `main` can import is shipped. Modules mapped to `_never` are tooling a training
# run does not execute (an exported run counts its own file; it never resumes, so never reads a checkpoint).
CONFIG_MODULES: dict[str, Callable[[Config], bool]] = {
    # the config: the script builds its config from the table it embeds (`pgolf.config.embedded`); the validator
    # runs only where proxy mode rescales a validated config
    "pgolf.config.validate": lambda c: c.train.proxy_world_size > 0,
    # the model's techniques and kernels (the Triton kernels whenever the config allows them: whether they run
    # depends on the machine)
    "pgolf.model.embeddings": lambda c: c.model.smear_gate != "off",
    "pgolf.model.bigram": lambda c: c.model.bigram_vocab > 0,
    "pgolf.model.values": lambda c: bool(c.model.value_embed_layers) or c.model.value_residual,
    "pgolf.model.xsa": lambda c: c.model.xsa_last_n != 0,
    "pgolf.model.gates": lambda c: c.model.attn_gate != "off",
    "pgolf.model.init": lambda c: c.model.ortho_init,
    "pgolf.model.documents": lambda c: c.model.doc_isolated_attention,
    "pgolf.model.lanes": lambda c: c.model.parallel_residual != "off",
    "pgolf.model.recurrence": lambda c: c.model.recur_loops > 0,
    "pgolf.model.kernels.softcap_ce": lambda c: c.model.fused_kernels != "off",
    "pgolf.model.kernels.leaky_relu2": lambda c: c.model.fused_kernels != "off",
    # data: tokenizer families beyond SentencePiece and the byte sidecar are shipped where the config's files
    # cannot be read here (an export made away from the data)
    "pgolf.data.build": lambda c: c.data.dataset.startswith(EMBEDDED_PREFIX),  # only to build the shipped corpus
    "pgolf.data.coprime": lambda c: c.data.loader == "coprime",
    "pgolf.data.byte260": lambda c: spec_family(c.data.tokenizer) in (BYTE260, None),
    "pgolf.data.tiktoken_bpe": lambda c: spec_family(c.data.tokenizer) in ("tiktoken", None),
    "pgolf.data.caseops": lambda c: may_be_caseops(c.data.tokenizer),
    "pgolf.data.sidecar": may_have_val_sidecar,
    # optimizers and the training loop
    "pgolf.optim.parallel_muon": uses_parallel_muon,
    "pgolf.optim.round_robin": lambda c: not uses_parallel_muon(c),
    "pgolf.train.bank_sync": uses_parallel_muon,
    "pgolf.optim.repeated_adam": lambda c: c.optim.route_adam_updates > 1,
    "pgolf.optim.averaging": averages_weights,
    "pgolf.train.averaged_weights": averages_weights,
    "pgolf.train.late_qat": uses_late_qat,
    "pgolf.quant.qat": lambda c: uses_late_qat(c) or c.eval.ttt_qat_params != "",
    "pgolf.train.checkpoint": writes_checkpoints,  # written only then; read only on resume
    # quantization, packing and the artifact's layout
    "pgolf.quant.int8": lambda c: c.quant.scheme == "int8",
    "pgolf.quant.gptq": lambda c: c.quant.gptq,
    "pgolf.quant.fit": lambda c: c.quant.scheme == "fit",
    "pgolf.quant.lqer": lambda c: c.quant.lqer_rank > 0,
    "pgolf.packing.planned": lambda c: c.quant.scheme != "int8",
    "pgolf.packing.fitted": lambda c: c.quant.scheme == "fit",
    "pgolf.quant.policy": lambda c: c.quant.scheme != "int8",
    "pgolf.quant.mixed": lambda c: c.quant.scheme != "int8",
    "pgolf.quant.calibration": lambda c: c.quant.gptq or c.quant.scheme == "fit",
    "pgolf.quant.self_generated": lambda c: (c.quant.gptq or c.quant.scheme == "fit") and c.quant.calibration == "ar",
    "pgolf.artifact.grouping": lambda c: c.quant.transform in ("grouped", "auto"),
    "pgolf.artifact.streams": lambda c: c.quant.transform in ("grouped", "auto"),
    "pgolf.artifact.transforms": lambda c: c.quant.transform != "none",
    "pgolf.artifact.lrzip": lambda c: c.quant.codec in ("lrzip", "auto"),
    "pgolf.artifact.auto": lambda c: c.quant.codec == "auto",
    # evaluation stages
    "pgolf.evaluate.modes": lambda c: len(eval_stages(c)) > 1 or c.train.final_weights == "best_val",
    "pgolf.evaluate.slot": lambda c: c.eval.slot != "off",
    "pgolf.evaluate.ttt": lambda c: c.eval.ttt != "off",
    "pgolf.evaluate.ttt_full": lambda c: c.eval.ttt == "full",
    "pgolf.evaluate.ttt_lora": _lora_ttt,
    "pgolf.evaluate.lora": _lora_ttt,
    # tooling a training run does not execute
    "pgolf.config.loader": _never,
    "pgolf.artifact.official": _never,
    "pgolf.artifact.imported_code": _never,  # the raw source count: a run counts its export's bytes
    "pgolf.export": _never,
}

_TEMPLATE = '''#!/usr/bin/env python3
"""{title}

pgolf {version} (code sha256 {code_sha256}): {module_count} modules embedded (pgolf need not be installed)
and the run's config. Needs torch, numpy, sentencepiece, zstandard, brotli, tomli-w.

    python train_gpt.py  # or: torchrun --standalone --nproc_per_node=8 train_gpt.py

The official baseline's environment variables (SEED, DATA_PATH, ...) override CONFIG. Results: runs/<RUN_ID>/.
Counted code bytes: this file's.
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

DATA = {data}


class _EmbeddedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name not in MODULES:
            if name.startswith("pgolf."):  # never an installed pgolf: its code did not train
                raise ImportError(f"{{name}} is not in this script: its config, with the environment's overrides, "
                                  "uses a part the export left out; export that config again")
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
    pgolf.SHIPPED_DATA = DATA
    from pgolf.config.embedded import embedded_config
    from pgolf.pipeline import run_train

    run_train(embedded_config(CONFIG, os.environ))


if __name__ == "__main__":
    main()
'''

# One line per wrapper codec: the import that decodes it and the call that inverts `codecs.compress`.
_DECODERS = {
    "lzma": ("import lzma as z", "z.decompress"),
    "brotli": ("import brotli as z", "z.decompress"),
    "zstd": ("import zstandard as z", "z.ZstdDecompressor().decompress"),
}
_WRAPPER = '{imp},base64\nexec(compile({call}(base64.b85decode(b"{payload}")),__file__,"exec"))\n'
_LATIN1_WRAPPER = '#coding:l1\n{imp}\nexec(compile({call}({payload}.encode("l1")),__file__,"exec"))\n'


@dataclass(frozen=True)
class ExportInfo:
    path: Path | None  # None for a size projection (`shipped_code`): nothing written
    bytes: int  # the shipped file's size: the code bytes of the budget
    sha256: str
    modules: tuple[str, ...]
    form: str  # plain | minified | minified+<codec>
    source_bytes: int  # size of the script before the self-extracting wrapper
    files: tuple[Path, ...] = ()  # the source files of the embedded modules


def _module_path(root: Path, name: str) -> Path | None:
    relative = Path(*name.split(".")[1:])
    for candidate in (root / relative / "__init__.py", (root / relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.Module) -> set[str]:
    """Absolute pgolf modules named by any import statement, at any depth (function-level ones too).

    A name imported from a package that serves it lazily (`pgolf.lazy`) names the submodule serving it;
    `if TYPE_CHECKING:` blocks are skipped (they never run).
    """
    names: set[str] = set()
    for node in (sub for stmt in runtime_body(tree) for sub in ast.walk(stmt)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "pgolf")
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module.split(".")[0] == "pgolf"):
            lazy = _lazy_exports(node.module)
            names.add(node.module)
            names.update(f"{node.module}.{lazy.get(a.name, a.name)}" for a in node.names)
    return names


@lru_cache(maxsize=64)
def _lazy_exports(package: str) -> dict[str, str]:
    """The `_EXPORTS` table (name → submodule) of a package's `__init__`, {} when it has none."""
    init = Path(pgolf.__file__).parent.joinpath(*package.split(".")[1:], "__init__.py")
    if not init.is_file():
        return {}
    for stmt in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(stmt, ast.Assign) and [callee(t) for t in stmt.targets] == ["_EXPORTS"]:
            return ast.literal_eval(stmt.value)
    return {}


def module_closure(cfg: Config | None = None) -> dict[str, Path]:
    """Every pgolf module the script's `main` can import (it builds the config and calls `pgolf.pipeline`),
    found statically, with its parent packages.

    With `cfg`, the `CONFIG_MODULES` that config does not use are left out (and what only they import).
    """
    root = Path(pgolf.__file__).parent
    found: dict[str, Path] = {}
    todo = sorted(_imported_names(_template_tree()))
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            module = ".".join(parts[:i])
            path = _module_path(root, module) if module != "pgolf" else root / "__init__.py"
            if module in found or path is None:
                continue
            if cfg is not None and module in CONFIG_MODULES and not CONFIG_MODULES[module](cfg):
                continue
            found[module] = path
            todo += sorted(_imported_names(ast.parse(path.read_text(encoding="utf-8"))))
    return dict(sorted(found.items()))


class _Minifier(ast.NodeTransformer):
    """Drops docstrings, function annotations and annotation-only statements outside class bodies.

    Class-level annotations stay: dataclasses and `get_type_hints` read them (`shrink` shortens them where
    nothing embedded reads what they say); so do the annotations of functions decorated with
    `KEEP_ANNOTATIONS` (`triton.jit` reads them).
    """

    def _strip_docstring(self, node: ast.AST) -> None:
        body = node.body  # type: ignore[attr-defined]
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self.generic_visit(node)
        self._strip_docstring(node)
        return node

    def __init__(self, shorten_class_annotations: bool = False) -> None:
        self.shorten_class_annotations = shorten_class_annotations

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._strip_docstring(node)
        node.body = [self._field(stmt) if isinstance(stmt, ast.AnnAssign) else self.visit(stmt) for stmt in node.body]
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        return node

    def _field(self, stmt: ast.AnnAssign) -> ast.AnnAssign:
        """A class-level annotation: as written, or `int` when shortening (a dataclass needs it present; only
        `DATACLASS_MARKERS` change what it does)."""
        if self.shorten_class_annotations and not any(m in ast.unparse(stmt.annotation) for m in DATACLASS_MARKERS):
            stmt.annotation = ast.Name("int", ast.Load())
        return stmt

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        self.generic_visit(node)
        self._strip_docstring(node)
        if any(callee(d) in KEEP_ANNOTATIONS for d in node.decorator_list):
            return node  # a Triton kernel: `BLOCK: tl.constexpr` makes BLOCK a compile-time constant
        node.returns = None
        a = node.args
        for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x is not None)):
            arg.annotation = None
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None  # a bare declaration: no runtime effect outside a class body
        return ast.copy_location(ast.Assign(targets=[node.target], value=self.visit(node.value)), node)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if getattr(node, "body", None) == []:  # a block emptied by removed declarations
            node.body = [ast.Pass()]  # type: ignore[attr-defined]
        return node


@lru_cache(maxsize=256)
def minify(source: str) -> str:
    """The same program without docstrings, comments, blank lines and function annotations (through the AST)."""
    return ast.unparse(_minified_tree(source)) + "\n"


@lru_cache(maxsize=512)
def _minified_tree(source: str, shorten_class_annotations: bool = False) -> ast.Module:
    return _Minifier(shorten_class_annotations).visit(ast.parse(source))  # cached: callers must not change it


@lru_cache(maxsize=8)
def shrink(sources: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The sources the minified forms embed, of the modules `sources` (name, source), in three passes:

    `minify` each module, shortening class-level annotations to `int` where no module reads annotations
    (`ANNOTATION_READERS`); `shake` out the definitions nothing reaches from the script's `main`, across the
    modules (the modules that are then neither imported nor keep a definition are left out); and `compact`
    each module (local names and the globals no other module can name shortened, whitespace squeezed).
    """
    return compacted(shaken_trees(sources))


@lru_cache(maxsize=8)  # `pgolf bench code-floor` measures the same closure at several levels
def shaken_trees(sources: tuple[tuple[str, str], ...]) -> dict[str, ast.Module]:
    """`shrink`'s first two passes: the trees of the modules to embed (their nodes keep the line numbers of
    their source files; they are shared with a cache, so a caller that changes them works on a copy)."""
    shorten = not any(_reads_annotations(source) for _, source in sources)
    shaken = shake({name: _minified_tree(source, shorten) for name, source in sources}, _entry_names())
    return {name: shaken[name] for name in _embedded(shaken)}


def compacted(trees: dict[str, ast.Module]) -> dict[str, str]:
    """`shrink`'s last pass: each module's tree as compacted source."""
    texts = {name: ast.unparse(tree) + "\n" for name, tree in trees.items()}
    # the shared words a module's text contains (definitions included) decide its renaming, and key its cache
    return {name: compact(text, _shared_words(name) & frozenset(WORD.findall(text)))
            for name, text in texts.items()}


@lru_cache(maxsize=512)
def _shared_words(module: str) -> frozenset[str]:
    """The words (names, attributes, string words) any other module the script can embed mentions, and the
    script's own: the globals of `module` that keep their names. Independent of the config, so a module's
    compacted form is cached across configs."""
    return frozenset(word for word, modules in _mentions().items() if modules - {module}) | _entry_names()


@lru_cache(maxsize=1)
def _mentions() -> dict[str, frozenset[str]]:
    """Word → the modules of the whole closure (every config's) that mention it."""
    seen_in: dict[str, set[str]] = {}
    for name, path in module_closure().items():
        for word in references(_minified_tree(path.read_text(encoding="utf-8"))):
            seen_in.setdefault(word, set()).add(name)
    return {word: frozenset(modules) for word, modules in seen_in.items()}


@lru_cache(maxsize=512)
def _reads_annotations(source: str) -> bool:
    return bool(ANNOTATION_READERS.intersection(references(_minified_tree(source))))


def _template_tree() -> ast.Module:
    return ast.parse(_TEMPLATE.format(title="", version="", code_sha256="", module_count=0, config="{}", modules="",
                                      data="{}"))


@lru_cache(maxsize=1)
def _entry_names() -> frozenset[str]:
    """Every name the script's own code uses: where the shaking starts."""
    return frozenset(references(_template_tree()))


def _embedded(trees: dict[str, ast.Module]) -> list[str]:
    """The modules to embed: those the script imports, those that keep a definition, and what they import."""
    keeps = [name for name, tree in trees.items() if any(not _inert(stmt) for stmt in tree.body)]
    todo, found = [*_imported_names(_template_tree()), *keeps], set()
    while todo:
        parts = todo.pop().split(".")
        for module in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if module in trees and module not in found:
                found.add(module)
                todo += sorted(_imported_names(trees[module]))
    return sorted(found)


def _inert(stmt: ast.stmt) -> bool:
    """A statement that defines nothing: a docstring, a `from __future__` import, `pass`."""
    return isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__") or (
        isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))


@lru_cache(maxsize=512)
def compact(source: str, shared: frozenset[str] | None = None) -> str:
    """`source` through python-minifier: the same behaviour in fewer bytes.

    Only passes that keep every name another module or a caller can see: locals are renamed, never
    attributes or arguments (a keyword call would break); globals only with `shared` (every name other code
    mentions), and then only those outside it, outside the module's own string constants (a `getattr` by
    name) and not dunders. Asserts stay; annotations are left to `minify` (which keeps those of class bodies
    and Triton kernels); whitespace is squeezed.
    """
    import python_minifier  # exporter-time only: the shipped script never imports it

    tree = ast.parse(source)
    words = {word for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
             for word in references(node)}
    preserve = sorted((shared or frozenset()) | words | {n for n in references(tree) if n.startswith("__")})
    return python_minifier.minify(
        source, remove_annotations=False, remove_pass=True, remove_literal_statements=False, combine_imports=True,
        hoist_literals=False, rename_locals=True, rename_globals=shared is not None, preserve_globals=preserve,
        remove_object_base=True,
        convert_posargs_to_args=False, preserve_shebang=False, remove_asserts=False, remove_debug=False,
        remove_explicit_return_none=True, remove_builtin_exception_brackets=True, constant_folding=True,
        prefer_single_line=False, remove_dead_branches=False) + "\n"


def _literal(text: str) -> str:
    """A Python literal for `text`: a readable raw triple-quoted string where that is exact, else repr."""
    for quote in ("'''", '"""'):
        if quote not in text and not text.endswith("\\") and not text.endswith(quote[0]):
            return f"r{quote}{text}{quote}"
    return repr(text)


def shipped_config(cfg: Config, concrete_data: bool = True) -> Config:
    """The config the script embeds: a fresh run id, runs/ beside the script, and (with `concrete_data`)
    real data paths in place of `embedded:` (the shipped corpus is package data, not code)."""
    data = cfg.data
    if concrete_data and data.dataset.startswith(EMBEDDED_PREFIX):
        paths = resolve_dataset(cfg)
        data = dataclasses.replace(data, dataset=str(paths.dataset_dir), tokenizer=str(paths.tokenizer_path))
    return dataclasses.replace(cfg, data=data, run=dataclasses.replace(cfg.run, run_id="", out_dir="runs"))


def _shipped_data(cfg: Config) -> tuple[Config, dict[str, str]]:
    """The package data a run of `cfg` reads (its quant policy), and the config naming it as shipped data."""
    if cfg.quant.scheme == "int8":
        return cfg, {}
    name = cfg.quant.policy
    text = shipped_policy_text(name)
    if text is None:  # a policy file: it ships inside the script, under its stem
        name = Path(cfg.quant.policy).stem
        text = Path(cfg.quant.policy).read_text(encoding="utf-8")
    return (dataclasses.replace(cfg, quant=dataclasses.replace(cfg.quant, policy=name)),
            {f"{POLICY_FOLDER}/{name}.toml": text})


def render_script(cfg: Config, title: str, code_sha256: str, minified: bool = False,
                  concrete_data: bool = True, sources: Callable[[dict[str, Path]], dict[str, str]] | None = None,
                  ) -> tuple[str, dict[str, Path]]:
    """The script's text and the modules it embeds (name → source file).

    Minified, it embeds `shrink`'s sources and only the config fields that differ from the defaults
    (the loader starts from the defaults); plain, the modules as they are and every field. `sources` replaces
    how the embedded sources are made from the module closure (`pgolf bench code-floor` measures variants).
    """
    shipped, data = _shipped_data(shipped_config(cfg, concrete_data))
    modules = module_closure(shipped)
    sources_of = sources or (lambda closure: embedded_sources(closure, minified))
    embedded = sources_of(modules)
    entries = [f"    {name!r}: ({modules[name].name == '__init__.py'}, {_literal(source)})," for name, source in
               embedded.items()]
    table = changed_fields(shipped) if minified else shipped.to_dict()
    script = _TEMPLATE.format(title=title, version=pgolf.__version__, code_sha256=code_sha256,
                              module_count=len(embedded), config=repr(table),
                              modules="\n".join(entries), data=repr(data))
    return script, {name: modules[name] for name in embedded}


def embedded_sources(modules: dict[str, Path], minified: bool = True) -> dict[str, str]:
    """The source the script embeds for each module it embeds, of `modules` (a `module_closure`)."""
    sources = tuple((name, path.read_text(encoding="utf-8")) for name, path in modules.items())
    return _stored_shrink(sources) if minified else dict(sources)


@lru_cache(maxsize=8)
def _stored_shrink(sources: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """`shrink` through a file cache (`SHRINK_CACHE` under the pgolf cache folder): it takes seconds per config
    on 2 cores, and every `pgolf train` measures its code. An entry is keyed by all it depends on: the sources,
    the whole package (the words other modules mention decide the renaming, and the exporter is part of it),
    python-minifier's version and Python's (`ast.unparse`). A missing, unreadable or malformed entry is
    computed again; a cache that cannot be written is skipped."""
    digest = hashlib.sha256()
    for part in (provenance.code_hash(), version("python-minifier"), sys.version, *map(repr, sources)):
        digest.update(part.encode("utf-8") + b"\0")
    path = default_cache_dir() / SHRINK_CACHE / f"{digest.hexdigest()}.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = None
    if isinstance(stored, dict) and all(isinstance(text, str) for text in stored.values()):
        return stored
    shrunk = shrink(sources)
    with contextlib.suppress(OSError, UserError):
        atomic_write_bytes(path, json.dumps(shrunk).encode("utf-8"))
        _prune(path.parent, SHRINK_CACHE_ENTRIES)
    return shrunk


def _prune(folder: Path, keep: int) -> None:
    """Keep the `keep` most recently written entries of `folder`."""
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[keep:]:
        stale.unlink(missing_ok=True)


def changed_fields(cfg: Config) -> dict[str, dict[str, object]]:
    """The fields of `cfg` that differ from the schema's defaults, by section (the loader fills in the rest)."""
    defaults = Config().to_dict()
    changed = {section: {key: value for key, value in fields.items()
                         if type(value) is not type(defaults[section][key]) or value != defaults[section][key]}
               for section, fields in cfg.to_dict().items()}
    return {section: fields for section, fields in changed.items() if fields}


def wrap(script: str, codec: str, encoding: str = "base85") -> bytes:
    """`script` as a self-extracting `codec` stream (one of WRAPPER_CODECS), the file's bytes.

    `encoding` (one of WRAPPER_ENCODINGS) writes the stream as base85 text, or byte for byte in a string
    literal of a latin-1 file (PEP 263), where only a few byte values need an escape.
    """
    return _wrap_stream(compress(script.encode("utf-8"), codec), codec, encoding)


def _wrap_stream(stream: bytes, codec: str, encoding: str) -> bytes:
    imp, call = _DECODERS[codec]
    if encoding == "latin1":
        return _LATIN1_WRAPPER.format(imp=imp, call=call, payload=_latin1_literal(stream)).encode("latin-1")
    payload = base64.b85encode(stream).decode("ascii")
    return _WRAPPER.format(imp=imp, call=call, payload=payload).encode("ascii")


def _latin1_literal(data: bytes) -> str:
    """A triple-quoted literal whose latin-1 encoding is `data`: backslash, NUL and CR escaped (Python refuses
    a NUL in source and reads a CR as a newline), and a quote where it would close the literal."""
    text = data.decode("latin-1").translate({0: "\\x00", 13: "\\r", 92: "\\\\"})
    text = re.sub(r"'(?='|\Z)", "\\\\'", text)  # a quote before a quote, or last: escaped
    return f"'''{text}'''"


@lru_cache(maxsize=8)  # `pgolf train` and its tests measure the same script again and again
def shipped_bytes(script: str, form: str) -> tuple[bytes, str]:
    """(bytes that ship, form label): `compressed` keeps the smallest wrapper, ties to the earlier one in
    WRAPPER_CODECS, then WRAPPER_ENCODINGS; `compressed_ascii` keeps the smallest base85 wrapper."""
    if not form.startswith("compressed"):
        return script.encode("utf-8"), form
    encodings = WRAPPER_ENCODINGS if form == "compressed" else ("base85",)
    streams = {codec: compress(script.encode("utf-8"), codec) for codec in WRAPPER_CODECS}
    wrapped = {(codec, encoding): _wrap_stream(streams[codec], codec, encoding) for codec in WRAPPER_CODECS
               for encoding in encodings}
    codec, encoding = min(wrapped, key=lambda key: len(wrapped[key]))
    return wrapped[codec, encoding], f"minified+{codec}" + ("" if encoding == "base85" else f"+{encoding}")


def _check_form(form: str) -> None:
    if form not in CODE_FORMS:
        raise UserError(f"unknown code form {form!r}: use one of {', '.join(CODE_FORMS)}")


def _export(cfg: Config, title: str, code_sha256: str, form: str, concrete_data: bool) -> tuple[bytes, ExportInfo]:
    _check_form(form)
    script, modules = render_script(cfg, title, code_sha256, form != "plain", concrete_data)
    data, label = shipped_bytes(script, form)
    info = ExportInfo(None, len(data), sha256_bytes(data), tuple(modules), label, len(script.encode("utf-8")),
                      tuple(modules.values()))
    return data, info


def shipped_code(cfg: Config, form: str | None = None, concrete_data: bool = True) -> ExportInfo:
    """The single file a run of `cfg` would ship (form: `quant.code_form` unless given), measured, not written.

    Its bytes differ from `pgolf submit`'s only by the title in its docstring (here: the preset's name;
    there: the submission's name).
    """
    return _export(cfg, f"pgolf run of preset {cfg.run.preset or 'custom'}", provenance.code_hash(),
                   form or cfg.quant.code_form, concrete_data)[1]


def write_export(path: Path, cfg: Config, title: str, run_id: str, code_sha256: str, form: str = "compressed",
                 concrete_data: bool = True) -> ExportInfo:
    """Write the single-file export of a run that ran code `code_sha256`.

    Refused when the pgolf code here is not that code: the file would embed code that did not train.
    """
    current = provenance.code_hash()
    if code_sha256 != current:
        raise UserError(f"run {run_id} ran pgolf code {code_sha256[:12]}…, but the code here is {current[:12]}…: "
                        "the export would embed code that did not train; check out the commit the run used "
                        "(its summary.json git_commit) and export again")
    shipped, info = _export(cfg, title, code_sha256, form, concrete_data)
    atomic_write_bytes(path, shipped)
    return ExportInfo(path, info.bytes, info.sha256, info.modules, info.form, info.source_bytes, info.files)
