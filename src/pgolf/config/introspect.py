"""What the schema says about each field: its section, type, allowed values and documentation.

Everything here is derived from `pgolf.config.schema`, so a field added there is known to the loader,
the validator, the CLI options and `pgolf config show --doc` without a second table. The docs are read
from the source only when asked for (CLI help, --doc), never while loading a config.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import tokenize
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from pgolf.config import schema
from pgolf.config.schema import Config


@dataclass(frozen=True)
class FieldInfo:
    """One config field, `section.key`."""

    dotted: str
    base: type  # bool | int | float | str (a Literal's values are all of one type)
    choices: tuple[Any, ...]  # the Literal's values; () for a free value
    default: Any


@functools.cache
def section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _base_and_choices(hint: Any) -> tuple[type, tuple[Any, ...]]:
    if get_origin(hint) is Literal:
        values = get_args(hint)
        return type(values[0]), values
    return hint, ()


@functools.cache
def schema_fields() -> dict[str, FieldInfo]:
    """Every field of every section, in schema order."""
    found: dict[str, FieldInfo] = {}
    for section, cls in section_types().items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            dotted = f"{section}.{f.name}"
            base, choices = _base_and_choices(hints[f.name])
            found[dotted] = FieldInfo(dotted, base, choices, getattr(cls(), f.name))
    return found


def choices() -> dict[str, tuple[Any, ...]]:
    """`section.key` → allowed values, for every Literal field."""
    return {dotted: info.choices for dotted, info in schema_fields().items() if info.choices}


def _comments(source: str) -> dict[int, str]:
    """Line number → the text of the comment on that line."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def _doc_of(line: int, comments: dict[int, str], lines: list[str]) -> str:
    """The comment on the field's line, else the comment block right above it."""
    if line in comments:
        return comments[line]
    block: list[str] = []
    above = line - 1
    while above in comments and lines[above - 1].lstrip().startswith("#"):
        block.insert(0, comments[above])
        above -= 1
    return " ".join(block)


@functools.cache
def field_docs() -> dict[str, str]:
    """`section.key` → its documentation, read from the comments of schema.py ({} where the source is gone)."""
    try:
        source = inspect.getsource(schema)
    except (OSError, TypeError):  # an embedded or minified copy: the docs are not needed to run
        return {}
    comments, lines = _comments(source), source.splitlines()
    classes = {cls.__name__: section for section, cls in section_types().items()}
    docs: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    docs[f"{classes[node.name]}.{item.target.id}"] = _doc_of(item.lineno, comments, lines)
    return docs
