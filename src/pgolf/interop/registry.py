"""The per-preset record layouts: `Link`s between record and pgolf tensor names, and their registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from pgolf.config import ModelConfig
from pgolf.errors import UserError


@dataclass(frozen=True)
class Link:
    """One record tensor ↔ pgolf tensor(s).

    `pgolf` holds one name for a plain tensor, or the pgolf names of a bank's slices along dim 0 in bank
    order. `record_shape` is set where the record stores the same values in another shape (a (1,) scale
    that pgolf keeps as a 0-d tensor). `rows` is set for a record tensor with one row per layer of which
    pgolf keeps only some (#1855's lane λ, allocated for every layer, read by the parallel ones): the record
    rows of the `pgolf` names, in order; `record_shape` is then the record's full shape and `fill` the value
    of its other rows on export (the record's init; no forward reads them, so they are dropped on import).
    """

    record: str
    pgolf: tuple[str, ...]
    record_shape: tuple[int, ...] | None = None
    rows: tuple[int, ...] | None = None
    fill: float = 0.0

    @property
    def banked(self) -> bool:
        return len(self.pgolf) > 1 or self.rows is not None

    @property
    def bank_rows(self) -> tuple[int, ...]:
        """The record row of each pgolf name."""
        return self.rows if self.rows is not None else tuple(range(len(self.pgolf)))


def same(*names: str) -> list[Link]:
    """Tensors whose names and shapes agree."""
    return [Link(name, (name,)) for name in names]


def renamed(record: str, pgolf: str, record_shape: tuple[int, ...] | None = None) -> Link:
    return Link(record, (pgolf,), record_shape)


def bank(record: str, pgolf_names: list[str]) -> Link:
    return Link(record, tuple(pgolf_names))


def some_rows(record: str, pgolf_names: list[str], rows: list[int], record_shape: tuple[int, ...],
              fill: float) -> Link:
    """A record tensor of `record_shape` whose rows `rows` are the pgolf tensors `pgolf_names` (see `Link`)."""
    return Link(record, tuple(pgolf_names), record_shape, tuple(rows), fill)


Links = Callable[[ModelConfig], list[Link]]


@dataclass(frozen=True)
class RecordFormat:
    """A record's `final_model.pt` layout for one pgolf preset.

    `links` gives the layout of the record's own `state_dict()`; `unbanked`, for a banked record, the
    layout after the record's own unbanking (every bank slice under its per-layer name); `build_record`
    constructs the record script's model from its own `Hyperparameters` (parity tests, `pgolf bench parity`),
    with `script` imported under `env`: the environment of the record's run where it differs from the script's
    defaults.
    """

    preset: str
    record: str  # folder under shared/records holding the record's train_gpt.py
    links: Links
    unbanked: Links | None = None
    build_record: Callable[[ModuleType], nn.Module] | None = None  # the imported script → its GPT at full shape
    env: Mapping[str, str] = field(default_factory=dict)
    script: str = "train_gpt.py"
    # the record's extra forward arguments for a (1, seq) row of tokens (#1855: its varlen document boundaries)
    record_inputs: Callable[[ModuleType, Tensor], dict[str, Any]] | None = None

    def layouts(self, cfg: ModelConfig) -> list[list[Link]]:
        return [self.links(cfg)] + ([self.unbanked(cfg)] if self.unbanked is not None else [])


_FORMATS: dict[str, RecordFormat] = {}


def register(fmt: RecordFormat) -> RecordFormat:
    _FORMATS[fmt.preset] = fmt
    return fmt


def formats() -> list[RecordFormat]:
    return list(_FORMATS.values())


def get_format(preset: str) -> RecordFormat:
    try:
        return _FORMATS[preset]
    except KeyError:
        raise UserError(f"preset {preset!r} has no record checkpoint format: choose one of "
                        f"{', '.join(sorted(_FORMATS))}") from None


def layer_names(cfg: ModelConfig, template: str) -> list[str]:
    """`template.format(i)` for every physical layer."""
    return [template.format(i) for i in range(cfg.num_layers)]
