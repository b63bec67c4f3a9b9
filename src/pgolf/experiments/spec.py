"""Ablation files: a named set of configurations (preset + overrides) × seeds, and a design.

```toml
[ablation]
preset = "tiny"            # default preset of every configuration
seeds = [42, 1337]
baseline = "A"             # the row deltas are measured against
design = "matrix"          # matrix | one_factor | leave_one_out | forward
metric = "val_bpb"         # lower is better

[common]                   # overrides for every configuration
train.max_wallclock_seconds = 30

[features.parallel]        # a toggle: the overrides that switch one technique on
set = { model.parallel_residual = "proteus", model.parallel_start = 6 }

[configs.A]                # matrix rows: a preset, features and overrides of their own
[configs.B]
features = ["parallel"]
```

Everything is checked with `pgolf.config.load_config` before any run starts; an error names the file
and the line of the offending entry. The environment is ignored: the file is the whole truth.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgolf.config import Config, load_config, tomllib
from pgolf.errors import ConfigError, UserError

DESIGNS = ("matrix", "one_factor", "leave_one_out", "forward")
BASELINE_NAME = "baseline"
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
_ABLATION_KEYS = {"name", "description", "preset", "seeds", "baseline", "design", "metric", "min_gain"}
_ENTRY_KEYS = {"description", "preset", "features", "set"}
_FEATURE_KEYS = {"description", "set"}

Override = tuple[str, Any]


class AblationError(UserError):
    """A malformed ablation file; the message names the file and line."""


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    overrides: tuple[Override, ...]


@dataclass(frozen=True)
class Configuration:
    """One row of the ablation: a preset, the features switched on, and its own overrides."""

    name: str
    description: str = ""
    preset: str | None = None
    features: tuple[str, ...] = ()
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class AblationSpec:
    path: Path
    name: str
    description: str
    preset: str | None
    seeds: tuple[int, ...]
    baseline: str
    design: str
    metric: str
    min_gain: float
    common: tuple[Override, ...]
    features: dict[str, Feature]
    declared: dict[str, Configuration]
    locator: _Locator = field(repr=False, compare=False)

    # ---- configurations of the design ---------------------------------------------------------
    def with_features(self, names: Iterable[str]) -> Configuration:
        """The configuration that switches on exactly `names` (canonical name, declared order)."""
        chosen = [f for f in self.features if f in set(names)]
        label = "+".join(chosen) or BASELINE_NAME
        if label in self.declared:
            return self.declared[label]
        description = "; ".join(self.features[f].description or f for f in chosen) or "no features"
        return Configuration(label, description, None, tuple(chosen))

    def configurations(self) -> list[Configuration]:
        """The rows to run, in order. `forward` starts with the baseline; later rounds are adaptive."""
        names = list(self.features)
        rows: list[Configuration] = []
        if self.design == "one_factor":
            rows = [self.with_features([]), *(self.with_features([f]) for f in names)]
        elif self.design == "leave_one_out":
            rows = [self.with_features(names), *(self.with_features([g for g in names if g != f]) for f in names)]
        elif self.design == "forward":
            rows = [self.with_features([])]
        seen = {row.name for row in rows}
        return rows + [c for c in self.declared.values() if c.name not in seen]

    def validation_rows(self) -> list[Configuration]:
        """Rows that cover every key of the file (forward selection may build any subset later)."""
        rows = self.configurations()
        if self.design == "forward":
            rows += [self.with_features([f]) for f in self.features] + [self.with_features(self.features)]
        return rows

    def max_runs(self) -> int:
        """Upper bound on runs: forward selection may try every remaining feature in every round."""
        n = len(self.features)
        rows = len(self.configurations())
        if self.design == "forward":
            rows += n * (n + 1) // 2
        return rows * len(self.seeds)

    # ---- resolving ----------------------------------------------------------------------------
    def overrides_of(self, row: Configuration) -> list[Override]:
        merged: dict[str, tuple[Any, str]] = {key: (value, "[common]") for key, value in self.common}
        for name in row.features:
            for key, value in self.features[name].overrides:
                previous = merged.get(key)
                if previous is not None and previous[1].startswith("[features.") and previous[0] != value:
                    line = self.locator.line(f"features.{name}", key)
                    raise AblationError(f"{self.path}:{line}: features '{name}' and {previous[1]} both set {key} "
                                        f"({value!r} vs {previous[0]!r}) in configuration '{row.name}': "
                                        "make the toggles independent")
                merged[key] = (value, f"[features.{name}]")
        for key, value in row.overrides:
            merged[key] = (value, f"[configs.{row.name}]")
        return [(key, value) for key, (value, _) in merged.items()]

    def resolve(self, row: Configuration, seed: int, runs_dir: Path) -> Config:
        """The full config of one run; errors name the file and line of the entry that caused them."""
        sets = [f"{key}={_as_text(self._file_relative(key, value))}" for key, value in self.overrides_of(row)]
        sets += [f"run.seed={seed}", f"run.run_id={run_id(row.name, seed)}", f"run.out_dir={runs_dir}"]
        preset = row.preset if row.preset is not None else self.preset
        try:
            return load_config(preset or None, overrides=sets, env={})
        except ConfigError as exc:
            line = self._line_of_error(row, str(exc))
            raise AblationError(f"{self.path}:{line}: configuration '{row.name}': {exc}") from None

    def _file_relative(self, key: str, value: Any) -> Any:
        """A relative quant policy file is found beside the ablation file, so shipped examples run from anywhere."""
        is_policy_file = key == "quant.policy" and isinstance(value, str) and value.endswith(".toml")
        if is_policy_file and not Path(value).is_absolute():
            return str(self.path.parent / value)
        return value

    def _line_of_error(self, row: Configuration, message: str) -> int:
        found = re.search(r"'([a-z_]+\.[a-z_0-9]+)'", message) or re.match(r"([a-z_]+\.[a-z_0-9]+):", message)
        key = found.group(1) if found else ("preset" if "preset" in message else None)
        tables = [f"configs.{row.name}", *(f"features.{f}" for f in row.features), "common", "ablation"]
        for table in tables:
            if key is not None and self.locator.has(table, key):
                return self.locator.line(table, key)
        return self.locator.line(tables[0] if row.name in self.declared else "ablation", None)

    def validate(self, runs_dir: Path) -> None:
        """Resolve every row once, so that no run starts from a file that has a bad entry; two rows that
        resolve to the same config (a toggle that changes nothing) are an error too."""
        seen: dict[str, str] = {}
        for row in self.validation_rows():
            table = self.resolve(row, self.seeds[0], runs_dir).to_dict()
            table["run"].pop("run_id")
            key = repr(table)
            if key in seen and seen[key] != row.name:
                table_name = f"configs.{row.name}" if row.name in self.declared else "ablation"
                raise AblationError(
                    f"{self.path}:{self.locator.line(table_name, None)}: configurations '{seen[key]}' and '{row.name}' "
                    "resolve to the same config: their features or overrides change nothing (a technique key "
                    "missing from a feature's set?)")
            seen.setdefault(key, row.name)


def run_id(config_name: str, seed: int) -> str:
    return f"{config_name}-s{seed}"


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---- parsing --------------------------------------------------------------------------------------
class _Locator:
    """Line numbers of tables and keys in the TOML text (tomllib reports no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _table_span(self, table: str) -> tuple[int, int] | None:
        parts = [re.escape(p) for p in table.split(".")]
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(f'"?{p}"?' for p in parts) + r"\s*\]")
        for start, text in enumerate(self.lines):
            if header.match(text):
                end = next((i for i in range(start + 1, len(self.lines)) if self.lines[i].lstrip().startswith("[")),
                           len(self.lines))
                return start, end
        return None

    def _find(self, table: str, key: str) -> int | None:
        span = self._table_span(table)
        if span is None:
            return None
        last = key.rsplit(".", 1)[-1]
        for pattern in (re.escape(key), rf"\b{re.escape(last)}\s*="):
            for i in range(span[0], span[1]):
                if re.search(pattern, self.lines[i].split("#", 1)[0]):
                    return i + 1
        return None

    def has(self, table: str, key: str) -> bool:
        return self._find(table, key) is not None

    def line(self, table: str, key: str | None) -> int:
        if key is not None and (found := self._find(table, key)) is not None:
            return found
        span = self._table_span(table)
        return span[0] + 1 if span is not None else 1


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[Override]:
    """`{train: {iterations: 5}}` and `{"train.iterations": 5}` both become `("train.iterations", 5)`."""
    items: list[Override] = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items += _flatten(value, dotted + ".")
        else:
            items.append((dotted, value))
    return items


def load_ablation(path: str | Path) -> AblationSpec:
    """Parse and check an ablation file (structure here; config keys in `AblationSpec.validate`)."""
    file = Path(path)
    if not file.is_file():
        raise AblationError(f"ablation file {file} does not exist: pass a TOML file (examples: `pgolf ablate --list`)")
    text = file.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AblationError(f"{file}: not valid TOML ({exc}): fix the syntax") from None
    return _Parser(file, data, _Locator(text)).spec()


@dataclass
class _Parser:
    path: Path
    data: dict[str, Any]
    locator: _Locator

    def fail(self, table: str, key: str | None, message: str) -> AblationError:
        return AblationError(f"{self.path}:{self.locator.line(table, key)}: {message}")

    def _check_keys(self, table: str, entries: Mapping[str, Any], allowed: set[str]) -> None:
        for key in entries:
            if key not in allowed:
                raise self.fail(table, key,
                                f"unknown entry '{key}' in [{table}]: allowed are {', '.join(sorted(allowed))}")

    def _overrides(self, table: str, value: Any) -> tuple[Override, ...]:
        if not isinstance(value, Mapping):
            raise self.fail(table, "set", f"[{table}] set must be a table of section.key = value")
        items = _flatten(value)
        for key, item in items:
            if isinstance(item, (list, dict)):
                raise self.fail(table, key, f"{key} in [{table}] must be a single value, got {item!r}")
        return tuple(items)

    def _text(self, table: str, entries: Mapping[str, Any], key: str, default: str = "") -> str:
        value = entries.get(key, default)
        if not isinstance(value, str):
            raise self.fail(table, key, f"{key} in [{table}] must be a string, got {value!r}")
        return value

    def _seeds(self, head: Mapping[str, Any]) -> tuple[int, ...]:
        seeds = head.get("seeds")
        if seeds is None:
            raise self.fail("ablation", None, "[ablation] needs seeds = [..] (one or more integers)")
        if not isinstance(seeds, list) or not seeds:
            raise self.fail("ablation", "seeds",
                            "seeds is empty: list at least one integer seed, e.g. seeds = [42, 1337]")
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise self.fail("ablation", "seeds", f"seeds must be integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise self.fail("ablation", "seeds", f"seeds repeat a value ({seeds!r}): each seed once")
        return tuple(seeds)

    def _features(self) -> dict[str, Feature]:
        features: dict[str, Feature] = {}
        for name, entries in self.data.get("features", {}).items():
            table = f"features.{name}"
            if not isinstance(entries, Mapping):
                raise self.fail(table, None, f"[{table}] must be a table")
            self._check_keys(table, entries, _FEATURE_KEYS)
            self._check_name(table, name)
            features[name] = Feature(name, self._text(table, entries, "description"),
                                     self._overrides(table, entries.get("set", {})))
        return features

    def _check_name(self, table: str, name: str) -> None:
        if not _NAME.match(name):
            raise self.fail(table, None, f"name '{name}' may use only letters, digits and _ . + -")

    def _configs(self, features: Mapping[str, Feature]) -> dict[str, Configuration]:
        configs: dict[str, Configuration] = {}
        for name, entries in self.data.get("configs", {}).items():
            table = f"configs.{name}"
            if not isinstance(entries, Mapping):
                raise self.fail(table, None, f"[{table}] must be a table")
            self._check_keys(table, entries, _ENTRY_KEYS)
            self._check_name(table, name)
            chosen = entries.get("features", [])
            if not isinstance(chosen, list) or not all(isinstance(f, str) for f in chosen):
                raise self.fail(table, "features", f"features of [{table}] must be a list of feature names")
            for feature in chosen:
                if feature not in features:
                    raise self.fail(table, "features", f"configuration '{name}' names unknown feature '{feature}': "
                                    f"declared features are {', '.join(features) or 'none'}")
            preset = entries.get("preset")
            if preset is not None and not isinstance(preset, str):
                raise self.fail(table, "preset", f"preset of [{table}] must be a string")
            configs[name] = Configuration(name, self._text(table, entries, "description"), preset, tuple(chosen),
                                          self._overrides(table, entries.get("set", {})))
        return configs

    def spec(self) -> AblationSpec:
        for section in self.data:
            if section not in ("ablation", "common", "features", "configs"):
                raise self.fail(section, None,
                                f"unknown table [{section}]: use [ablation], [common], [features.*], [configs.*]")
        head = self.data.get("ablation")
        if not isinstance(head, Mapping):
            raise self.fail("ablation", None, "the file needs an [ablation] table (seeds, design, baseline, ...)")
        self._check_keys("ablation", head, _ABLATION_KEYS)
        seeds = self._seeds(head)
        design = self._text("ablation", head, "design", "matrix")
        if design not in DESIGNS:
            raise self.fail("ablation", "design", f"design must be one of {', '.join(DESIGNS)}, got {design!r}")
        features = self._features()
        configs = self._configs(features)
        if design == "matrix" and not configs:
            raise self.fail("ablation", None, "a matrix design needs at least one [configs.<name>] table")
        if design != "matrix" and not features:
            raise self.fail("ablation", "design", f"design '{design}' needs at least one [features.<name>] table")
        default_baseline = BASELINE_NAME if design in ("one_factor", "forward") else (
            "+".join(features) if design == "leave_one_out" else next(iter(configs)))
        baseline = self._text("ablation", head, "baseline", default_baseline)
        preset = head.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise self.fail("ablation", "preset", "preset must be a string")
        min_gain = head.get("min_gain", 0.0)
        if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not math.isfinite(min_gain):
            raise self.fail("ablation", "min_gain", f"min_gain must be a number, got {min_gain!r}")
        common = self.data.get("common", {})
        spec = AblationSpec(
            path=self.path, name=self._text("ablation", head, "name", self.path.stem),
            description=self._text("ablation", head, "description"), preset=preset, seeds=seeds,
            baseline=baseline, design=design, metric=self._text("ablation", head, "metric", "val_bpb"),
            min_gain=float(min_gain), common=self._overrides("common", common), features=features,
            declared=configs, locator=self.locator)
        names = [row.name for row in spec.configurations()]
        if baseline not in names:
            raise self.fail("ablation", "baseline", f"baseline '{baseline}' is not a configuration of this file: "
                            f"choose one of {', '.join(names)}")
        return spec


def example_files() -> list[Path]:
    """The ablation files shipped with pgolf."""
    folder = Path(__file__).parent / "examples"
    return sorted(folder.glob("*.toml"))


def find_ablation_file(name: str | Path) -> Path:
    """A path as given, or the name of a shipped example (with or without `.toml`)."""
    path = Path(name)
    if path.is_file():
        return path
    for example in example_files():
        if example.stem == str(name).removesuffix(".toml"):
            return example
    return path
