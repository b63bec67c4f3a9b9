"""Command-line options generated from the schema: `--stride 64` is a typed shorthand for
`--set eval.stride=64`.

An option's type, allowed values (a `Literal` field's) and help (the field's doc comment) come from
the field, so the CLI cannot drift from the config. The option appends `section.key=value` to
`args.overrides` in command-line order, so the loader checks it like any --set and names its key.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pgolf.config.introspect import field_docs, schema_fields


class SetField(argparse.Action):
    """Appends `key=value` (a flag without value: `key=true`) to `namespace.overrides`."""

    def __init__(self, option_strings: Sequence[str], dest: str, key: str, **kwargs: Any) -> None:
        self.key = key
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        value = "true" if self.nargs == 0 else values
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), f"{self.key}={value}"]


def _metavar(dotted: str, base: type) -> str:
    return dotted.partition(".")[2].upper() if base is str else base.__name__.upper()


def add_field_option(parser: argparse.ArgumentParser, flag: str, dotted: str, help: str | None = None) -> None:
    """Add `flag` setting the config field `dotted` (KeyError for a key the schema lacks)."""
    info = schema_fields()[dotted]
    text = f"{help or field_docs().get(dotted) or dotted} ({dotted})"
    if info.base is bool:
        parser.add_argument(flag, action=SetField, key=dotted, nargs=0, default=argparse.SUPPRESS, help=text)
        return
    typed: dict[str, Any] = {} if info.base is str else {"type": info.base}
    parser.add_argument(flag, action=SetField, key=dotted, default=argparse.SUPPRESS, help=text, **typed,
                        choices=info.choices or None, metavar=None if info.choices else _metavar(dotted, info.base))
