"""Config problems collected, not raised one at a time: the user sees every one of them at once.

Each `ConfigIssue` names the key, where its value came from (default, preset, file, environment,
--set, saved config) and what to change. `ConfigIssues` is the one `ConfigError` raised for all of
them, before any work starts (the CLI exits with code 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgolf.errors import ConfigError

DEFAULT_ORIGIN = "default"


@dataclass(frozen=True)
class ConfigIssue:
    key: str
    message: str  # the constraint broken and the fix
    origin: str = ""  # "" = not known (an issue raised outside a load)

    def line(self) -> str:
        if not self.origin:
            return f"{self.key}: {self.message}"
        where = "default value" if self.origin == DEFAULT_ORIGIN else f"from {self.origin}"
        return f"{self.key}: {self.message} ({where})"


class ConfigIssues(ConfigError):
    """Every problem of one config; the message lists each on its own line."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        lines = [issue.line() for issue in self.issues]
        text = lines[0] if len(lines) == 1 else f"{len(lines)} config errors:\n" + "\n".join(f"  {ln}" for ln in lines)
        super().__init__(text)


class Issues:
    """Collects issues; `origins` maps `section.key` to the layer that set it last."""

    def __init__(self, origins: Mapping[str, str] | None = None) -> None:
        self.origins: Mapping[str, str] = {} if origins is None else origins  # live view: the loader fills it
        self.items: list[ConfigIssue] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def reported_keys(self) -> set[str]:
        return {issue.key for issue in self.items}

    def add(self, key: str, message: str, origin: str | None = None) -> None:
        issue = ConfigIssue(key, message, self.origins.get(key, DEFAULT_ORIGIN) if origin is None else origin)
        if issue not in self.items:
            self.items.append(issue)

    def require(self, condition: bool, key: str, message: str) -> None:
        if not condition:
            self.add(key, message)

    def call(self, key: str, check: Callable[..., Any], *args: Any) -> Any:
        """Run a helper that raises `ConfigError`; record its message under `key` (None on failure)."""
        try:
            return check(*args)
        except ConfigIssues as exc:
            for issue in exc.issues:
                self.add(issue.key, issue.message)
        except ConfigError as exc:
            message = str(exc)
            self.add(key, message.removeprefix(f"{key}: "))
        return None

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigIssues(self.items)


def fail(key: str, message: str) -> ConfigIssues:
    """One issue as an exception, for helpers outside a collection pass (`raise fail(...)`)."""
    return ConfigIssues([ConfigIssue(key, message)])
