"""End of training with weight averaging: score the live and every averaged set, keep the applied one.

Everything downstream (packing, the pre-quant and quantized scores) then uses the applied average,
EMA when it is on, else SWA, as the records do. The live weights' score is kept as a diagnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from pgolf.evaluate.bpb import BPBResult
from pgolf.optim.averaging import Averagers
from pgolf.train.metrics import RunLogger


@dataclass
class AveragedOutcome:
    applied: str  # "ema", "swa", or "live" (no average held weights)
    scores: dict[str, BPBResult] = field(default_factory=dict)  # "live" and each average

    def summary(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"averaged_weights": self.applied}
        for name, result in self.scores.items():
            out[f"{name}_val_loss"] = result.val_loss
            out[f"{name}_val_bpb"] = result.val_bpb
        return out


def apply_averaged_weights(model: nn.Module, averagers: Averagers, evaluate: Callable[[], BPBResult],
                           logger: RunLogger) -> AveragedOutcome:
    """Score the live weights and each average; leave the model holding the applied average."""
    averages = averagers.averages()
    if not averages:
        logger.log("averaging: no average holds weights (SWA window never opened); keeping the live weights")
        return AveragedOutcome("live")
    outcome = AveragedOutcome("ema" if "ema" in averages else "swa")
    outcome.scores["live"] = evaluate()
    for name in sorted(averages, key=lambda n: n == outcome.applied):  # the applied one last: it stays loaded
        model.load_state_dict(averages[name], strict=True)
        outcome.scores[name] = evaluate()
    for name, result in outcome.scores.items():
        logger.log(f"averaging:{name} val_loss:{result.val_loss:.8f} val_bpb:{result.val_bpb:.8f}"
                   + (" (applied)" if name == outcome.applied else ""))
    return outcome
