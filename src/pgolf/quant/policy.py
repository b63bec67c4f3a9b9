"""Mixed-precision policies as data: which tensor is stored in which format.

A policy is a TOML file (shipped ones live in `pgolf/quant/policies/`) with an ordered list of rules;
the first rule that matches a tensor decides its format::

    description = "int6 matrices, int8 embedding"
    [[rule]]
    match = ["*attn_scale", "*mlp_scale"]   # fnmatch globs on the state-dict name (string or list)
    format = "fp32"
    [[rule]]
    match = "blocks.*.mlp.*"
    layers = "3:-3"                         # optional: python slice over the block indices, or a list
    format = "int5"                         # int4..int8 | fp16 | bf16 | fp32 | raw
    clip = "search"                         # int formats: max | search | lite | matrix | baseline | sd:K
                                            # (default search; see pgolf.quant.intk)
    gptq = false                            # int formats: round to nearest even when quant.gptq is on
    [[rule]]
    match = "*"
    max_numel = 65536                       # optional size bounds: min_numel / max_numel
    format = "fp16"

Every float tensor must be matched by some rule (else `ConfigError` naming it); a rule that matches
nothing is reported as a warning naming its pattern. Non-float tensors are always stored raw.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import pgolf
from pgolf.errors import ConfigError
from pgolf.quant.intk import MAX_BITS, MIN_BITS, ClipRule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

FLOAT_FORMATS: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
INT_FORMATS: dict[str, int] = {f"int{b}": b for b in range(MIN_BITS, MAX_BITS + 1)}
RAW = "raw"
_RULE_KEYS = {"match", "layers", "min_numel", "max_numel", "format", "clip", "gptq"}
_LAYER = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


@dataclass(frozen=True)
class TensorFormat:
    """How one tensor is stored: int-k with a clip rule, a float dtype, or raw (unchanged)."""

    name: str  # "int6", "fp16", "raw", ...
    clip: ClipRule | None = None
    gptq: bool = True  # int-k: GPTQ may compute the codes (when quant.gptq is on); False = always round to nearest

    @property
    def bits(self) -> int | None:
        return INT_FORMATS.get(self.name)

    @property
    def float_dtype(self) -> torch.dtype | None:
        return FLOAT_FORMATS.get(self.name)

    def with_bits(self, bits: int) -> TensorFormat:
        return TensorFormat(f"int{bits}", self.clip, self.gptq)

    def __str__(self) -> str:
        if self.clip is None:
            return self.name
        return f"{self.name}/{self.clip}" + ("" if self.gptq else "/rtn")


@dataclass(frozen=True)
class Rule:
    index: int
    patterns: tuple[str, ...]
    fmt: TensorFormat
    layers: str | tuple[int, ...] | None = None
    min_numel: int = 0
    max_numel: int | None = None

    def describe(self) -> str:
        where = f" layers {self.layers}" if self.layers is not None else ""
        return f"rule {self.index} (match {', '.join(self.patterns)}{where} → {self.fmt})"

    def matches(self, name: str, numel: int, num_layers: int) -> bool:
        if not any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
            return False
        if numel < self.min_numel or (self.max_numel is not None and numel > self.max_numel):
            return False
        if self.layers is None:
            return True
        found = _LAYER.search(name)
        return found is not None and int(found.group(1)) in _layer_set(self.layers, num_layers)


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    rules: tuple[Rule, ...]
    source: dict[str, Any] = field(default_factory=dict)  # the TOML table, recorded in the artifact


@dataclass(frozen=True)
class Assignment:
    """The format of every tensor, plus warnings for rules that matched nothing."""

    formats: dict[str, TensorFormat]
    warnings: tuple[str, ...]


def _layer_set(spec: str | tuple[int, ...], num_layers: int) -> set[int]:
    indices = range(num_layers)
    if isinstance(spec, str):
        start, _, stop = spec.partition(":")
        return set(indices[slice(int(start) if start else None, int(stop) if stop else None)])
    return {indices[i] for i in spec if -num_layers <= i < num_layers}


def _parse_layers(value: Any, where: str) -> str | tuple[int, ...]:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d*:-?\d*", value.strip()):
        return value.strip()
    raise ConfigError(f"{where}: layers must be a slice like \"3:-3\" or a list of block indices, got {value!r}")


def _parse_rule(index: int, table: Any, where: str) -> Rule:
    where = f"{where} rule {index}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: each [[rule]] must be a table")
    unknown = set(table) - _RULE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    match = table.get("match")
    patterns = (match,) if isinstance(match, str) else tuple(match) if isinstance(match, list) else ()
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ConfigError(f"{where}: 'match' must be a glob or a list of globs")
    fmt_name = table.get("format")
    if fmt_name not in (*INT_FORMATS, *FLOAT_FORMATS, RAW):
        raise ConfigError(f"{where}: format {fmt_name!r} unknown; use one of "
                          f"{', '.join((*INT_FORMATS, *FLOAT_FORMATS, RAW))}")
    clip = None
    if fmt_name in INT_FORMATS:
        try:
            clip = ClipRule.parse(table.get("clip", "search"))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    elif {"clip", "gptq"} & set(table):
        raise ConfigError(f"{where}: 'clip' and 'gptq' only apply to int formats, not {fmt_name}")
    gptq = table.get("gptq", True)
    if not isinstance(gptq, bool):
        raise ConfigError(f"{where}: gptq must be true or false")
    bounds = {key: table.get(key) for key in ("min_numel", "max_numel")}
    for key, value in bounds.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{where}: {key} must be a non-negative integer")
    layers = _parse_layers(table["layers"], where) if "layers" in table else None
    return Rule(index, patterns, TensorFormat(fmt_name, clip, gptq), layers, bounds["min_numel"] or 0,
                bounds["max_numel"])


def parse_policy(table: Mapping[str, Any], name: str) -> Policy:
    """A `Policy` from its TOML table; `ConfigError` naming the rule and key on any mistake."""
    where = f"quant policy {name!r}"
    unknown = set(table) - {"description", "rule"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown)}; allowed: description, [[rule]]")
    rules = table.get("rule")
    if not isinstance(rules, list) or not rules:
        raise ConfigError(f"{where}: needs at least one [[rule]]")
    parsed = tuple(_parse_rule(i, r, where) for i, r in enumerate(rules))
    return Policy(name, str(table.get("description", "")), parsed, dict(table))


POLICY_FOLDER = "quant/policies"


def policy_names() -> list[str]:
    folder = resources.files("pgolf") / POLICY_FOLDER
    files = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    files += [key.rpartition("/")[2] for key in pgolf.SHIPPED_DATA if key.startswith(POLICY_FOLDER + "/")]
    return sorted({f[: -len(".toml")] for f in files if f.endswith(".toml")})


def shipped_policy_text(name: str) -> str | None:
    """The TOML of the shipped policy `name` (from a single-file export's data first), None if there is none."""
    key = f"{POLICY_FOLDER}/{name}.toml"
    if key in pgolf.SHIPPED_DATA:
        return pgolf.SHIPPED_DATA[key]
    path = resources.files("pgolf") / key
    return path.read_text(encoding="utf-8") if path.is_file() else None


def load_policy(spec: str) -> Policy:
    """A shipped policy by name, or a policy TOML file by path."""
    shipped = shipped_policy_text(spec)
    if shipped is not None:
        text, name = shipped, spec
    elif spec.endswith(".toml") and Path(spec).is_file():
        text, name = Path(spec).read_text(encoding="utf-8"), Path(spec).stem
    else:
        raise ConfigError(f"quant.policy: {spec!r} is neither a shipped policy ({', '.join(policy_names())}) "
                          "nor an existing .toml file")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"quant.policy: {spec} is not valid TOML ({exc}): fix the syntax") from None
    return parse_policy(table, name)


def num_layers_of(names: list[str]) -> int:
    """Blocks in a state dict: 1 + the largest `blocks.<i>.` index (0 without blocks)."""
    found = [int(m.group(1)) for n in names if (m := _LAYER.search(n))]
    return max(found) + 1 if found else 0


def assign_formats(policy: Policy, state_dict: Mapping[str, Tensor]) -> Assignment:
    """Apply the first matching rule to every tensor; error on unassigned or unfit tensors."""
    layers = num_layers_of(list(state_dict))
    formats: dict[str, TensorFormat] = {}
    used: set[int] = set()
    unassigned: list[str] = []
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point():
            formats[name] = TensorFormat(RAW)
            continue
        rule = next((r for r in policy.rules if r.matches(name, tensor.numel(), layers)), None)
        if rule is None:
            unassigned.append(name)
            continue
        if rule.fmt.bits is not None and tensor.ndim < 2:
            raise ConfigError(f"quant policy {policy.name!r}: {rule.describe()} gives {rule.fmt.name} to "
                              f"{name} of shape {tuple(tensor.shape)}, but int formats need a matrix; put a "
                              "float rule (e.g. max_numel) for it first")
        used.add(rule.index)
        formats[name] = rule.fmt
    if unassigned:
        shown = ", ".join(unassigned[:5]) + (f" and {len(unassigned) - 5} more" if len(unassigned) > 5 else "")
        raise ConfigError(f"quant policy {policy.name!r} leaves {len(unassigned)} tensor(s) unassigned: {shown}; "
                          "add a rule that matches them (e.g. a final match = \"*\")")
    warnings = tuple(f"quant policy {policy.name!r}: {r.describe()} matched no tensor "
                     "(or earlier rules took all its matches)"
                     for r in policy.rules if r.index not in used)
    return Assignment(formats, warnings)
