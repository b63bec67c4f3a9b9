"""One config value checked against its field's type: a TOML value as it is, a string (from the
environment or `--set`) parsed. Shared by the loader and the exported script's config."""

from __future__ import annotations

from typing import Any

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse_string(text: str, typ: type) -> Any:
    raw = text.strip()
    if typ is bool:
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(raw)
    if typ is int:
        number = float(raw)
        if not number.is_integer():
            raise ValueError(raw)
        return int(number)
    return float(raw)


def coerce(value: Any, typ: type) -> Any:
    """A TOML value checked, or a string from the environment / --set parsed, against a field type."""
    if isinstance(value, str) and typ is not str:
        return _parse_string(value, typ)
    if typ is bool and isinstance(value, bool):
        return value
    if typ is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is str and isinstance(value, str):
        return value
    raise ValueError(value)
