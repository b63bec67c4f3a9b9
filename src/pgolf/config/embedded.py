"""The config of an exported script (`pgolf submit`/`export`): the schema's defaults, the table the
script embeds, then the official baseline's environment variables (`OFFICIAL_ENV_VARS`).

The embedded table is the config of a run that was loaded and validated by `pgolf train`; the script
does not carry the loader or the validator (they would count against the code budget), so what an
environment variable sets is checked against the field's type only. A value of the wrong type is
refused with the variable's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgolf.config.coerce import coerce
from pgolf.config.env import OFFICIAL_ENV_VARS
from pgolf.config.schema import Config
from pgolf.errors import ConfigError


def embedded_config(table: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str]) -> Config:
    """`table` (section → field → value) over the defaults, then every official variable set in `environ`."""
    cfg = Config()
    for section, values in table.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    for name, dotted in OFFICIAL_ENV_VARS.items():
        if name in environ:
            section_name, key = dotted.split(".")
            section = getattr(cfg, section_name)
            typ = type(getattr(section, key))
            try:
                setattr(section, key, coerce(environ[name], typ))
            except ValueError:
                raise ConfigError(f"environment {name}={environ[name]!r} is not a valid {dotted}: "
                                  f"set a {typ.__name__} or unset it") from None
    return cfg
