"""Resolve a `Config` in one direction, each layer overriding the one before:

    dataclass defaults (the official baseline) < preset < saved config < --config file < environment < --set

Values are coerced to the field types as they are applied; every problem (unknown key, wrong type,
unreadable file, then every failed check of `pgolf.config.validate`) is collected and raised as one
`ConfigIssues` naming each key, where its value came from and the fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pgolf.config.coerce import coerce
from pgolf.config.env import env_assignments, warn_unmapped
from pgolf.config.introspect import schema_fields, section_types
from pgolf.config.issues import Issues
from pgolf.config.presets import read_preset
from pgolf.config.schema import Config
from pgolf.config.validate import validate_into
from pgolf.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

def read_toml_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist: pass an existing TOML file to --config")
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} is not valid TOML ({exc}): fix the syntax") from None


class Resolver:
    """Applies layers onto one `Config`, remembering the origin of each key and every problem met."""

    def __init__(self) -> None:
        self.cfg = Config()
        self.origins: dict[str, str] = {}
        self.issues = Issues(self.origins)

    def _unknown(self, dotted: str, origin: str) -> None:
        section, _, key = dotted.partition(".")
        sections = section_types()
        if section not in sections or not key:
            self.issues.add(dotted, f"unknown config key: keys look like section.key with section one of "
                            f"{', '.join(sections)}", origin)
            return
        known = sorted(k.partition(".")[2] for k in schema_fields() if k.startswith(f"{section}."))
        self.issues.add(dotted, f"unknown config key: valid keys in [{section}] are {', '.join(known)}", origin)

    def apply(self, dotted: str, value: Any, origin: str) -> None:
        info = schema_fields().get(dotted)
        if info is None:
            self._unknown(dotted, origin)
            return
        try:
            typed = coerce(value, info.base)
        except ValueError:
            self.issues.add(dotted, f"must be {info.base.__name__}, got {value!r}", origin)
            return
        section, _, key = dotted.partition(".")
        setattr(getattr(self.cfg, section), key, typed)
        self.origins[dotted] = origin

    def apply_table(self, table: Mapping[str, Any], origin: str) -> None:
        for section, entries in table.items():
            if not isinstance(entries, Mapping):
                self.issues.add(section, f"must be a [section] table, got {entries!r}", origin)
                continue
            for key, value in entries.items():
                self.apply(f"{section}.{key}", value, origin)

    def apply_overrides(self, overrides: Sequence[str]) -> None:
        for item in overrides:
            dotted, sep, value = item.partition("=")
            if sep:
                self.apply(dotted.strip(), value, "--set")
            else:
                self.issues.add(item, "--set expects section.key=value", "--set")

    def load(self, option: str, origin: str, read: Any, *args: Any) -> None:
        """Apply the table `read(*args)` returns; a file that cannot be read is an issue of `option`."""
        try:
            table = read(*args)
        except ConfigError as exc:
            self.issues.add(option, str(exc), origin="")
            return
        self.apply_table(table, origin)

    def finish(self, world_size: int) -> Config:
        failed = self.issues.reported_keys()
        validate_into(self.cfg, world_size, self.issues, skip=failed)
        self.issues.raise_if_any()
        return self.cfg


def load_config(
    preset: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    world_size: int = 1,
    base: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve a config: defaults < preset < base < file < environment < overrides, then validate it.

    `base` is a saved config (an artifact's or a run's) that evaluation starts from.
    """
    resolver = Resolver()
    if preset:
        resolver.load("--preset", f"preset {preset}", read_preset, preset)
        resolver.cfg.run.preset = preset
    if base is not None:
        resolver.apply_table(base, "saved config")
    if config_file is not None:
        resolver.load("--config", f"file {config_file}", read_toml_file, config_file)
    environ = os.environ if env is None else env
    for dotted, value, origin in env_assignments(environ):
        resolver.apply(dotted, value, origin)
    warn_unmapped(environ)
    resolver.apply_overrides(overrides)
    return resolver.finish(world_size)


def config_from_dict(table: Mapping[str, Any], origin: str = "saved config") -> Config:
    """Rebuild a config saved by a run (its config.toml), validating every key."""
    resolver = Resolver()
    resolver.apply_table(table, origin)
    return resolver.finish(world_size=1)
