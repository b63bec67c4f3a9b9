"""The shipped presets (pgolf/presets/*.toml): partial configs layered over the defaults."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

from pgolf.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


def preset_names() -> list[str]:
    folder = resources.files("pgolf") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_preset(name: str) -> dict[str, Any]:
    path = resources.files("pgolf") / "presets" / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}': available presets are {', '.join(preset_names())}")
    return tomllib.loads(path.read_text(encoding="utf-8"))
