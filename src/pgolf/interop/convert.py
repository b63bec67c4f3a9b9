"""Both conversions and the shape checks, derived from a preset's `RecordFormat`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from torch import Tensor

from pgolf.config import ModelConfig, load_config
from pgolf.errors import UserError
from pgolf.interop.registry import Link, formats, get_format

Shapes = dict[str, tuple[int, ...]]
StateDict = dict[str, Tensor]


def preset_model_config(preset: str) -> ModelConfig:
    return load_config(preset, env={}).model


_SHAPES: dict[str, Shapes] = {}


def pgolf_shapes(cfg: ModelConfig) -> Shapes:
    """Every tensor shape of `GPT(cfg)`'s state dict, built on the meta device (no memory), cached per config."""
    from pgolf.model.gpt import GPT

    key = repr(cfg)
    if key not in _SHAPES:
        with torch.device("meta"):
            model = GPT(dataclasses.replace(cfg, ortho_init=False))
        _SHAPES[key] = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    return dict(_SHAPES[key])


def record_shapes(links: list[Link], shapes: Shapes) -> Shapes:
    """The record-side shape of every link, given the pgolf shapes."""
    out: Shapes = {}
    for link in links:
        if link.record_shape is not None:
            out[link.record] = link.record_shape
        elif link.banked:
            out[link.record] = (len(link.pgolf), *shapes[link.pgolf[0]])
        else:
            out[link.record] = shapes[link.pgolf[0]]
    return out


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def first_mismatch(state: Mapping[str, Tensor], expected: Shapes) -> str | None:
    """A description of the first tensor (in `expected` order) that is missing or misshapen, or of an extra one."""
    for name, shape in expected.items():
        if name not in state:
            return f"tensor {name!r} {_fmt(shape)} is missing"
        if tuple(state[name].shape) != shape:
            return f"tensor {name!r} has shape {_fmt(tuple(state[name].shape))}, expected {_fmt(shape)}"
    extra = [name for name in state if name not in expected]
    if extra:
        return f"tensor {extra[0]!r} is not part of the layout"
    return None


def find_fitting_preset(state: Mapping[str, Tensor], side: str = "record") -> str | None:
    """The first registered preset whose record (or pgolf, `side="pgolf"`) layout fits `state` exactly."""
    for fmt in formats():
        cfg = preset_model_config(fmt.preset)
        shapes = pgolf_shapes(cfg)
        if side == "pgolf":
            if first_mismatch(state, shapes) is None:
                return fmt.preset
            continue
        if any(first_mismatch(state, record_shapes(links, shapes)) is None for links in fmt.layouts(cfg)):
            return fmt.preset
    return None


def _missing_in_model(links: list[Link], shapes: Shapes) -> str | None:
    """The first pgolf tensor of the layout that the configured model lacks (a model of another preset)."""
    for link in links:
        for name in link.pgolf:
            if name not in shapes:
                return f"tensor {name!r} is missing"
    return None


def _refuse(what: str, preset: str, problem: str, state: Mapping[str, Tensor], side: str) -> UserError:
    fit = find_fitting_preset(state, side)
    hint = (f"it fits preset {fit!r}: pass --preset {fit}" if fit and fit != preset
            else "no registered preset fits it: pass the weights of a record run with its own preset")
    return UserError(f"{what} does not fit preset {preset!r} ({problem}); {hint}")


def to_pgolf(state: Mapping[str, Tensor], preset: str, cfg: ModelConfig | None = None,
             what: str = "the record checkpoint") -> StateDict:
    """A record script's state dict (banked or unbanked) as pgolf's, for `GPT(cfg)` with `strict=True`."""
    fmt = get_format(preset)
    cfg = cfg or preset_model_config(preset)
    shapes = pgolf_shapes(cfg)
    layouts = fmt.layouts(cfg)
    missing = _missing_in_model(layouts[0], shapes)
    if missing is not None:
        raise UserError(f"the configured model is not of preset {preset!r} ({missing}): drop the --set/--config "
                        "overrides that change its techniques")
    chosen = next((links for links in layouts if first_mismatch(state, record_shapes(links, shapes)) is None), None)
    if chosen is None:
        problem = first_mismatch(state, record_shapes(layouts[0], shapes))
        assert problem is not None
        raise _refuse(what, preset, problem, state, "record")
    out: StateDict = {}
    for link in chosen:
        tensor = state[link.record]
        if link.banked:
            for row, name in zip(link.bank_rows, link.pgolf, strict=True):
                out[name] = tensor[row].clone()
        else:
            out[link.pgolf[0]] = tensor.reshape(shapes[link.pgolf[0]]).clone()
    return out


def from_pgolf(state: Mapping[str, Tensor], preset: str, cfg: ModelConfig | None = None, banked: bool = True,
               what: str = "the pgolf weights") -> StateDict:
    """pgolf's state dict in the record script's layout (its banks unless `banked=False`)."""
    fmt = get_format(preset)
    cfg = cfg or preset_model_config(preset)
    shapes = pgolf_shapes(cfg)
    links = fmt.links(cfg) if banked or fmt.unbanked is None else fmt.unbanked(cfg)
    problem = _missing_in_model(links, shapes) or first_mismatch(state, shapes)
    if problem is not None:
        raise _refuse(what, preset, problem, state, "pgolf")
    out: StateDict = {}
    for link in links:
        if link.rows is not None:
            out[link.record] = _fill_rows(link, [state[name] for name in link.pgolf])
        elif link.banked:
            out[link.record] = torch.stack([state[name] for name in link.pgolf]).contiguous()
        else:
            target = record_shapes([link], shapes)[link.record]
            out[link.record] = state[link.pgolf[0]].reshape(target).clone()
    return out


def _fill_rows(link: Link, tensors: list[Tensor]) -> Tensor:
    """The record tensor of a `rows` link: `link.fill` everywhere, the pgolf tensors in their rows."""
    assert link.record_shape is not None and link.rows is not None
    dtype = tensors[0].dtype if tensors else torch.float32
    out = torch.full(link.record_shape, link.fill, dtype=dtype)
    for row, tensor in zip(link.rows, tensors, strict=True):
        out[row] = tensor
    return out


def unheld_rows_at_init(state: Mapping[str, Tensor], links: list[Link]) -> StateDict:
    """`state` with the record rows that pgolf does not hold (see `Link.rows`) at the record's init, as an export
    writes them: the state whose record → pgolf → record round trip is exact."""
    out = dict(state)
    for link in links:
        if link.rows is not None:
            rows = list(link.rows)
            out[link.record] = _fill_rows(link, [state[link.record][row] for row in rows])
    return out


def unheld_elements(links: list[Link]) -> int:
    """How many record elements pgolf does not hold (rows of `Link.rows` links that no forward reads)."""
    total = 0
    for link in links:
        if link.rows is not None and link.record_shape is not None:
            per_row = math.prod(link.record_shape[1:])
            total += per_row * (link.record_shape[0] - len(link.rows))
    return total


def has_format(preset: str | None) -> bool:
    return preset is not None and any(fmt.preset == preset for fmt in formats())


def checkpoint_to_pgolf(state: Mapping[str, Tensor], preset: str | None, cfg: ModelConfig, what: str) -> StateDict:
    """A record script's `final_model.pt` content as pgolf weights for `cfg` when `preset` has a record format;
    other presets' checkpoints are pgolf-named already (the official baseline's) and pass through."""
    return to_pgolf(state, preset, cfg, what) if preset is not None and has_format(preset) else dict(state)


def name_map(preset: str, cfg: ModelConfig | None = None, unbanked: bool = True) -> dict[str, str]:
    """Record name → pgolf name of every one-to-one tensor (bank slices under their unbanked names)."""
    fmt = get_format(preset)
    cfg = cfg or preset_model_config(preset)
    links = fmt.unbanked(cfg) if unbanked and fmt.unbanked is not None else fmt.links(cfg)
    return {link.record: link.pgolf[0] for link in links if not link.banked}
