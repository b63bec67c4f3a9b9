"""`pgolf train` as a sequence of stages: set up → train → average → pack → evaluate → summary.json.

Each stage lives in its own package and hands the next a typed result (`pgolf.rundir`); this module
only orders them and writes the run folder (`RunDir`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import pgolf
from pgolf.artifact.format import write_artifact
from pgolf.config import Config
from pgolf.data.resolve import resolve_dataset
from pgolf.evaluate.bpb import BPBResult
from pgolf.evaluate.orchestrate import score_run, selection_score
from pgolf.packing import calibration_budget, float_weights, load_packed_state, pack_state_dict
from pgolf.rundir import PackResult, RunDir, Summary, TrainResult
from pgolf.train import provenance
from pgolf.train.distributed import DistContext, barrier, init_distributed, shutdown
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.setup import TrainingSetup, apply_proxy, new_run_dir, prepare_training, reserve_calibration_time
from pgolf.utils import atomic_write_json, atomic_write_text, sha256_file

if TYPE_CHECKING:  # weight averaging is imported only by the runs that average (train.ema_decay, train.swa_every)
    from pgolf.train.averaged_weights import AveragedOutcome


def load_run_config(run_dir: Path) -> Config:
    from pgolf.config.loader import config_from_dict, read_toml_file  # tooling: an exported script never resumes

    return config_from_dict(read_toml_file(RunDir(run_dir).config), f"{run_dir}/config.toml")


def run_train(cfg: Config, resume_dir: Path | None = None) -> dict[str, Any]:
    """Train, pack, evaluate; write the run directory and return summary.json's content ({} off rank 0)."""
    ctx = init_distributed(cfg.train.device)
    try:
        if not pgolf.SHIPPED_CODE:  # an exported script runs the config its run validated (`pgolf.config.embedded`)
            from pgolf.config.validate import validate

            validate(cfg, world_size=ctx.world_size)
        clock = PhaseClock(sync=torch.cuda.synchronize if ctx.device.type == "cuda" else (lambda: None))
        with clock.phase("startup"):
            cfg, run, logger, setup = _start(cfg, ctx, resume_dir, clock)
        trained, averaged = _train(setup, run, resume_dir is not None, clock, logger, _selection(cfg, setup, ctx))
        state_dict = {k: v.detach().cpu() for k, v in setup.model.state_dict().items()}
        sha = provenance.weights_sha256(state_dict)
        with clock.phase("pack"):
            pack = _pack(state_dict, sha, cfg, ctx, run, setup, logger)
        calibration, line = calibration_budget(cfg, trained.wallclock_s, pack) if pack is not None else ({}, None)
        if line is not None:
            logger.log(line)
        plain = cfg.train.final_weights != "best_val"  # best_val scored the candidates by sliding windows
        pre = averaged.scores.get(averaged.applied) if averaged is not None and plain else None
        scores = score_run(setup.model, setup.eval_data, cfg, ctx, pre, lambda: load_packed_state(run.artifact)[0],
                           clock.phase, logger.log)
        logger.log(clock.table())
        if pack is None:
            return {}
        extra = calibration | (averaged.summary() if averaged is not None else {})
        summary = Summary(scores.headline, scores.stages, (scores.pre.val_loss, scores.pre.val_bpb),
                          (scores.post.val_loss, scores.post.val_bpb), pack, trained, setup.params, sha,
                          sha256_file(run.artifact), clock.to_dict(), setup.manifest, extra).to_dict()
        atomic_write_json(run.summary, summary)
        logger.close()
        return summary
    finally:
        shutdown(ctx)


def _selection(cfg: Config, setup: TrainingSetup, ctx: DistContext) -> Callable[[], BPBResult]:
    """The score the end of training compares live and averaged weights by (`train.final_weights`)."""
    if cfg.train.final_weights == "best_val":
        return lambda: selection_score(setup.model, setup.eval_data, cfg, ctx)
    return setup.trainer.p.evaluate


def _train(setup: TrainingSetup, run: RunDir, resume: bool, clock: PhaseClock, logger: RunLogger,
           evaluate: Callable[[], BPBResult]) -> tuple[TrainResult, AveragedOutcome | None]:
    """Resume or prime, run the loop, then leave the model holding the applied weight average (if any)."""
    trainer = setup.trainer
    if resume:
        from pgolf.train.checkpoint import load_checkpoint, restore_trainer  # an exported script never resumes

        restore_trainer(trainer, load_checkpoint(run.checkpoint))
        logger.log(f"resumed_at_step:{trainer.state.step}")
    else:
        with clock.phase("compile_warmup"):
            trainer.prime()
    trained = trainer.fit().result()
    if trainer.p.averagers is None:
        return trained, None
    from pgolf.train.averaged_weights import apply_averaged_weights

    with clock.phase("eval_averages", "eval"):
        return trained, apply_averaged_weights(setup.model, trainer.p.averagers, evaluate, logger,
                                               trainer.p.cfg.train.final_weights)


def _start(cfg: Config, ctx: DistContext, resume_dir: Path | None,
           clock: PhaseClock) -> tuple[Config, RunDir, RunLogger, TrainingSetup]:
    """Check the data, open the run folder (config.toml, log), apply proxy mode and build the setup."""
    resolve_dataset(cfg)  # fail on bad data before anything is written
    run = new_run_dir(cfg, ctx) if resume_dir is None else RunDir(resume_dir)
    logger = RunLogger(run.root, enabled=ctx.is_main)
    if ctx.is_main:
        atomic_write_text(run.config, cfg.to_toml())
        logger.log(provenance.code_text(), file_only=True)
        logger.log("=" * 100, file_only=True)
    logger.log(f"run:{run.root} resume:{resume_dir is not None}")
    cfg, proxy = apply_proxy(cfg, ctx.world_size)  # config.toml keeps the request; training uses this
    if proxy is not None:
        logger.log(proxy.describe())
    cfg = reserve_calibration_time(cfg, logger)
    setup = prepare_training(cfg, ctx, run, logger, clock)
    setup.manifest["proxy"] = proxy.to_dict() if proxy is not None else None
    logger.log(f"manifest:{json.dumps(setup.manifest, sort_keys=True, separators=(',', ':'))}")
    return cfg, run, logger, setup


def _pack(state_dict: dict[str, torch.Tensor], sha: str, cfg: Config, ctx: DistContext, run: RunDir,
          setup: TrainingSetup, logger: RunLogger) -> PackResult | None:
    """weights.pgolf and artifact.pgolf (rank 0, with the plan late QAT used); every rank waits for them."""
    pack = None
    if ctx.is_main:
        write_artifact(run.weights, float_weights(state_dict), {"config": cfg.to_dict(), "kind": "float"})
        pack = pack_state_dict(state_dict, cfg, run.artifact, {"weights_sha256": sha, "run_id": cfg.run.run_id},
                               device=ctx.device, log=logger.log, plan=setup.plan, world_size=ctx.world_size)
        report = pack.budget_report.splitlines()
        logger.log("\n".join(line for line in report if not line.startswith("  counted:")))
        logger.log("\n".join(line for line in report if line.startswith("  counted:")), file_only=True)
    barrier(ctx)
    return pack
