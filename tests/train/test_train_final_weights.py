"""`train.final_weights`: which of the live, EMA and SWA weights a run keeps, and that it says so."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.evaluate.bpb import BPBResult
from pgolf.optim.averaging import Averagers
from pgolf.train.averaged_weights import apply_averaged_weights
from pgolf.train.metrics import RunLogger


def _trained(live: float, history: list[float]) -> tuple[nn.Linear, Averagers]:
    """A 1-weight model whose EMA (decay 0.5) and SWA (every step) saw `history`, left holding `live`."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()  # the EMA starts from the weights it is built on
    averagers = Averagers.for_model(model, ema_decay=0.5, ema_start_step=0, swa_every=1, swa_max_lr_scale=1.0)
    for step, value in enumerate(history, start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        averagers.update(model, step, lr_scale=0.5)
    with torch.no_grad():
        model.weight.fill_(live)
    return model, averagers


def _final(model: nn.Linear, averagers: Averagers, tmp_path: Path, choice: str, target: float) -> tuple[str, float]:
    """(applied candidate, weight the model is left with), scoring each candidate by |w − target| as val_bpb."""
    def evaluate() -> BPBResult:
        bpb = abs(model.weight.item() - target)
        return BPBResult(bpb, bpb, 1, 1, bpb)

    logger = RunLogger(tmp_path, console=io.StringIO())
    outcome = apply_averaged_weights(model, averagers, evaluate, logger, choice)
    logger.close()
    assert f"final_weights:{outcome.applied} ({choice})" in (tmp_path / "train.log").read_text()
    return outcome.applied, model.weight.item()


# from 0, history 0, 4, 8 → EMA 0.5·(0.5·0 + 0.5·4) + 0.5·8 = 5, SWA 4; live 9
@pytest.mark.parametrize(("choice", "target", "applied", "weight"), [
    ("best_val", 9.0, "live", 9.0), ("best_val", 5.2, "ema", 5.0), ("best_val", 3.0, "swa", 4.0),
    ("best_val", 7.0, "live", 9.0),  # live and EMA tie at 2: PR #635's strict `<` keeps the earlier, raw
    ("average", 9.0, "ema", 5.0), ("live", 0.0, "live", 9.0),
])
def test_choice_picks_the_candidate_and_loads_it(tmp_path: Path, choice: str, target: float, applied: str,
                                                 weight: float) -> None:
    model, averagers = _trained(9.0, [0.0, 4.0, 8.0])
    assert _final(model, averagers, tmp_path, choice, target) == (applied, weight)


def test_best_val_needs_the_sliding_stage() -> None:
    with pytest.raises(UserError, match=r"train\.final_weights"):
        load_config(env={}, overrides=["train.final_weights=best_val", "eval.stride=0"])
    assert load_config("pr635", env={}).train.final_weights == "best_val"
