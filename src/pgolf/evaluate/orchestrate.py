"""Evaluation as a run uses it: plain scoring of a model during and after training, then the
configured eval stages (sliding, TTT, SLOT) whose last one is the run's headline score."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from pgolf.config import Config
from pgolf.data.resolve import EvalData
from pgolf.evaluate.bpb import BPBResult
from pgolf.evaluate.legality import ruling
from pgolf.evaluate.plain import EvalSetup, evaluate_plain
from pgolf.evaluate.stages import Mode, eval_stages
from pgolf.model.gpt import GPT
from pgolf.precision import autocast_dtype
from pgolf.rundir import StageScore
from pgolf.train.distributed import DistContext


def evaluate_model(model: GPT, data: EvalData, cfg: Config, ctx: DistContext,
                   collect_losses: bool = False) -> tuple[BPBResult, Any]:
    """Plain val scoring at train_seq_len, in eval mode (the model's mode is restored)."""
    setup = EvalSetup(seq_len=cfg.train.train_seq_len, batch_tokens=cfg.eval.val_batch_size, rank=ctx.rank,
                      world_size=ctx.world_size, autocast_dtype=autocast_dtype(cfg, ctx.device))
    was_training = model.training
    model.eval()
    try:
        return evaluate_plain(model.token_losses, data.tokens, data.lut, setup, ctx.device, collect_losses)
    finally:
        model.train(was_training)


def selection_score(model: GPT, data: EvalData, cfg: Config, ctx: DistContext) -> BPBResult:
    """The score `train.final_weights = "best_val"` compares candidates by. PR #635 scores raw, EMA and SWA
    with its `eval_val`: sliding windows of train_seq_len at stride 64 over the whole val split, before
    quantization (record lines 345-416, 1675-1718); here the sliding stage at eval.stride."""
    from pgolf.evaluate.modes import run_stages

    mode = Mode("sliding")
    return run_stages(model, [mode], cfg, data.tokens, data.lut, ctx, autocast_dtype(cfg, ctx.device))[0][1].bpb


def plain_score(result: BPBResult) -> StageScore:
    """A plain-eval result as a stage score (the headline when no further stage is configured)."""
    report = {"stage": "plain", **result.to_dict(), "legality": ruling("plain")}
    return StageScore.from_report(report)


Phase = Callable[[str, str], AbstractContextManager[Any]]  # (name, kind) → a timed phase of the run's clock


@dataclass(frozen=True)
class RunScores:
    """The end-of-run scores: float weights, the artifact's weights (plain), and the configured stages."""

    pre: BPBResult
    post: BPBResult
    stages: tuple[StageScore, ...]

    @property
    def headline(self) -> StageScore:
        return self.stages[-1] if self.stages else plain_score(self.post)


def score_run(model: GPT, data: EvalData, cfg: Config, ctx: DistContext, pre: BPBResult | None,
              artifact_state: Callable[[], dict[str, Tensor]], phase: Phase, log: Callable[[str], None]) -> RunScores:
    """Score the float weights (unless `pre` already holds that score), then load the artifact's weights
    into `model` and score them plainly and with every configured stage."""
    if pre is None:
        with phase("eval_float", "eval"):
            pre = evaluate_model(model, data, cfg, ctx)[0]
    log(f"pre_quant val_loss:{pre.val_loss:.8f} val_bpb:{pre.val_bpb:.8f}")
    with phase("eval_artifact", "eval"):
        model.load_state_dict(artifact_state(), strict=True)
        post = evaluate_model(model, data, cfg, ctx)[0]
    q = cfg.quant
    label = "int8_zlib" if (q.scheme, q.codec) == ("int8", "zlib") else f"{q.scheme}_{q.codec}"
    log(f"final_{label}_roundtrip_exact val_loss:{post.val_loss:.8f} val_bpb:{post.val_bpb:.8f}")
    stages: tuple[StageScore, ...] = ()
    if len(eval_stages(cfg)) > 1:
        with phase("eval_stages", "eval"):
            stages = extra_stages(model, data, cfg, ctx, log)
    return RunScores(pre, post, stages)


def extra_stages(model: GPT, data: EvalData, cfg: Config, ctx: DistContext,
                 log: Callable[[str], None]) -> tuple[StageScore, ...]:
    """The eval stages the config asks for beyond plain, on the model's current weights, each logged.

    None runs by default; the last one is the run's headline val_bpb, as in the records' scripts.
    """
    extra = eval_stages(cfg)[1:]
    if not extra:
        return ()
    from pgolf.evaluate.modes import run_stages, stage_line  # only runs with stages beyond plain ship them

    results = run_stages(model, extra, cfg, data.tokens, data.lut, ctx, autocast_dtype(cfg, ctx.device))
    for report, _ in results:
        log(f"final_{report['stage']}_exact {stage_line(report)}")
    return tuple(StageScore.from_report(report) for report, _ in results)
