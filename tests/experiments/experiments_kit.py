"""Helpers of the experiments tests."""

from __future__ import annotations

import tomli_w

from testkit import tiny_overrides


def ablation_toml(small_dataset, **extra: object) -> str:
    """An ablation file over the tiny test model: one feature (a third layer), checkpoints every 2 steps."""
    common = dict(item.split("=", 1) for item in tiny_overrides(small_dataset, **{"train.checkpoint_every": 2,
                                                                                   "train.threads": 1}))
    table = {"ablation": {"seeds": [1, 2], "design": "one_factor", **extra},
             "common": common,
             "features": {"deeper": {"description": "3 layers", "set": {"model.num_layers": 3}}}}
    return tomli_w.dumps(table)
