"""Record checkpoints ↔ pgolf state dicts, both ways, for every record preset.

A record's `train_gpt.py` saves `final_model.pt` as its own `state_dict()`: its own names, sometimes
its Parallel-Muon shape banks (`qo_bank`, `kv_bank`, `mlp_up_bank`, `mlp_down_bank`: every layer's
matrix of one kind stacked along dim 0). A `RecordFormat` describes that layout for one preset as a
list of `Link`s, each joining one record tensor to one pgolf tensor (or to the ordered per-layer
slices of a bank). From it this package derives both conversions and the shape checks:

    to_pgolf(record_state, "pr635")  → a state dict `GPT(cfg).load_state_dict(..., strict=True)` accepts
    from_pgolf(pgolf_state, "pr635") → a state dict the record script's `GPT.load_state_dict` accepts

A checkpoint of another preset or shape fails with one `UserError` line naming the first mismatching
tensor and the registered preset whose layout it fits (`find_fitting_preset`).

Adding a record: write `interop/<record>.py` with a function `links(cfg: ModelConfig) -> list[Link]`
and `register(RecordFormat(preset=..., record=..., links=links))`, then add the module name to
`_FORMAT_MODULES` below. Unbanked checkpoints of a banked record (the record's own `_unbank_state_dict`
names) are accepted too: set `RecordFormat.unbanked` to the function giving those names.
"""

from __future__ import annotations

from pgolf.interop.convert import (
    checkpoint_to_pgolf,
    find_fitting_preset,
    from_pgolf,
    has_format,
    name_map,
    record_shapes,
    to_pgolf,
)
from pgolf.interop.registry import Link, RecordFormat, formats, get_format, register

_FORMAT_MODULES = ("baseline", "pr635", "pr1291", "proteus_v16", "proteus_ablation", "sota")


def _load_formats() -> None:
    import importlib

    for name in _FORMAT_MODULES:
        importlib.import_module(f"pgolf.interop.{name}")


_load_formats()

__all__ = [
    "Link",
    "RecordFormat",
    "checkpoint_to_pgolf",
    "find_fitting_preset",
    "formats",
    "from_pgolf",
    "get_format",
    "has_format",
    "name_map",
    "record_shapes",
    "register",
    "to_pgolf",
]
