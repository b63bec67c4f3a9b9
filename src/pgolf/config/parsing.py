"""Small helpers that read meaning out of config values; each raises a `ConfigError` naming its key."""

from __future__ import annotations

from pgolf.config.issues import fail
from pgolf.config.schema import Config


def parse_layer_list(text: str) -> list[int]:
    """"9,10" → [9, 10]; "" → []. Raises ValueError on anything else."""
    return [int(part) for part in text.replace(" ", "").split(",") if part]


def parse_fit_bits(text: str) -> tuple[int, ...]:
    """'5,6,7,8' → (8, 7, 6, 5); ConfigError unless every entry is an integer in 4..8."""
    try:
        bits = tuple(sorted({int(part) for part in text.split(",") if part.strip()}, reverse=True))
    except ValueError:
        bits = ()
    if not bits or not all(4 <= b <= 8 for b in bits):
        raise fail("quant.fit_bits", f"must be comma-separated bit widths in 4..8 (e.g. 5,6,7,8), got {text!r}")
    return bits


def resolve_grad_accum(cfg: Config, world_size: int) -> int:
    """The baseline splits 8 micro-batches over the ranks; an explicit value wins."""
    if cfg.train.grad_accum_steps > 0:
        return cfg.train.grad_accum_steps
    if 8 % world_size != 0:
        raise fail("train.grad_accum_steps", f"0 means 8 // world_size, but world size {world_size} does not "
                   "divide 8: set train.grad_accum_steps explicitly")
    return 8 // world_size


def eval_context(cfg: Config) -> int:
    """Window length of sliding/TTT/SLOT scoring."""
    return cfg.eval.context or cfg.train.train_seq_len


def reads_train_calibration(cfg: Config) -> bool:
    """Whether packing reads training data (GPTQ or fit calibrated on training shards)."""
    return cfg.quant.calibration in ("train", "loader") and (cfg.quant.gptq or cfg.quant.scheme == "fit")


# What a config uses, where the code's choice to import a technique module and the export's choice to ship it
# (`pgolf.export.CONFIG_MODULES`) must agree: both read these.
LORA_TTT_MODES = ("lora", "phased")  # eval.ttt values that adapt LoRA factors (pgolf.evaluate.ttt_lora)


def averages_weights(cfg: Config) -> bool:
    """EMA and/or SWA of the weights (pgolf.optim.averaging)."""
    return cfg.train.ema_decay > 0 or cfg.train.swa_every > 0


def uses_late_qat(cfg: Config) -> bool:
    return cfg.train.late_qat_threshold > 0


def uses_parallel_muon(cfg: Config) -> bool:
    return cfg.optim.muon_impl == "parallel"


def writes_checkpoints(cfg: Config) -> bool:
    return cfg.train.checkpoint_every > 0
