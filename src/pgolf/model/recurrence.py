"""Depth recurrence: the virtual layer order that runs a range of physical blocks more than once.

The structure lives here and in `GPT`; when it switches on is the training schedule's business
(`train.recurrence_start_step` / `train.recurrence_start_frac`, applied through `GPT.set_recurrence_active`).
"""

from __future__ import annotations


def virtual_layers(num_layers: int, start: int, end: int, loops: int) -> list[int]:
    """Physical block index of every virtual layer: layers start..end (inclusive) run 1 + loops times.

    SOTA (11 layers, 3..5, loops 2): [0,1,2, 3,4,5, 3,4,5, 3,4,5, 6,7,8,9,10] (17 virtual layers).
    """
    return list(range(end + 1)) + list(range(start, end + 1)) * loops + list(range(end + 1, num_layers))


def split_encoder_decoder(order: list[int], unet: bool) -> tuple[list[int], list[int]]:
    """U-Net halves over the virtual order: the first len//2 layers push skips, the rest pop them."""
    half = len(order) // 2 if unet else 0
    return order[:half], order[half:]
