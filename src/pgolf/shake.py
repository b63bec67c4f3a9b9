"""Definition-level tree shaking of the modules a single-file export embeds.

The export embeds whole modules, but a run reaches only part of each. `shake` keeps a module's
top-level definitions (functions, classes, assignments to names, imported names) only where something
kept can reach them, and drops the others; every other top-level statement is kept and counts as
reached. The rule is by name, across all the modules, so it errs on the side of keeping:

* a definition is live when its name occurs anywhere in live code as a name, an attribute or a word
  of a string constant (a `getattr(obj, "name")`, a lazy-export table, an error message naming it);
* live code: the kept top-level statements, the entry's names, and the bodies of live definitions;
* the methods of a live class stay, except in classes with no base (or only bases of that kind)
  whose methods nothing can call by name: there a non-dunder method is live by the same rule.
  Framework bases (`nn.Module`, `autograd.Function`, optimizers, protocols) keep every method.

A lazy package's `_EXPORTS` table (`pgolf.lazy`) keeps only the entries whose names are live: the names it
serves are reached where another module imports them by name, not through the table's strings.

Never dropped: `from __future__` imports, a definition with a decorator not known to be pure (a
registration would be lost), dunder names other than `__all__`, and imports of modules whose top level
does more than define names. `if TYPE_CHECKING:` blocks never run and are removed.

A module is embedded when kept code imports it, or when it keeps a definition.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Decorators that only wrap or annotate what they decorate: a definition carrying only these can go.
PURE_DECORATORS = frozenset({
    "dataclass", "no_grad", "inference_mode", "cache", "lru_cache", "contextmanager", "wraps", "property",
    "staticmethod", "classmethod", "cached_property", "declares_controls", "jit", "compile",
})
LAZY_TABLE = "_EXPORTS"  # a lazy package's name → submodule table (`pgolf.lazy`): only its live entries are kept
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Statements at the top of a module that only bind names (their blocks too): importing such a module has no
# effect beyond its names, so an unused import of it can go.
_BINDING = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign,
            ast.AnnAssign, ast.Pass, ast.Assert)


@dataclass(eq=False)
class _Definition:
    module: str
    node: ast.stmt
    names: tuple[str, ...]  # what it binds; live once any of them is referenced
    parent: _Definition | None = None  # a method: live only within a live class
    live: bool = False
    alias: ast.alias | None = None  # an import: the one name of it this definition binds


def references(node: ast.AST) -> Iterator[str]:
    """Every name `node` can reach: names, attributes, imported names, and the words of string constants."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id
        elif isinstance(sub, ast.Attribute):
            yield sub.attr
        elif isinstance(sub, ast.alias):
            yield from sub.name.split(".")
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield from WORD.findall(sub.value)
        elif isinstance(sub, (ast.Global, ast.Nonlocal)):
            yield from sub.names


def callee(decorator: ast.expr) -> str:
    """The name a decorator (or any expression) calls: `dataclass` for `@dataclasses.dataclass(frozen=True)`."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return target.attr if isinstance(target, ast.Attribute) else target.id if isinstance(target, ast.Name) else ""


def _is_type_checking(stmt: ast.stmt) -> bool:
    test = stmt.test if isinstance(stmt, ast.If) else None
    return isinstance(test, (ast.Name, ast.Attribute)) and callee(test) == "TYPE_CHECKING"


def _targets(stmt: ast.stmt) -> list[str] | None:
    """The names an assignment binds, or None when it also assigns something else (an attribute, an item)."""
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) \
        and stmt.value is not None else []
    names: list[str] = []
    for target in targets:
        for element in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
            node = element.value if isinstance(element, ast.Starred) else element
            if not isinstance(node, ast.Name):
                return None
            names.append(node.id)
    return names or None


def _bound(alias: ast.alias, from_import: bool) -> str:
    return alias.asname or (alias.name if from_import else alias.name.split(".")[0])


def _imported_module(stmt: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    return stmt.module or "" if isinstance(stmt, ast.ImportFrom) else alias.name


def _only_binds(body: Iterable[ast.stmt]) -> bool:
    """True when `body` only binds names (in nested if/try blocks too): running it has no other effect."""
    for stmt in body:
        if isinstance(stmt, (ast.If, ast.Try)):
            blocks = [stmt.body, stmt.orelse, *(getattr(stmt, "finalbody", []),),
                      *(h.body for h in getattr(stmt, "handlers", []))]
            if not all(_only_binds(b) for b in blocks):
                return False
        elif isinstance(stmt, ast.Expr):
            if not isinstance(stmt.value, ast.Constant):
                return False
        elif not isinstance(stmt, _BINDING) or (isinstance(stmt, ast.Assign) and _targets(stmt) is None):
            return False
    return True


def runtime_body(tree: ast.Module) -> list[ast.stmt]:
    """The module's statements with `if TYPE_CHECKING:` blocks replaced by their `else` (they never run)."""
    body: list[ast.stmt] = []
    for stmt in tree.body:
        body += stmt.orelse if _is_type_checking(stmt) else [stmt]  # type: ignore[attr-defined]
    return body


class _Shaker:
    def __init__(self, trees: dict[str, ast.Module]) -> None:
        self.trees = trees
        self.bodies = {name: runtime_body(tree) for name, tree in trees.items()}
        self.effectful = {name for name, body in self.bodies.items() if not _only_binds(body)}
        self.classes: dict[str, list[ast.ClassDef]] = {}
        for body in self.bodies.values():
            for stmt in body:
                if isinstance(stmt, ast.ClassDef):
                    self.classes.setdefault(stmt.name, []).append(stmt)
        self.definitions: list[_Definition] = []
        self.roots: list[ast.AST] = []
        self.kept: dict[str, list[ast.stmt | _Definition | list[_Definition]]] = {}
        for name, body in self.bodies.items():
            self.kept[name] = [self._classify(name, stmt) for stmt in body]

    def _root(self, stmt: ast.stmt) -> ast.stmt:
        self.roots.append(stmt)
        return stmt

    def _define(self, module: str, node: ast.stmt, names: Iterable[str], parent: _Definition | None = None,
                alias: ast.alias | None = None) -> _Definition:
        definition = _Definition(module, node, tuple(names), parent, alias=alias)
        self.definitions.append(definition)
        return definition

    def _classify(self, module: str, stmt: ast.stmt) -> ast.stmt | _Definition | list[_Definition]:
        """A statement that always stays (a root), or a definition that stays only when reached."""
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if any(callee(d) not in PURE_DECORATORS for d in stmt.decorator_list) or _is_dunder(stmt.name):
                return self._root(stmt)
            definition = self._define(module, stmt, [stmt.name])
            if isinstance(stmt, ast.ClassDef) and self._shakable(stmt, set()):
                for method in stmt.body:
                    if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_dunder(method.name) \
                            and all(callee(d) in PURE_DECORATORS for d in method.decorator_list):
                        self._define(module, method, [method.name], parent=definition)
            return definition
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            return self._classify_import(module, stmt)
        names = _targets(stmt)
        if names is None or any(_is_dunder(n) and n != "__all__" for n in names):
            return self._root(stmt)
        return self._define(module, stmt, names)

    def _classify_import(self, module: str, stmt: ast.Import | ast.ImportFrom) -> ast.stmt | list[_Definition]:
        """An import: one definition per name it binds."""
        from_import = isinstance(stmt, ast.ImportFrom)
        if from_import and (stmt.module == "__future__" or any(a.name == "*" for a in stmt.names)):
            return self._root(stmt)
        if any(_imported_module(stmt, a) in self.effectful for a in stmt.names):
            return self._root(stmt)  # importing it does more than bind its names
        return [self._define(module, stmt, [_bound(a, from_import)], alias=a) for a in stmt.names]

    def _shakable(self, cls: ast.ClassDef, seen: set[str]) -> bool:
        """Whether nothing outside the embedded code calls `cls`'s methods by name: its bases are
        `object` or classes of that kind (by name: every class of that name must be one)."""
        if cls.keywords or cls.name in seen:
            return False
        for base in cls.bases:
            if not isinstance(base, ast.Name):
                return False
            if base.id != "object" and not (base.id in self.classes and all(
                    self._shakable(c, seen | {cls.name}) for c in self.classes[base.id])):
                return False
        return True

    def run(self, entry_names: Iterable[str]) -> dict[str, ast.Module]:
        live: set[str] = set(entry_names)
        for root in self.roots:
            live.update(references(root))
        waiting = list(self.definitions)
        changed = True
        while changed:
            changed = False
            for definition in waiting:
                if (definition.parent is None or definition.parent.live) and live.intersection(definition.names):
                    definition.live = changed = True
                    live.update(self._references(definition))
            waiting = [d for d in waiting if not d.live]
        return {name: self._emit(name, live) for name in self.trees}

    def _references(self, definition: _Definition) -> Iterator[str]:
        node = definition.node
        if definition.alias is not None:
            yield from definition.alias.name.split(".")
        elif definition.names == (LAZY_TABLE,):
            return  # the names a lazy package serves are reached where they are imported by name
        elif isinstance(node, ast.ClassDef):  # the body without the methods that are definitions of their own
            own = {id(d.node) for d in self.definitions if d.parent is not None and d.parent.node is node}
            for sub in (*node.bases, *node.keywords, *node.decorator_list, *node.body):
                if id(sub) not in own:
                    yield from references(sub)
        else:
            yield from references(node)

    def _emit(self, module: str, live: set[str]) -> ast.Module:
        body: list[ast.stmt] = []
        for item in self.kept[module]:
            if isinstance(item, list):  # an import: the names of it that are live
                names = [d.alias for d in item if d.live and d.alias is not None]
                if names:
                    body.append(_with(item[0].node, "names", names))
            elif isinstance(item, ast.stmt):
                body.append(item)
            elif item.live:
                body.append(self._live_part(item, live))
        return ast.Module(body=body, type_ignores=[])

    def _live_part(self, definition: _Definition, live: set[str]) -> ast.stmt:
        node = definition.node
        if definition.names == (LAZY_TABLE,) and isinstance(node.value, ast.Dict):  # type: ignore[attr-defined]
            table = node.value  # type: ignore[attr-defined]
            pairs = [(k, v) for k, v in zip(table.keys, table.values, strict=True)
                     if isinstance(k, ast.Constant) and k.value in live]
            return _with(node, "value", ast.Dict(keys=[k for k, _ in pairs], values=[v for _, v in pairs]))
        if isinstance(node, ast.ClassDef):
            dropped = {id(d.node) for d in self.definitions if d.parent is definition and not d.live}
            return _with(node, "body", [stmt for stmt in node.body if id(stmt) not in dropped] or [ast.Pass()])
        return node


def _with(node: ast.stmt, field: str, value: object) -> ast.stmt:
    """A copy of `node` with `field` replaced (the shared trees are never changed)."""
    changed = copy.copy(node)
    setattr(changed, field, value)
    return changed


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def shake(trees: dict[str, ast.Module], entry_names: Iterable[str]) -> dict[str, ast.Module]:
    """The modules `trees` (name → parsed module) with the top-level definitions that neither `entry_names`
    nor anything kept reaches removed (see the module docstring for the rule). The trees are not changed."""
    return _Shaker(trees).run(entry_names)
