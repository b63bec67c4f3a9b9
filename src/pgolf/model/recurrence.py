"""Depth recurrence: the virtual layer order that runs a range of physical blocks more than once,
grouped into the U-Net stages that push and pop skips.

Two published forms (`model.recur_form`):

* ``segment`` (#1204, the SOTA #1855): the range runs again as one segment after its first pass; the
  virtual order is split in half for the U-Net, so there is one skip per virtual encoder layer.
* ``inplace`` (PROTEUS #1289): each layer of the range runs again right after itself; the U-Net halves
  and the skips stay those of the physical layers (a layer's repeats share one skip).

A stage is a list of (physical layer, pass) run back to back: the encoder pushes one skip after each
stage, the decoder pops one before each. `pass` counts the earlier runs of the same layer (0 = first);
untied recurrence MLPs are chosen by it. The structure lives here and in `GPT`; when it switches on is
the training schedule's business (`train.recurrence_start_step` / `train.recurrence_start_frac`).
Imported only by models with `model.recur_loops` > 0, so only their runs ship it.
"""

from __future__ import annotations

from pgolf.model.blocks import Run, Stages


def virtual_layers(num_layers: int, start: int, end: int, loops: int) -> list[int]:
    """Physical block index of every virtual layer of the segment form: start..end run 1 + loops times.

    SOTA (11 layers, 3..5, loops 2): [0,1,2, 3,4,5, 3,4,5, 3,4,5, 6,7,8,9,10] (17 virtual layers).
    """
    return list(range(end + 1)) + list(range(start, end + 1)) * loops + list(range(end + 1, num_layers))


def _numbered(order: list[int]) -> list[Run]:
    seen: dict[int, int] = {}
    runs = []
    for layer in order:
        runs.append((layer, seen.get(layer, 0)))
        seen[layer] = seen.get(layer, 0) + 1
    return runs


def layer_stages(num_layers: int, unet: bool, start: int = 0, end: int = 0, loops: int = 0,
                 form: str = "segment") -> Stages:
    """(encoder stages, decoder stages); without a U-Net every stage is in the decoder and no skip is made."""
    if form == "inplace":
        stages = [[(i, k) for k in range(1 + (loops if start <= i <= end else 0))] for i in range(num_layers)]
        half = num_layers // 2 if unet else 0
    else:
        order = virtual_layers(num_layers, start, end, loops) if loops > 0 else list(range(num_layers))
        stages = [[run] for run in _numbered(order)]
        half = len(stages) // 2 if unet else 0
    return stages[:half], stages[half:]


def repeated_runs(num_layers: int, start: int, end: int, loops: int) -> list[Run]:
    """Every (layer, pass ≥ 1) of the recurrence: the runs that get their own MLP when MLPs are untied."""
    return [(i, k) for i in range(start, end + 1) for k in range(1, loops + 1)] if loops > 0 else []
