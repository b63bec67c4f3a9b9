"""The official baseline: pgolf's parameter names and shapes are the script's own (no banks)."""

from __future__ import annotations

from pgolf.config import ModelConfig
from pgolf.interop.convert import pgolf_shapes
from pgolf.interop.registry import Link, RecordFormat, register, same


def links(cfg: ModelConfig) -> list[Link]:
    return same(*pgolf_shapes(cfg))


FORMAT = register(RecordFormat(preset="baseline", record="baseline", links=links))
