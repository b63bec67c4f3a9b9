"""End of training with weight averaging: score the live and every averaged set, keep the final one.

`train.final_weights` picks it: "average" (EMA when it is on, else SWA, as most records do), "live" (the
weights the optimizer left), or "best_val" (PR #635: the lowest val_bpb of live, EMA and SWA, in that order,
a tie keeping the earlier). Everything downstream (packing, the pre-quant and quantized scores) then uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from pgolf.evaluate.bpb import BPBResult
from pgolf.optim.averaging import Averagers
from pgolf.train.metrics import RunLogger

CANDIDATE_ORDER = ("live", "ema", "swa")  # PR #635's order: raw, EMA, SWA (line 1675-1718)


@dataclass
class AveragedOutcome:
    applied: str  # "ema", "swa", or "live"
    scores: dict[str, BPBResult] = field(default_factory=dict)  # "live" and each average

    def summary(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"averaged_weights": self.applied}
        for name, result in self.scores.items():
            out[f"{name}_val_loss"] = result.val_loss
            out[f"{name}_val_bpb"] = result.val_bpb
        return out


def choose_final(final_weights: str, scores: dict[str, BPBResult]) -> str:
    """The candidate `final_weights` names among the scored ones (`scores` holds "live" and each average)."""
    if final_weights == "live":
        return "live"
    if final_weights == "average":
        return "ema" if "ema" in scores else "swa"
    # best_val: min keeps the first of equal scores, as the record's strict `<` does
    return min((name for name in CANDIDATE_ORDER if name in scores), key=lambda name: scores[name].val_bpb)


def apply_averaged_weights(model: nn.Module, averagers: Averagers, evaluate: Callable[[], BPBResult],
                           logger: RunLogger, final_weights: str = "average") -> AveragedOutcome:
    """Score the live weights and each average; leave the model holding the one `final_weights` picks."""
    averages = averagers.averages()
    if not averages:
        logger.log("averaging: no average holds weights (SWA window never opened); keeping the live weights")
        return AveragedOutcome("live")
    live = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # the record keeps raw_sd on CPU
    candidates: dict[str, dict[str, Tensor]] = {"live": live}
    candidates |= averages
    scores = {"live": evaluate()}
    for name in CANDIDATE_ORDER[1:]:
        if name in averages:
            model.load_state_dict(averages[name], strict=True)
            scores[name] = evaluate()
    outcome = AveragedOutcome(choose_final(final_weights, scores), scores)
    model.load_state_dict(candidates[outcome.applied], strict=True)
    for name, result in scores.items():
        logger.log(f"averaging:{name} val_loss:{result.val_loss:.8f} val_bpb:{result.val_bpb:.8f}"
                   + (" (applied)" if name == outcome.applied else ""))
    logger.log(f"final_weights:{outcome.applied} ({final_weights})")
    return outcome
