"""Definition-level tree shaking (`pgolf.shake`): what nothing reaches goes, what anything can reach by
name stays, and the shaken, shrunk module sets still import (every `_cpu` preset runs in the slow export tests)."""

from __future__ import annotations

import ast
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from pgolf.config import load_config
from pgolf.export import minify, render_script
from pgolf.shake import shake


def _shaken(entry: set[str], **modules: str) -> dict[str, str]:
    trees = shake({name.replace("_", "."): ast.parse(source) for name, source in modules.items()}, entry)
    return {name: ast.unparse(tree) for name, tree in trees.items()}


def test_an_unreferenced_definition_is_dropped_and_a_referenced_one_kept() -> None:
    out = _shaken({"main"}, pkg_a="import os\nimport json\nX = 1\nY = X + 1\ndef main():\n    return helper(Y)\n"
                                  "def helper(v):\n    return os.sep * v\ndef unused():\n    return json.dumps(X)\n")
    text = out["pkg.a"]
    assert "def main" in text and "def helper" in text and "Y = X + 1" in text and "X = 1" in text
    assert "unused" not in text and "json" not in text and "import os" in text


def test_a_name_reached_through_a_string_or_an_attribute_is_kept() -> None:
    out = _shaken({"main"}, pkg_a="def main(m):\n    return getattr(m, 'by_string')(), m.by_attribute()\n",
                  pkg_b="def by_string():\n    return 1\ndef by_attribute():\n    return 2\n"
                        "def in_message():\n    return 3\ndef nowhere():\n    return 4\n"
                        "def check(x):\n    raise ValueError('call in_message() first')\n",
                  pkg_c="import pkg.b\nSTATS = pkg.b.check\n")
    assert "by_string" in out["pkg.b"] and "by_attribute" in out["pkg.b"] and "nowhere" not in out["pkg.b"]
    assert "STATS" not in out["pkg.c"] and "def check" not in out["pkg.b"]  # nothing reaches STATS, so not check
    assert "in_message" not in out["pkg.b"]  # its only mention is inside the dropped `check`


def test_roots_side_effects_and_registrations_stay() -> None:
    out = _shaken(set(), pkg_a="from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
                               "if TYPE_CHECKING:\n    from pkg.b import Hidden\nREGISTRY = {}\n"
                               "def register(f):\n    REGISTRY[f.__name__] = f\n    return f\n"
                               "@register\ndef plugin():\n    return 1\nprint(len(REGISTRY))\n__all__ = ['gone']\n"
                               "def gone():\n    return 2\ndef __getattr__(name):\n    return name\n")
    text = out["pkg.a"]
    assert "from __future__ import annotations" in text and "def plugin" in text and "def register" in text
    assert "print(len(REGISTRY))" in text and "def __getattr__" in text
    assert "TYPE_CHECKING" not in text and "Hidden" not in text and "__all__" not in text and "gone" not in text


def test_methods_go_only_where_no_framework_calls_them() -> None:
    out = _shaken({"main"}, pkg_a="import torch\nclass Plain:\n    def __init__(self):\n        self.v = 1\n"
                                  "    def used(self):\n        return 1\n    def unused(self):\n        return 2\n"
                                  "class Net(torch.nn.Module):\n    def forward(self, x):\n        return x\n"
                                  "    def extra_repr(self):\n        return ''\n"
                                  "class Sub(Plain):\n    def other(self):\n        return 3\n"
                                  "def main():\n    return Plain().used(), Net(), Sub()\n")
    text = out["pkg.a"]
    assert "def __init__" in text and "def used" in text and "def unused" not in text and "def other" not in text
    assert "def forward" in text and "def extra_repr" in text  # nn.Module calls them by name


def test_unknown_decorators_keep_the_definition_and_pure_ones_do_not() -> None:
    out = _shaken(set(), pkg_a="import functools\nfrom dataclasses import dataclass\n@dataclass(frozen=True)\n"
                               "class P:\n    x: int = 1\n@functools.cache\ndef cached():\n    return 1\n"
                               "@some.registry('name')\ndef registered():\n    return 2\n")
    text = out["pkg.a"]
    assert "class P" not in text and "cached" not in text and "def registered" in text


def test_minify_keeps_the_annotations_triton_reads() -> None:
    source = ("import triton\nimport triton.language as tl\n@triton.jit\ndef k(x_ptr, n, BLOCK: tl.constexpr):\n"
              "    pass\ndef f(a: int) -> int:\n    return a\n")
    small = minify(source)
    assert "BLOCK: tl.constexpr" in small and "a: int" not in small


_IMPORT_ALL = ("import runpy, sys, importlib; sys.path[:0] = {paths!r}; g = runpy.run_path('train_gpt.py', "
               "run_name='check'); sys.meta_path.insert(0, g['_EmbeddedModules']())\n"
               "for name in sorted(g['MODULES']): importlib.import_module(name)\n"
               "import pgolf.pipeline as p, pgolf.config.embedded as c\n"
               "assert callable(p.run_train) and callable(c.embedded_config)\n"
               "print(len(g['MODULES']))")


@pytest.mark.parametrize("preset", ["tiny", "sota_cpu"])  # the fewest and the most modules
def test_the_shaken_modules_of_every_cpu_preset_import_without_pgolf(preset: str, tmp_path: Path) -> None:
    cfg = load_config(preset, env={})
    script, modules = render_script(cfg, "t", "0" * 64, minified=True, concrete_data=False)
    (tmp_path / "train_gpt.py").write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-S", "-c", _IMPORT_ALL.format(paths=site.getsitepackages())],
                            cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) == len(modules)
    assert "def run_train" in script and "def unused" not in script


def test_a_lazy_table_keeps_only_the_names_imported_somewhere() -> None:
    out = _shaken({"main"}, pkg="from pgolf.lazy import lazy_exports\n_EXPORTS = {'used': 'a', 'unused': 'b'}\n"
                                "__getattr__ = lazy_exports(__name__, _EXPORTS)\n",
                  pkg_a="def used():\n    return 1\n", pkg_b="def unused():\n    return 2\n",
                  pkg_main="from pkg import used\ndef main():\n    return used()\n")
    assert "'used': 'a'" in out["pkg"] and "unused" not in out["pkg"]
    assert "def used" in out["pkg.a"] and "def unused" not in out["pkg.b"]  # the table's strings reach nothing
