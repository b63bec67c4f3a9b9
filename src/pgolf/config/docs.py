"""The resolved config as TOML with each field's documentation (`pgolf config show --doc`)."""

from __future__ import annotations

import tomli_w

from pgolf.config.introspect import field_docs, schema_fields
from pgolf.config.schema import Config


def _comment(dotted: str) -> str:
    info = schema_fields()[dotted]
    allowed = f"one of {', '.join(map(str, info.choices))}" if info.choices else info.base.__name__
    parts = [field_docs().get(dotted, ""), f"{allowed}; default {tomli_w.dumps({'v': info.default}).strip()[4:]}"]
    return "# " + " — ".join(p for p in parts if p)


def documented_toml(cfg: Config) -> str:
    """Like `Config.to_toml`, with a comment line (doc, type or choices, default) above every key."""
    lines: list[str] = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(_comment(f"{section}.{key}"))
            lines.append(tomli_w.dumps({key: value}).rstrip("\n"))
        lines.append("")
    return "\n".join(lines)
