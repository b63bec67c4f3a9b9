"""The per-preset record layouts: `Link`s between record and pgolf tensor names, and their registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgolf.config import ModelConfig
from pgolf.errors import UserError


@dataclass(frozen=True)
class Link:
    """One record tensor ↔ pgolf tensor(s).

    `pgolf` holds one name for a plain tensor, or the pgolf names of a bank's slices along dim 0 in bank
    order. `record_shape` is set where the record stores the same values in another shape (a (1,) scale
    that pgolf keeps as a 0-d tensor).
    """

    record: str
    pgolf: tuple[str, ...]
    record_shape: tuple[int, ...] | None = None

    @property
    def banked(self) -> bool:
        return len(self.pgolf) > 1


def same(*names: str) -> list[Link]:
    """Tensors whose names and shapes agree."""
    return [Link(name, (name,)) for name in names]


def renamed(record: str, pgolf: str, record_shape: tuple[int, ...] | None = None) -> Link:
    return Link(record, (pgolf,), record_shape)


def bank(record: str, pgolf_names: list[str]) -> Link:
    return Link(record, tuple(pgolf_names))


Links = Callable[[ModelConfig], list[Link]]


@dataclass(frozen=True)
class RecordFormat:
    """A record's `final_model.pt` layout for one pgolf preset.

    `links` gives the layout of the record's own `state_dict()`; `unbanked`, for a banked record, the
    layout after the record's own unbanking (every bank slice under its per-layer name).
    """

    preset: str
    record: str  # folder under shared/records holding the record's train_gpt.py
    links: Links
    unbanked: Links | None = None

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
