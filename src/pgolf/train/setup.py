"""Everything a training run needs, built from the config: runtime, data, model, quantization plan,
optimizers, the wrapped loss function and its gradient synchronisation, averagers and the trainer.

Proxy mode (emulating an N-GPU run on fewer GPUs) and the calibration-time reserve are applied here,
before anything is built, so the rest of the run sees one plain config.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pgolf.config import Config, reads_train_calibration, resolve_grad_accum
from pgolf.config.parsing import averages_weights, uses_late_qat, uses_parallel_muon, writes_checkpoints
from pgolf.data.loader import make_train_loader
from pgolf.data.manifest import DatasetPaths, check_dataset
from pgolf.data.resolve import EvalData, load_eval_data, resolve_dataset, train_files
from pgolf.errors import UserError
from pgolf.evaluate.orchestrate import evaluate_model
from pgolf.model.gpt import GPT, build_model, count_parameters
from pgolf.optim.factory import build_optimizers, orthogonalizer_for
from pgolf.optim.schedule import SwitchTensors
from pgolf.quant.plan import QuantPlan
from pgolf.rundir import RunDir
from pgolf.train import provenance
from pgolf.train.distributed import DistContext, broadcast_from_main, seed_everything
from pgolf.train.grad_sync import DDPSync, GradSync, LocalSync
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.runtime import RecompileCounter, autocast_dtype, compile_enabled, maybe_compile
from pgolf.train.trainer import Trainer, TrainerParts

if TYPE_CHECKING:  # averaging, Parallel Muon and QAT are imported where the config uses them
    from pgolf.optim.averaging import Averagers
    from pgolf.optim.factory import MuonLike
    from pgolf.optim.parallel_muon import ParallelMuon


# ---- the effective config -------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyInfo:
    """What proxy mode changed, recorded in the run's manifest and summary."""

    target_world_size: int
    world_size: int
    time_scale: float
    grad_accum_steps: int
    target_grad_accum_steps: int
    max_wallclock_seconds: float
    target_max_wallclock_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        cap = (f"wallclock cap {self.target_max_wallclock_seconds:g}s × {self.time_scale:g} = "
               f"{self.max_wallclock_seconds:g}s" if self.max_wallclock_seconds > 0 else "no wallclock cap")
        return (f"proxy: emulating {self.target_world_size} GPUs on {self.world_size}; grad_accum "
                f"{self.target_grad_accum_steps} → {self.grad_accum_steps} (same global batch); {cap}")


def apply_proxy(cfg: Config, world_size: int) -> tuple[Config, ProxyInfo | None]:
    """The equivalent plain config for this world size (proxy switched off), and what changed.

    Per-GPU throughput is nearly flat from 1 to 8 H100s, so keeping the global batch (more gradient
    accumulation) and scaling the wallclock cap by N / w reaches about the N-GPU run's step count. The
    returned config has `proxy_world_size = 0`, explicit accumulation and the scaled cap, so re-running
    it (e.g. `pgolf reproduce`) does not scale twice.
    """
    target = cfg.train.proxy_world_size
    if target == 0:
        return cfg, None
    scale = target / world_size
    target_accum = resolve_grad_accum(cfg, target)
    proxied = copy.deepcopy(cfg)
    proxied.train.proxy_world_size = 0
    proxied.train.grad_accum_steps = target_accum * target // world_size
    proxied.train.max_wallclock_seconds = cfg.train.max_wallclock_seconds * scale
    from pgolf.config.validate import validate  # only proxy runs ship the validator

    validate(proxied, world_size=world_size)
    info = ProxyInfo(target_world_size=target, world_size=world_size, time_scale=scale,
                     grad_accum_steps=proxied.train.grad_accum_steps, target_grad_accum_steps=target_accum,
                     max_wallclock_seconds=proxied.train.max_wallclock_seconds,
                     target_max_wallclock_seconds=cfg.train.max_wallclock_seconds)
    return proxied, info


def reserve_calibration_time(cfg: Config, log: RunLogger) -> Config:
    """Stop training `quant.calibration_reserve_seconds` early when packing will read training data.

    Calibrating on training shards is legal only inside the training budget (TECHNIQUES §4.5.2).
    """
    cap, reserve = cfg.train.max_wallclock_seconds, cfg.quant.calibration_reserve_seconds
    if not reads_train_calibration(cfg) or cap <= 0:
        return cfg
    if reserve == 0:
        log.log("calibration_warning: quant.calibration=train reads training shards after the training clock "
                "stops; set quant.calibration_reserve_seconds so the pass fits in train.max_wallclock_seconds")
        return cfg
    log.log(f"calibration_reserve: training stops at {cap - reserve:.1f}s so the calibration pass fits in the "
            f"{cap:.1f}s budget")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_wallclock_seconds=cap - reserve))


def new_run_dir(cfg: Config, ctx: DistContext) -> RunDir:
    """The run folder of a new run; sets `run.run_id` (one id, chosen on rank 0) when the config has none."""
    if not cfg.run.run_id:
        cfg.run.run_id = broadcast_from_main(ctx, time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
    run_dir = RunDir.of(cfg.run.out_dir, cfg.run.run_id)
    if ctx.is_main and run_dir.finished():
        raise UserError(f"run {run_dir.root} already finished: choose another RUN_ID / run.run_id")
    return run_dir


# ---- building the parts ---------------------------------------------------------------------------
@dataclass
class TrainingSetup:
    """Everything a training run needs, built from the config (shared by `train` and `bench train`)."""

    trainer: Trainer
    model: GPT
    eval_data: EvalData
    params: int
    manifest: dict[str, Any]
    plan: QuantPlan  # the formats late QAT rehearsed; packing stores the same


@dataclass(frozen=True)
class _Forward:
    forward: Any  # the loss function the trainer calls
    grad_sync: GradSync
    compiled: bool


def _configure_runtime(cfg: Config, ctx: DistContext) -> None:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(cfg.run.seed)


def _averagers(model: GPT, cfg: Config) -> Averagers | None:
    """EMA and/or SWA of the weights, or None when the config averages neither."""
    if not averages_weights(cfg):
        return None
    from pgolf.optim.averaging import Averagers

    t = cfg.train

    return Averagers.for_model(model, t.ema_decay, t.ema_start_step, t.swa_every, t.swa_max_lr_scale, t.swa_source)


def _wrap_for_training(model: GPT, plan: QuantPlan, muon: MuonLike, cfg: Config, ctx: DistContext,
                       logger: RunLogger, switches: SwitchTensors) -> _Forward:
    """The training loss function: [late-QAT fake quantization] → [torch.compile] → [DDP], and its GradSync."""
    module: nn.Module = model
    if uses_late_qat(cfg):
        from pgolf.train.late_qat import late_qat_forward

        module = late_qat_forward(model, plan, cfg, logger, switches)
    forward, compile_info = maybe_compile(module, compile_enabled(cfg, ctx.device), dynamic=False, fullgraph=True,
                                          on_fallback=lambda why: logger.log(f"torch_compile:{why}"),
                                          backend=cfg.train.compile_backend)
    logger.log(f"torch_compile:{compile_info.enabled} ({compile_info.reason})")
    if uses_parallel_muon(cfg):  # the banks synchronise every gradient, no DDP wrapper
        from pgolf.train.bank_sync import bank_sync

        banked = cast("ParallelMuon", muon)  # `build_optimizers` made it from the same config
        return _Forward(forward, bank_sync(banked, model.parameters(), cfg), compile_info.enabled)
    if not ctx.distributed:
        return _Forward(forward, LocalSync(model.parameters()), compile_info.enabled)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp = DistributedDataParallel(forward, device_ids=device_ids, broadcast_buffers=False)
    return _Forward(ddp, DDPSync(ddp, model.parameters()), compile_info.enabled)


def _manifest(cfg: Config, ctx: DistContext, paths: DatasetPaths, files: list[Path]) -> dict[str, Any]:
    return {"code_sha256": provenance.code_hash(), "git_commit": provenance.git_commit(),
            "config": cfg.to_dict(), "seed": cfg.run.seed,
            "data": provenance.data_fingerprint(paths.dataset_dir, paths.tokenizer_path, files),
            "environment": provenance.environment(ctx.device, ctx.world_size)}


def prepare_training(cfg: Config, ctx: DistContext, run_dir: RunDir | None, logger: RunLogger,
                     clock: PhaseClock) -> TrainingSetup:
    _configure_runtime(cfg, ctx)
    paths = resolve_dataset(cfg)
    files = train_files(cfg, paths)
    for warning in check_dataset(paths.dataset_dir, files, cfg.data.expected_train_shards):
        logger.log(f"data_warning: {warning}")
    accum = resolve_grad_accum(cfg, ctx.world_size)
    manifest = _manifest(cfg, ctx, paths, files)
    dtype = autocast_dtype(cfg, ctx.device)
    model = build_model(cfg.model, ctx.device, low_precision_storage=ctx.device.type == "cuda")
    for note in model.kernel_notes(ctx.device.type):  # a requested kernel unavailable here: which one runs instead
        logger.log(note)
    plan = QuantPlan.resolve(cfg, model.state_dict())
    # Newton–Schulz is compiled on its own, as the baseline does (one graph per matrix/bank shape)
    orthogonalize, _ = maybe_compile(orthogonalizer_for(cfg), compile_enabled(cfg, ctx.device), fullgraph=True,
                                     dynamic=False, backend=cfg.train.compile_backend,
                                     on_fallback=lambda why: logger.log(f"newton_schulz_compile:{why}"))
    optimizers, muon = build_optimizers(model, cfg, ctx.device, orthogonalize=orthogonalize)
    switches = SwitchTensors(ctx.device)
    wrapped = _wrap_for_training(model, plan, muon, cfg, ctx, logger, switches)
    t = cfg.train
    averagers = _averagers(model, cfg)
    eval_data = load_eval_data(cfg, paths, t.train_seq_len)
    params = count_parameters(model)
    logger.log(f"model_params:{params} world_size:{ctx.world_size} grad_accum_steps:{accum} "
               f"device:{ctx.device} autocast:{dtype} attention:{manifest['environment']['attention_backend']}")
    logger.log(f"train_shards:{len(files)} val_tokens:{eval_data.tokens.numel() - 1} seed:{cfg.run.seed}")
    parts = TrainerParts(
        cfg=cfg, ctx=ctx, model=model, forward=wrapped.forward, grad_sync=wrapped.grad_sync, optimizers=optimizers,
        muon=muon, make_loader=lambda: make_train_loader(cfg.data.loader, files, ctx.rank, ctx.world_size, ctx.device),
        grad_accum_steps=accum, autocast_dtype=dtype, evaluate=lambda: evaluate_model(model, eval_data, cfg, ctx)[0],
        logger=logger, clock=clock,
        checkpoint_path=run_dir.checkpoint if run_dir is not None and writes_checkpoints(cfg) else None,
        switches=switches, averagers=averagers,
        recompiles=RecompileCounter(t.max_recompiles) if wrapped.compiled else None,
    )
    return TrainingSetup(Trainer(parts), model, eval_data, params, manifest, plan)
