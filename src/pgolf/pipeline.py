"""The stages wired together: train → quantize → pack → evaluate, as `pgolf train` runs them.

Each function here is what one CLI command calls. The run directory is the hand-off between
stages: `runs/<run_id>/{config.toml, train.log, metrics.jsonl, checkpoint.pt, weights.pgolf,
artifact.pgolf, summary.json}`.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from pgolf.artifact.budget import (
    BUDGET_BYTES,
    Budget,
    check_budget,
    code_files,
    count_code_bytes,
)
from pgolf.artifact.format import read_artifact, save_artifact_bytes, write_artifact
from pgolf.config import (
    Config,
    config_from_dict,
    read_toml_file,
    reads_train_calibration,
    resolve_grad_accum,
    validate,
)
from pgolf.data.build import DatasetPaths, embedded_dataset
from pgolf.data.families import load_tokenizer
from pgolf.data.loader import make_train_loader
from pgolf.data.manifest import check_dataset
from pgolf.data.shards import list_shards, load_val_tokens
from pgolf.data.sidecar import eval_byte_counter
from pgolf.data.tokenizer import ByteCounter, check_vocab_size
from pgolf.errors import ConfigError, UserError
from pgolf.evaluate.bpb import BPBResult
from pgolf.evaluate.legality import ruling
from pgolf.evaluate.modes import eval_stages, run_stages, stage_line
from pgolf.evaluate.plain import EvalSetup, evaluate_plain
from pgolf.experiments.proxy import apply_proxy
from pgolf.model.gpt import GPT, build_model, count_parameters
from pgolf.optim.averaging import Averagers
from pgolf.optim.factory import build_optimizers, late_qat_bits, orthogonalizer_for
from pgolf.optim.schedule import SwitchTensors
from pgolf.packing import pack_weights
from pgolf.quant.container import QuantizedModel, QuantizedTensor, dequantize
from pgolf.quant.qat import QATForward, bits_from_mapping
from pgolf.train import provenance
from pgolf.train.averaged_weights import apply_averaged_weights
from pgolf.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, weights_sha256
from pgolf.train.distributed import (
    DistContext,
    barrier,
    init_distributed,
    seed_everything,
    shutdown,
)
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.runtime import (
    RecompileCounter,
    autocast_dtype,
    compile_enabled,
    maybe_compile,
)
from pgolf.train.trainer import Trainer, TrainerParts
from pgolf.utils import atomic_write_json, atomic_write_text, sha256_file

EMBEDDED_PREFIX = "embedded:"
WEIGHTS_NAME = "weights.pgolf"
ARTIFACT_NAME = "artifact.pgolf"
TENSOR_REPORT_SUFFIX = ".tensors.json"  # artifact.pgolf → artifact.tensors.json


# ---- data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalData:
    tokens: Tensor
    lut: ByteCounter  # the tokenizer's LUT, or the dataset's val byte sidecar
    tokenizer_path: Path


def resolve_dataset(cfg: Config) -> DatasetPaths:
    """Dataset folder and tokenizer named by the config (`embedded:<variant>` builds the shipped corpus)."""
    dataset, tokenizer = cfg.data.dataset, cfg.data.tokenizer
    if dataset.startswith(EMBEDDED_PREFIX):
        paths = embedded_dataset(dataset[len(EMBEDDED_PREFIX):])
        dataset_dir = paths.dataset_dir
        default_tokenizer = paths.tokenizer_path
    else:
        dataset_dir = Path(dataset)
        default_tokenizer = None
    if not dataset_dir.is_dir():
        raise UserError(f"dataset folder {dataset_dir} does not exist (data.dataset / DATA_PATH): "
                        "build one with `pgolf data build` or fetch one with `pgolf data download`")
    if tokenizer in ("", "auto") or (tokenizer.startswith(EMBEDDED_PREFIX) and default_tokenizer is not None):
        if default_tokenizer is None:
            raise ConfigError("data.tokenizer: set the tokenizer .model of this dataset (TOKENIZER_PATH)")
        tokenizer_path = default_tokenizer
    else:
        tokenizer_path = Path(tokenizer)
    tok = load_tokenizer(tokenizer_path)
    check_vocab_size(tok.vocab_size, cfg.model.vocab_size, name="model.vocab_size")
    return DatasetPaths(dataset_dir, tokenizer_path, tok.vocab_size)


def train_files(cfg: Config, paths: DatasetPaths) -> list[Path]:
    files = list_shards(paths.dataset_dir, "train")
    return files[: cfg.data.train_shards] if cfg.data.train_shards > 0 else files


def load_eval_data(cfg: Config, paths: DatasetPaths, seq_len: int) -> EvalData:
    tokens = load_val_tokens(paths.dataset_dir, seq_len, cfg.eval.val_max_tokens)
    counter = eval_byte_counter(paths.dataset_dir, load_tokenizer(paths.tokenizer_path), cfg.model.vocab_size,
                                tokens.numel())
    return EvalData(tokens, counter, paths.tokenizer_path)


# ---- evaluation ---------------------------------------------------------------------------------
def evaluate_model(model: GPT, data: EvalData, cfg: Config, ctx: DistContext,
                   collect_losses: bool = False) -> tuple[BPBResult, Any]:
    setup = EvalSetup(seq_len=cfg.train.train_seq_len, batch_tokens=cfg.eval.val_batch_size, rank=ctx.rank,
                      world_size=ctx.world_size, autocast_dtype=autocast_dtype(cfg, ctx.device))
    was_training = model.training
    model.eval()
    try:
        return evaluate_plain(model.token_losses, data.tokens, data.lut, setup, ctx.device, collect_losses)
    finally:
        model.train(was_training)


# ---- weights and artifacts ---------------------------------------------------------------------
def float_weights(state_dict: dict[str, Tensor]) -> QuantizedModel:
    """A state dict as an all-passthrough model, so float weights use the same pickle-free container."""
    return QuantizedModel({name: QuantizedTensor(name, "passthrough", None, t.detach().cpu().contiguous(), None, t.dtype)
                           for name, t in state_dict.items()})


def pack_state_dict(state_dict: dict[str, Tensor], cfg: Config, path: Path, extra_meta: dict[str, Any],
                    device: torch.device | None = None, enforce_budget: bool = False,
                    log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Quantize with the config's scheme/policy, write the artifact and its per-tensor report.

    With `enforce_budget`, an artifact that would put the submission over `quant.budget_bytes` is not
    written: ArtifactError names the exact excess.
    """
    packed = pack_weights(state_dict, cfg, {"config": cfg.to_dict(), "quant_scheme": cfg.quant.scheme, **extra_meta},
                          device or torch.device("cpu"), lambda: train_files(cfg, resolve_dataset(cfg)), log)
    budget = measure_code_budget(len(packed.blob), cfg.quant.budget_bytes)
    if enforce_budget:
        check_budget(budget)
    save_artifact_bytes(path, packed.blob)
    report_path = path.with_name(path.stem + TENSOR_REPORT_SUFFIX)
    quant = {k: v for k, v in packed.quant_meta.items() if k != "policy_rules"}
    atomic_write_json(report_path, {"artifact": str(path), "quant": quant, "tensors": packed.rows})
    return packing_report(path, packed.codec, budget) | {
        "payload_bytes": packed.quantized.stats["payload_bytes"], "transform": packed.transform, "quant": quant,
        "tensor_rows": packed.rows, "tensor_report": str(report_path), "pack_seconds": packed.seconds,
        "warnings": packed.warnings}


def measure_code_budget(model_bytes: int, limit: int = BUDGET_BYTES) -> Budget:
    """Budget of `model_bytes` plus the bytes of the pgolf code imported in this process."""
    files = tuple(code_files())
    return Budget(code_bytes=count_code_bytes(files), model_bytes=model_bytes, limit=limit, code_files=files)


def packing_report(path: Path, codec: str, budget: Budget) -> dict[str, Any]:
    """Budget numbers of an artifact as a plain dict (summary.json / CLI)."""
    files = budget.code_files
    root = Path(files[0]).parent if files else Path(".")
    return {"artifact": str(path), "codec": codec, "model_bytes": budget.model_bytes, "code_bytes": budget.code_bytes,
            "artifact_bytes": budget.total, "budget_margin": budget.margin, "fits_budget": budget.fits,
            "budget_limit": budget.limit,
            "code_files": [str(Path(f).relative_to(root.parent)) if root.parent in Path(f).parents else str(f) for f in files],
            "budget_report": budget.report()}


def load_packed_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    quantized, meta = read_artifact(path)
    return dequantize(quantized), meta


# ---- training -----------------------------------------------------------------------------------
def _new_run_id(ctx: DistContext) -> str:
    run_id = [time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]]
    if ctx.distributed:
        dist.broadcast_object_list(run_id, src=0)
    return run_id[0]


def load_run_config(run_dir: Path) -> Config:
    return config_from_dict(read_toml_file(run_dir / "config.toml"), f"{run_dir}/config.toml")


def _wrap_for_training(model: GPT, cfg: Config, ctx: DistContext, logger: RunLogger, switches: SwitchTensors):
    """The training loss function: [late-QAT fake quantization] → [torch.compile] → [DDP].

    Parallel Muon synchronises gradients itself, so it needs no DDP wrapper.
    """
    module: nn.Module = model
    if cfg.train.late_qat_threshold > 0:
        bits = late_qat_bits(model, cfg)
        widths = Counter(bits.values())
        logger.log("late_qat: " + " ".join(f"int{b}:{n}" for b, n in sorted(widths.items()))
                   + f" matrices (quant.scheme={cfg.quant.scheme})")
        module = QATForward(model, bits_from_mapping(bits), switches.qat)
    use_compile = compile_enabled(cfg, ctx.device)
    forward, compile_info = maybe_compile(module, use_compile, on_fallback=lambda why: logger.log(f"torch_compile:{why}"),
                                          dynamic=False, fullgraph=True, backend=cfg.train.compile_backend)
    logger.log(f"torch_compile:{compile_info.enabled} ({compile_info.reason})")
    ddp = None
    if ctx.distributed and cfg.optim.muon_impl != "parallel":
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        ddp = DistributedDataParallel(forward, device_ids=device_ids, broadcast_buffers=False)
        forward = ddp
    return forward, ddp, compile_info


def run_train(cfg: Config, resume_dir: Path | None = None) -> dict[str, Any]:
    """Train, pack, evaluate; write the run directory and return summary.json's content."""
    ctx = init_distributed(cfg.train.device)
    try:
        return _run_train(cfg, ctx, resume_dir)
    finally:
        shutdown(ctx)


@dataclass
class TrainingSetup:
    """Everything a training run needs, built from the config (shared by `train` and `bench train`)."""

    trainer: Trainer
    model: GPT
    eval_data: EvalData
    params: int
    manifest: dict[str, Any]


def prepare_training(cfg: Config, ctx: DistContext, run_dir: Path | None, logger: RunLogger,
                     clock: PhaseClock) -> TrainingSetup:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(cfg.run.seed)
    paths = resolve_dataset(cfg)
    files = train_files(cfg, paths)
    for warning in check_dataset(paths.dataset_dir, files, cfg.data.expected_train_shards):
        logger.log(f"data_warning: {warning}")
    accum = resolve_grad_accum(cfg, ctx.world_size)
    manifest = {
        "code_sha256": provenance.code_hash(), "git_commit": provenance.git_commit(),
        "config": cfg.to_dict(), "seed": cfg.run.seed,
        "data": provenance.data_fingerprint(paths.dataset_dir, paths.tokenizer_path, files),
        "environment": provenance.environment(ctx.device, ctx.world_size),
    }
    dtype = autocast_dtype(cfg, ctx.device)
    model = build_model(cfg.model, ctx.device, low_precision_storage=ctx.device.type == "cuda")
    # Newton–Schulz is compiled on its own, as the baseline does (one graph per matrix/bank shape)
    orthogonalize, _ = maybe_compile(orthogonalizer_for(cfg), compile_enabled(cfg, ctx.device), fullgraph=True, dynamic=False,
                                     backend=cfg.train.compile_backend,
                                     on_fallback=lambda why: logger.log(f"newton_schulz_compile:{why}"))
    optimizers, muon = build_optimizers(model, cfg, ctx.device, orthogonalize=orthogonalize)
    switches = SwitchTensors(ctx.device)
    forward, ddp, compile_info = _wrap_for_training(model, cfg, ctx, logger, switches)
    t = cfg.train
    averagers = Averagers.for_model(model, t.ema_decay, t.ema_start_step, t.swa_every, t.swa_max_lr_scale)
    eval_data = load_eval_data(cfg, paths, cfg.train.train_seq_len)
    params = count_parameters(model)
    logger.log(f"model_params:{params} world_size:{ctx.world_size} grad_accum_steps:{accum} "
               f"device:{ctx.device} autocast:{dtype} attention:{manifest['environment']['attention_backend']}")
    logger.log(f"train_shards:{len(files)} val_tokens:{eval_data.tokens.numel() - 1} seed:{cfg.run.seed}")
    parts = TrainerParts(
        cfg=cfg, ctx=ctx, model=model, forward=forward, ddp=ddp, optimizers=optimizers, muon=muon,
        make_loader=lambda: make_train_loader(cfg.data.loader, files, ctx.rank, ctx.world_size, ctx.device),
        grad_accum_steps=accum, autocast_dtype=dtype,
        evaluate=lambda: evaluate_model(model, eval_data, cfg, ctx)[0],
        logger=logger, clock=clock,
        checkpoint_path=run_dir / CHECKPOINT_NAME if run_dir is not None and cfg.train.checkpoint_every > 0 else None,
        switches=switches, averagers=averagers if averagers.enabled else None,
        recompiles=RecompileCounter(t.max_recompiles) if compile_info.enabled else None,
    )
    return TrainingSetup(Trainer(parts), model, eval_data, params, manifest)


def _run_train(cfg: Config, ctx: DistContext, resume_dir: Path | None) -> dict[str, Any]:
    validate(cfg, world_size=ctx.world_size)
    clock = PhaseClock(sync=torch.cuda.synchronize if ctx.device.type == "cuda" else (lambda: None))
    with clock.phase("startup"):
        resolve_dataset(cfg)  # fail on bad data before anything is written
        if resume_dir is None:
            cfg.run.run_id = cfg.run.run_id or _new_run_id(ctx)
            run_dir = Path(cfg.run.out_dir) / cfg.run.run_id
            if ctx.is_main and (run_dir / "summary.json").exists():
                raise UserError(f"run {run_dir} already finished: choose another RUN_ID / run.run_id")
        else:
            run_dir = resume_dir
        logger = RunLogger(run_dir, enabled=ctx.is_main)
        if ctx.is_main:
            atomic_write_text(run_dir / "config.toml", cfg.to_toml())
            logger.log(provenance.code_text(), file_only=True)
            logger.log("=" * 100, file_only=True)
        logger.log(f"run:{run_dir} resume:{resume_dir is not None}")
        cfg, proxy = apply_proxy(cfg, ctx.world_size)  # config.toml keeps the request; training uses this
        if proxy is not None:
            logger.log(proxy.describe())
        cfg = _reserve_calibration_time(cfg, logger)
        setup = prepare_training(cfg, ctx, run_dir, logger, clock)
        setup.manifest["proxy"] = proxy.to_dict() if proxy is not None else None
        logger.log(f"manifest:{_compact_json(setup.manifest)}")
    trainer = setup.trainer
    if resume_dir is not None:
        trainer.restore(load_checkpoint(run_dir / CHECKPOINT_NAME))
        logger.log(f"resumed_at_step:{trainer.state.step}")
    else:
        with clock.phase("compile_warmup"):
            trainer.prime()
    state = trainer.fit()
    return _finish(cfg, ctx, run_dir, setup, logger, clock, state)


def _finish(cfg: Config, ctx: DistContext, run_dir: Path, setup: TrainingSetup, logger: RunLogger,
            clock: PhaseClock, state: Any) -> dict[str, Any]:
    model, eval_data, manifest, params = setup.model, setup.eval_data, setup.manifest, setup.params
    averaged = None
    if setup.trainer.p.averagers is not None:
        with clock.phase("eval_averages", "eval"):
            averaged = apply_averaged_weights(model, setup.trainer.p.averagers,
                                              lambda: evaluate_model(model, eval_data, cfg, ctx)[0], logger)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    sha = weights_sha256(state_dict)
    artifact_path = run_dir / ARTIFACT_NAME
    with clock.phase("pack"):
        if ctx.is_main:
            write_artifact(run_dir / WEIGHTS_NAME, float_weights(state_dict), {"config": cfg.to_dict(), "kind": "float"})
            packed = pack_state_dict(state_dict, cfg, artifact_path, {"weights_sha256": sha, "run_id": cfg.run.run_id},
                                     device=ctx.device, log=logger.log)
            report = packed["budget_report"].splitlines()
            logger.log("\n".join(line for line in report if not line.startswith("  counted:")))
            logger.log("\n".join(line for line in report if line.startswith("  counted:")), file_only=True)
        barrier(ctx)
    calibration_budget = _calibration_budget(cfg, state, packed["quant"], logger) if ctx.is_main else {}
    if averaged is not None and averaged.applied in averaged.scores:
        pre = averaged.scores[averaged.applied]
    else:
        with clock.phase("eval_float", "eval"):
            pre, _ = evaluate_model(model, eval_data, cfg, ctx)
    logger.log(f"pre_quant val_loss:{pre.val_loss:.8f} val_bpb:{pre.val_bpb:.8f}")
    with clock.phase("eval_artifact", "eval"):
        restored, _ = load_packed_state(artifact_path)
        model.load_state_dict(restored, strict=True)
        post, _ = evaluate_model(model, eval_data, cfg, ctx)
    label = "int8_zlib" if (cfg.quant.scheme, cfg.quant.codec) == ("int8", "zlib") else f"{cfg.quant.scheme}_{cfg.quant.codec}"
    logger.log(f"final_{label}_roundtrip_exact val_loss:{post.val_loss:.8f} val_bpb:{post.val_bpb:.8f}")
    stages = _run_eval_stages(model, eval_data, cfg, ctx, logger, clock)
    headline = stages[-1] if stages else {"stage": "plain", **post.to_dict(), "legality": ruling("plain")}
    logger.log(clock.table())
    if not ctx.is_main:
        return {}
    summary = {
        "val_loss": headline["val_loss"], "val_bpb": headline["val_bpb"], "val_tokens": headline["val_tokens"],
        "val_bytes": headline["val_bytes"], "eval_stage": headline["stage"], "legality": headline["legality"],
        "eval_stages": stages,
        "pre_quant_val_loss": pre.val_loss, "pre_quant_val_bpb": pre.val_bpb,
        "post_quant_val_loss": post.val_loss, "post_quant_val_bpb": post.val_bpb,
        "quant_gap_bpb": post.val_bpb - pre.val_bpb,
        "artifact_bytes": packed["artifact_bytes"], "code_bytes": packed["code_bytes"], "model_bytes": packed["model_bytes"],
        "budget_margin": packed["budget_margin"], "fits_budget": packed["fits_budget"], "codec": packed["codec"],
        "transform": packed["transform"], "quant": packed["quant"], "pack_seconds": packed["pack_seconds"],
        "code_files": packed["code_files"], "params": params, "steps": state.step, "train_tokens": state.train_tokens,
        "train_tokens_per_s": state.train_tokens / max(state.training_time_ms / 1000.0, 1e-9),
        "wallclock_s": state.training_time_ms / 1000.0, "stopped_early": state.stopped_early,
        "last_train_loss": state.last_train_loss, "seed": cfg.run.seed, "preset": cfg.run.preset,
        "run_id": cfg.run.run_id, "git_commit": manifest["git_commit"], "weights_sha256": sha,
        "artifact_sha256": sha256_file(artifact_path), "phases": clock.to_dict(), "proxy": manifest.get("proxy"),
        "manifest": manifest,
        "recompiles_after_warmup": state.recompiles, **calibration_budget,
        **(averaged.summary() if averaged is not None else {}),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    logger.close()
    return summary


def _reserve_calibration_time(cfg: Config, logger: RunLogger) -> Config:
    """Stop training `quant.calibration_reserve_seconds` early when packing will read training data.

    Calibrating on training shards is legal only inside the training budget (TECHNIQUES §4.5.2).
    """
    cap, reserve = cfg.train.max_wallclock_seconds, cfg.quant.calibration_reserve_seconds
    if not reads_train_calibration(cfg) or cap <= 0:
        return cfg
    if reserve == 0:
        logger.log("calibration_warning: quant.calibration=train reads training shards after the training clock "
                   "stops; set quant.calibration_reserve_seconds so the pass fits in train.max_wallclock_seconds")
        return cfg
    logger.log(f"calibration_reserve: training stops at {cap - reserve:.1f}s so the calibration pass fits in the "
               f"{cap:.1f}s budget")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_wallclock_seconds=cap - reserve))


def _calibration_budget(cfg: Config, state: Any, quant: dict[str, Any], logger: RunLogger) -> dict[str, Any]:
    """Training time + the calibration pass against the budget, for runs that calibrate on training data."""
    if not reads_train_calibration(cfg) or cfg.train.max_wallclock_seconds <= 0:
        return {}
    budget = cfg.train.max_wallclock_seconds + cfg.quant.calibration_reserve_seconds
    used = state.training_time_ms / 1000.0 + quant["calibration"]["pass_seconds"]
    inside = used <= budget
    logger.log(f"calibration_budget: training {state.training_time_ms / 1000.0:.1f}s + calibration pass "
               f"{quant['calibration']['pass_seconds']:.1f}s = {used:.1f}s of {budget:.1f}s: "
               + ("inside the training budget" if inside else "OVER the training budget: raise "
                  "quant.calibration_reserve_seconds or calibrate with quant.calibration=ar"))
    return {"train_plus_calibration_s": used, "calibration_inside_budget": inside}


def _run_eval_stages(model: GPT, eval_data: EvalData, cfg: Config, ctx: DistContext, logger: RunLogger,
                     clock: PhaseClock) -> list[dict[str, Any]]:
    """The eval stages the config asks for beyond plain (sliding, TTT, SLOT), on the artifact's weights.

    The last one is the run's headline val_bpb, as in the records' scripts; none runs by default.
    """
    extra = eval_stages(cfg)[1:]
    if not extra:
        return []
    with clock.phase("eval_stages", "eval"):
        results = run_stages(model, extra, cfg, eval_data.tokens, eval_data.lut, ctx, autocast_dtype(cfg, ctx.device))
    reports = [report for report, _ in results]
    for report in reports:
        logger.log(f"final_{report['stage']}_exact {stage_line(report)}")
    return reports


def _compact_json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
