"""The eval stages a config asks for, each a `Mode` (one scoring pass): plain → sliding (eval.stride > 0)
→ + TTT (eval.ttt) → + SLOT (eval.slot). Apart from `pgolf.evaluate.modes`, which runs them, so a run
with the plain stage alone neither imports nor ships the stage machinery."""

from __future__ import annotations

from dataclasses import dataclass

from pgolf.config import Config
from pgolf.config.parsing import LORA_TTT_MODES


@dataclass(frozen=True)
class Mode:
    windows: str  # blocks (plain, at train_seq_len) | sliding
    ttt: str = "off"  # off | full | lora | phased
    slot: str = "off"  # off | context | published

    @property
    def name(self) -> str:
        if self.ttt in LORA_TTT_MODES:
            return f"ttt-{self.ttt}"
        parts = ["plain" if self.windows == "blocks" else "sliding"]
        parts += [f"ttt-{self.ttt}"] if self.ttt != "off" else []
        parts += [f"slot-{self.slot}"] if self.slot != "off" else []
        return "+".join(parts)


def eval_stages(cfg: Config) -> list[Mode]:
    """The stages `pgolf eval` runs for this config (plain alone by default)."""
    e = cfg.eval
    stages = [Mode("blocks")]
    if e.stride > 0:
        stages.append(Mode("sliding"))
    if e.ttt != "off":
        stages.append(Mode("sliding", ttt=e.ttt))
    if e.slot != "off":
        stages.append(Mode("sliding", ttt=e.ttt, slot=e.slot))
    return stages
