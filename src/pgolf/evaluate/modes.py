"""Evaluation modes: which windows, which adaptation, which SLOT — built from the config and run.

A `Mode` names one scoring pass. `pgolf eval` runs the stages the config asks for, each from the
same weights: plain → sliding (eval.stride > 0) → + TTT (eval.ttt) → + SLOT (eval.slot). Every
stage scores the same targets, so their val_bpb compare directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from pgolf.config import Config, eval_context
from pgolf.config.parsing import LORA_TTT_MODES
from pgolf.data.tokenizer import ByteCounter
from pgolf.errors import UserError
from pgolf.evaluate.context import ScoringContext
from pgolf.evaluate.ledger import LedgerResult, NormalizationAudit
from pgolf.evaluate.legality import ruling
from pgolf.evaluate.sliding import ScoreFn, evaluate_windows, logits_scorer
from pgolf.evaluate.stages import Mode, eval_stages
from pgolf.model.gpt import GPT
from pgolf.train.distributed import DistContext

if TYPE_CHECKING:  # SLOT and TTT are imported where a mode uses them: a run imports (and ships) only its stages
    from pgolf.evaluate.ttt import SGDSettings
    from pgolf.evaluate.ttt_lora import LoRATTTSettings

DEFAULT_STRIDE = 64  # the records' stride, used by TTT/SLOT when eval.stride = 0
# Val tokens of the official FineWeb val split per tokenizer vocabulary (TECHNIQUES §1.6).
OFFICIAL_VAL_TOKENS = {1024: 62_021_632, 4096: 45_508_608, 8192: 40_540_160}
PROJECTION_GPUS = 8


# `pgolf verify --mode` names → modes (variant knobs come from the [eval] config)
VERIFY_MODES: dict[str, Mode] = {
    "plain": Mode("blocks"),
    "sliding": Mode("sliding"),
    "ttt-full": Mode("sliding", ttt="full"),
    "ttt-lora": Mode("sliding", ttt="lora"),
    "ttt-phased": Mode("sliding", ttt="phased"),
    "slot-context": Mode("sliding", slot="context"),
    "slot-published": Mode("sliding", slot="published"),
}


def mode_by_name(cfg: Config, name: str) -> Mode:
    """A `VERIFY_MODES` name, or the name of one of this config's eval stages."""
    known = {**VERIFY_MODES, **{mode.name: mode for mode in eval_stages(cfg)}}
    if name not in known:
        raise UserError(f"unknown eval mode '{name}': choose from {', '.join(known)}, all")
    return known[name]


def stride_of(cfg: Config) -> int:
    return cfg.eval.stride or min(DEFAULT_STRIDE, eval_context(cfg))


def _scorer_factory(mode: Mode, cfg: Config) -> Callable[[GPT], ScoreFn]:
    e = cfg.eval
    if mode.slot == "off":
        return logits_scorer
    from pgolf.evaluate.slot import SlotSettings, slot_scorer

    settings = SlotSettings(mode.slot, e.slot_steps, e.slot_lr, e.slot_weight_decay, e.slot_eps)
    return lambda model: slot_scorer(model, settings)


def _sgd(cfg: Config, epochs: int) -> SGDSettings:
    from pgolf.evaluate.ttt import SGDSettings

    e = cfg.eval
    qat_params = tuple(name.strip() for name in e.ttt_qat_params.split(",") if name.strip())
    return SGDSettings(eval_context(cfg), e.ttt_batch_seqs, epochs, e.ttt_momentum, e.ttt_grad_clip, qat_params,
                       e.ttt_qat_bits)


def lora_settings(cfg: Config, phased: bool) -> LoRATTTSettings:
    from pgolf.evaluate.ttt_lora import LoRATTTSettings

    e = cfg.eval
    return LoRATTTSettings(
        context=eval_context(cfg), chunk=e.ttt_lora_chunk, docs_per_batch=e.ttt_lora_docs,
        targets=tuple(t.strip() for t in e.ttt_lora_targets.split(",") if t.strip()), rank=e.ttt_lora_rank,
        alpha=e.ttt_lora_alpha, lr=e.ttt_lora_lr, beta2=e.ttt_lora_beta2, weight_decay=e.ttt_lora_weight_decay,
        warm_a=e.ttt_lora_warm_a, bos_id=e.ttt_bos_id, freeze_blocks=e.ttt_freeze_blocks,
        phases=e.ttt_phases if phased else 0, phase_docs=e.ttt_phase_docs, phase_lr=e.ttt_phase_lr,
        phase_chunk_tokens=e.ttt_chunk_tokens, phase_sgd=_sgd(cfg, epochs=1), seed=cfg.run.seed)


def run_mode(model: GPT, mode: Mode, cfg: Config, scoring: ScoringContext) -> LedgerResult:
    """One scoring pass of `mode` over `scoring.tokens` (the model is left unchanged)."""
    make_scorer = _scorer_factory(mode, cfg)
    context = eval_context(cfg)
    if mode.windows == "blocks":
        seq_len = cfg.train.train_seq_len
        return evaluate_windows(make_scorer(model), scoring, seq_len, seq_len)
    if mode.ttt == "full":
        from pgolf.evaluate.ttt_full import FullTTTSettings, evaluate_ttt_full

        settings = FullTTTSettings(context, stride_of(cfg), cfg.eval.ttt_chunk_tokens, cfg.eval.ttt_lr,
                                   cfg.eval.ttt_freeze_blocks, _sgd(cfg, cfg.eval.ttt_epochs))
        return evaluate_ttt_full(model, scoring, settings, make_scorer)
    if mode.ttt in LORA_TTT_MODES:
        from pgolf.evaluate.ttt_lora import evaluate_ttt_lora

        return evaluate_ttt_lora(model, scoring, lora_settings(cfg, phased=mode.ttt == "phased"))
    score_fn: ScoreFn = make_scorer(model)
    return evaluate_windows(score_fn, scoring, context, stride_of(cfg))


def batch_seqs_for(mode: Mode, cfg: Config, world_size: int) -> int:
    """Plain scoring batches as the baseline (VAL_BATCH_SIZE tokens over all ranks); the rest by eval.batch_seqs."""
    if mode.windows == "blocks":
        return max(cfg.eval.val_batch_size // (world_size * cfg.train.train_seq_len), 1)
    return cfg.eval.batch_seqs


def projection(per_device_tokens_per_s: float, vocab_size: int, local_targets: int, device_name: str) -> dict[str, Any]:
    """Wallclock of this mode over the full official val set on 8 GPUs at the stated per-GPU rate."""
    official = OFFICIAL_VAL_TOKENS.get(vocab_size)
    tokens, source = (official, f"official sp{vocab_size} val split") if official else (local_targets, "this val split")
    seconds = tokens / (per_device_tokens_per_s * PROJECTION_GPUS) if per_device_tokens_per_s > 0 else float("inf")
    return {"val_tokens": tokens, "gpus": PROJECTION_GPUS, "per_gpu_tokens_per_s": per_device_tokens_per_s,
            "seconds": seconds,
            "basis": f"{per_device_tokens_per_s:,.0f} tokens/s per device measured on {device_name}; "
                     f"{tokens:,} tokens ({source}) on {PROJECTION_GPUS} such devices"}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def run_stage(model: GPT, mode: Mode, cfg: Config, scoring: ScoringContext) -> tuple[dict[str, Any], LedgerResult]:
    """Run a mode and describe it: scores, completeness, throughput, 8-GPU projection, legality ruling."""
    if scoring.device.type == "cuda":
        torch.cuda.synchronize(scoring.device)
    started = time.perf_counter()
    result = run_mode(model, mode, cfg, scoring)
    if scoring.device.type == "cuda":
        torch.cuda.synchronize(scoring.device)
    elapsed = time.perf_counter() - started
    bpb = result.bpb
    per_device = bpb.val_tokens / max(elapsed, 1e-9) / scoring.dist_ctx.world_size
    report = {
        "stage": mode.name, **bpb.to_dict(), "targets": scoring.n_targets,
        "complete": bpb.val_tokens == scoring.n_targets, "elapsed_s": elapsed,
        "tokens_per_s": bpb.val_tokens / max(elapsed, 1e-9),
        "projection": projection(per_device, cfg.model.vocab_size, scoring.n_targets, device_name(scoring.device)),
        "legality": ruling(mode.name),
    }
    return report, result


def scoring_for(mode: Mode, cfg: Config, tokens: torch.Tensor, lut: ByteCounter, dist_ctx: DistContext,
                autocast_dtype: torch.dtype | None, keep_losses: bool = False,
                audit: NormalizationAudit | None = None) -> ScoringContext:
    return ScoringContext(tokens, lut, dist_ctx, autocast_dtype, batch_seqs_for(mode, cfg, dist_ctx.world_size),
                          keep_losses, audit, cfg.eval.max_eval_seconds)


def run_stages(model: GPT, modes: list[Mode], cfg: Config, tokens: torch.Tensor, lut: ByteCounter,
               dist_ctx: DistContext, autocast_dtype: torch.dtype | None,
               keep_losses: bool = False) -> list[tuple[dict[str, Any], LedgerResult]]:
    """Every stage from the same weights, in eval mode; returns (report, ledger result) per stage."""
    was_training = model.training
    model.eval()
    try:
        return [run_stage(model, mode, cfg, scoring_for(mode, cfg, tokens, lut, dist_ctx, autocast_dtype, keep_losses))
                for mode in modes]
    finally:
        model.train(was_training)


def stage_line(stage: dict[str, Any]) -> str:
    """One line per stage report: scores, throughput, projection, completeness and legality label."""
    legality = stage["legality"]
    label = "" if legality["compliant"] else f" {legality['label']} ({legality['policy']}): {legality['reason']}"
    scored = "" if stage["complete"] else (f" INCOMPLETE: scored {stage['val_tokens']:,} of {stage['targets']:,} "
                                           "targets before eval.max_eval_seconds")
    projection = stage["projection"]
    return (f"stage:{stage['stage']} val_loss:{stage['val_loss']:.8f} val_bpb:{stage['val_bpb']:.8f} "
            f"tokens/s:{stage['tokens_per_s']:,.0f} time:{stage['elapsed_s']:.1f}s "
            f"projected_8gpu_full_val:{projection['seconds']:.0f}s{scored}{label}")
