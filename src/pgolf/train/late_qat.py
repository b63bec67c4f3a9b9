"""Late QAT's training forward (`train.late_qat_threshold` > 0): the model seen through fake quantization of
the matrices late QAT rehearses, switched on by the schedule. Only the runs that use late QAT import it.
"""

from __future__ import annotations

from collections import Counter

from torch import nn

from pgolf.config import Config
from pgolf.model.gpt import GPT
from pgolf.optim.factory import late_qat_bits, projection_qat_bits
from pgolf.optim.schedule import SwitchTensors
from pgolf.quant.plan import QuantPlan
from pgolf.quant.qat import QATForward, bits_from_mapping
from pgolf.train.metrics import RunLogger


def late_qat_forward(model: GPT, plan: QuantPlan, cfg: Config, logger: RunLogger, switches: SwitchTensors) -> nn.Module:
    """`train.late_qat_scope`: the Muon matrices at the widths `plan` stores them at, or PR #1289's projections."""
    t = cfg.train
    projections = t.late_qat_scope == "projections"
    bits = projection_qat_bits(model, t.qat_bits) if projections else late_qat_bits(model, plan)
    widths = Counter(bits.values())
    logger.log("late_qat: " + " ".join(f"int{b}:{n}" for b, n in sorted(widths.items()))
               + f" matrices (scope={t.late_qat_scope}, quant.scheme={cfg.quant.scheme})")
    return QATForward(model, bits_from_mapping(bits), switches.qat, t.qat_grid)
