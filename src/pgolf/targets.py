"""`pgolf eval` and `pgolf pack` on whatever the user has: a run directory, a pgolf artifact, or
the official script's `final_model.pt` / `final_model.int8.ptz`.

Official files are read with `torch.load(weights_only=True)` only; pgolf files never unpickle.
The evaluation modes are imported only by the commands that run them, so the code bytes that
`pgolf pack` counts do not include TTT/SLOT code a plain submission does not use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgolf.artifact.budget import check_budget
from pgolf.artifact.format import (
    MAGIC,
    encode_artifact,
    looks_like_zlib,
    read_artifact_meta,
    save_artifact_bytes,
)
from pgolf.artifact.official import load_official_checkpoint, read_official_int8
from pgolf.config import Config, eval_context
from pgolf.data.manifest import DatasetPaths
from pgolf.data.resolve import EvalData, load_eval_data, resolve_dataset
from pgolf.errors import UserError
from pgolf.evaluate.ledger import LedgerResult, NormalizationAudit
from pgolf.model.gpt import GPT, build_model
from pgolf.packing import load_packed_state, measure_code_budget, pack_result, pack_state_dict
from pgolf.rundir import ARTIFACT_NAME, WEIGHTS_NAME, PackResult
from pgolf.train.distributed import DistContext, choose_device, init_distributed, shutdown
from pgolf.train.runtime import autocast_dtype
from pgolf.utils import atomic_write_bytes

ConfigLoader = Callable[..., Config]
PGOLF_SUFFIX = ".pgolf"


def _is_pgolf_file(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def _describe(target: Path) -> tuple[str, Path]:
    """('run' | 'pgolf' | 'official', file to read)."""
    if target.is_dir():
        if not (target / "config.toml").is_file():
            raise UserError(f"{target} is a folder but not a run directory (no config.toml): pass runs/<run_id>")
        return "run", target / ARTIFACT_NAME
    if not target.is_file():
        raise UserError(f"{target} does not exist: pass an artifact, a run directory or an official final_model file")
    return ("pgolf" if _is_pgolf_file(target) else "official"), target


# `pgolf eval` / `pgolf verify` options that are shorthands for config keys
EVAL_OPTION_KEYS = {"context": "eval.context", "stride": "eval.stride", "ttt": "eval.ttt", "slot": "eval.slot",
                    "max_eval_seconds": "eval.max_eval_seconds"}


def _args_overrides(args: argparse.Namespace) -> list[str]:
    extra = []
    if getattr(args, "data", None):
        extra.append(f"data.dataset={args.data}")
    if getattr(args, "tokenizer", None):
        extra.append(f"data.tokenizer={args.tokenizer}")
    for option, key in EVAL_OPTION_KEYS.items():
        if getattr(args, option, None) is not None:
            extra.append(f"{key}={getattr(args, option)}")
    return list(args.overrides) + extra


def _config_for(kind: str, file: Path, target: Path, args: argparse.Namespace, load: ConfigLoader) -> Config:
    args.overrides = _args_overrides(args)
    if kind == "official":
        args.preset = args.preset or "baseline"
        return load(args)
    source = target / WEIGHTS_NAME if kind == "run" and not file.is_file() else file
    meta = read_artifact_meta(source)
    if "config" not in meta:
        raise UserError(f"{source} carries no config: pass --preset/--config describing its model")
    return load(args, base=meta["config"])


def _load_into_model(state: dict[str, torch.Tensor], cfg: Config, device: torch.device) -> GPT:
    model = build_model(cfg.model, device, low_precision_storage=device.type == "cuda")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"the weights do not fit the configured model ({first}): pass the --preset/--set of the run "
                        "that produced them") from None
    return model


@dataclass
class LoadedTarget:
    cfg: Config
    ctx: DistContext
    model: GPT
    data: EvalData
    paths: DatasetPaths
    source: str


def load_target(target: Path, args: argparse.Namespace, load: ConfigLoader) -> LoadedTarget:
    """Config, model and val data of a run, artifact or official file (the caller shuts `ctx` down)."""
    kind, file = _describe(target)
    cfg = _config_for(kind, file, target, args, load)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    ctx = init_distributed(cfg.train.device)
    try:
        if kind == "official":
            state, source = _record_state(file, cfg), f"official:{file.name}"
        else:
            state, _ = load_packed_state(file)
            source = f"pgolf:{file}"
        paths = resolve_dataset(cfg)
        data = load_eval_data(cfg, paths, cfg.train.train_seq_len)
        model = _load_into_model(state, cfg, ctx.device)
    except BaseException:
        shutdown(ctx)
        raise
    return LoadedTarget(cfg, ctx, model, data, paths, source)


def evaluate_target(target: Path, args: argparse.Namespace, load: ConfigLoader) -> dict[str, Any]:
    """Run every stage the config asks for; the last one is the headline score."""
    from pgolf.evaluate.modes import eval_stages, run_stages

    loaded = load_target(target, args, load)
    cfg, ctx = loaded.cfg, loaded.ctx
    dump = getattr(args, "dump_losses", None)
    try:
        stages = run_stages(loaded.model, eval_stages(cfg), cfg, loaded.data.tokens, loaded.data.lut, ctx,
                            autocast_dtype(cfg, ctx.device), keep_losses=dump is not None)
    finally:
        shutdown(ctx)
    if dump is not None and ctx.is_main:
        _dump_stage_losses(Path(dump), stages)
    headline = stages[-1][0]
    return {**{k: headline[k] for k in ("val_loss", "val_bpb", "val_tokens", "val_bytes", "loss_sum_nats")},
            "stage": headline["stage"], "complete": headline["complete"], "legality": headline["legality"],
            "stages": [report for report, _ in stages], "source": loaded.source,
            "seq_len": cfg.train.train_seq_len, "eval_context": eval_context(cfg),
            "tokenizer": str(loaded.paths.tokenizer_path), "dataset": str(loaded.paths.dataset_dir)}


def _dump_stage_losses(path: Path, stages: list[tuple[dict[str, Any], LedgerResult]]) -> None:
    """The headline stage's losses to `path`; earlier stages beside it as `<stem>.<stage>.npy`."""
    for index, (report, result) in enumerate(stages):
        assert result.losses is not None
        last = index == len(stages) - 1
        _save_npy(path if last else path.with_name(f"{path.stem}.{report['stage']}.npy"), result.losses)


def verify_target(target: Path, args: argparse.Namespace, load: ConfigLoader) -> list[dict[str, Any]]:
    """`pgolf verify`: the legality checks on the first `args.tokens` val tokens, for each mode."""
    from pgolf.evaluate.modes import (
        VERIFY_MODES,
        Mode,
        eval_stages,
        mode_by_name,
        run_mode,
        scoring_for,
    )
    from pgolf.evaluate.verify import verify_mode

    args.overrides = [*args.overrides, f"eval.val_max_tokens={args.tokens}"]
    loaded = load_target(target, args, load)
    cfg, ctx = loaded.cfg, loaded.ctx
    asked = args.mode or []
    names = list(VERIFY_MODES) if "all" in asked else (asked or [m.name for m in eval_stages(cfg)])
    modes = {name: mode_by_name(cfg, name) for name in names}
    dtype = autocast_dtype(cfg, ctx.device)
    reports = []
    loaded.model.eval()
    try:
        for name, mode in modes.items():
            def run(tokens: torch.Tensor, audit: NormalizationAudit | None, mode: Mode = mode) -> LedgerResult:
                scoring = scoring_for(mode, cfg, tokens, loaded.data.lut, ctx, dtype, keep_losses=True, audit=audit)
                return run_mode(loaded.model, mode, cfg, scoring)

            reports.append(verify_mode(name, run, loaded.data.tokens, cfg.model.vocab_size, args.positions, args.seed))
    finally:
        shutdown(ctx)
    return reports


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float64), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _pack_overrides(args: argparse.Namespace) -> list[str]:
    """`pgolf pack` flags as config overrides, so they are validated like any --set."""
    extra = []
    if getattr(args, "policy", None):
        extra += ["quant.scheme=fit" if getattr(args, "fit", False) else "quant.scheme=policy",
                  f"quant.policy={args.policy}"]
    elif getattr(args, "fit", False):
        extra.append("quant.scheme=fit")
    if getattr(args, "gptq", False):
        extra.append("quant.gptq=true")
    for flag in ("codec", "transform"):
        if getattr(args, flag, None):
            extra.append(f"quant.{flag}={getattr(args, flag)}")
    return extra


def _stderr(message: str) -> None:
    print(f"pgolf: {message}", file=sys.stderr, flush=True)


def pack_target(target: Path, args: argparse.Namespace, load: ConfigLoader) -> dict[str, Any]:
    """Quantize and pack a run's float weights (or an official export) per the config; refuse to write an
    artifact that would exceed `quant.budget_bytes`. Returns the `PackResult` as `pgolf pack` prints it."""
    return _pack_target(target, args, load).to_dict()


def _pack_target(target: Path, args: argparse.Namespace, load: ConfigLoader) -> PackResult:
    kind, file = _describe(target)
    if kind == "run":
        file = target / WEIGHTS_NAME
        if not file.is_file():
            raise UserError(f"{target} has no {WEIGHTS_NAME}: the run did not finish training")
    args.overrides = list(args.overrides) + _pack_overrides(args)
    cfg = _config_for(kind, file, target, args, load)
    out = args.out or (target / ARTIFACT_NAME if kind == "run" else file.with_name(file.stem + ".pgolf"))
    if kind == "official" and _is_official_int8(file):
        official_meta = {"config": cfg.to_dict(), "source": f"official:{file.name}"}
        level = None if cfg.quant.codec_level < 0 else cfg.quant.codec_level
        blob, codec, transform = encode_artifact(read_official_int8(file), official_meta, codec=cfg.quant.codec,
                                                 level=level, transform=cfg.quant.transform)
        budget = measure_code_budget(cfg, len(blob))
        check_budget(budget)
        save_artifact_bytes(out, blob)
        return pack_result(out, codec, budget, transform)
    if kind == "official":
        state = _record_state(file, cfg)
    else:
        state, meta = load_packed_state(file)
        if meta.get("kind") != "float":
            raise UserError(f"{file} is already a quantized artifact: pack the run's {WEIGHTS_NAME} instead")
    _load_into_model(state, cfg, torch.device("cpu"))  # refuse weights that do not match the config
    return pack_state_dict(state, cfg, out, {"source": f"{kind}:{file.name}"}, device=choose_device(cfg.train.device),
                           enforce_budget=True, log=_stderr)


def _record_state(file: Path, cfg: Config) -> dict[str, torch.Tensor]:
    """An official or record `final_model.pt` as pgolf weights (record layouts converted per the preset)."""
    from pgolf.interop import checkpoint_to_pgolf

    return checkpoint_to_pgolf(load_official_checkpoint(file), cfg.run.preset, cfg.model, str(file))


def export_record_weights(target: Path, args: argparse.Namespace, load: ConfigLoader) -> dict[str, Any]:
    """`pgolf export-weights`: a run's (or float artifact's) weights as the record script of `--preset` saves
    them, written atomically to `args.out`, ready for that script's `load_state_dict`."""
    import io

    from pgolf.interop import from_pgolf, get_format

    if not args.preset:
        raise UserError("export-weights needs --preset naming the record whose layout to write (e.g. --preset pr635)")
    fmt = get_format(args.preset)
    kind, file = _describe(target)
    if kind == "official":
        raise UserError(f"{target} is already an official/record checkpoint: pass a run directory or a .pgolf file")
    if kind == "run":
        file = target / WEIGHTS_NAME
        if not file.is_file():
            raise UserError(f"{target} has no {WEIGHTS_NAME}: the run did not finish training")
    cfg = _config_for(kind, file, target, args, load)
    state, meta = load_packed_state(file)
    if meta.get("kind") != "float":
        raise UserError(f"{file} is a quantized artifact: export the run's float {WEIGHTS_NAME} instead")
    record = from_pgolf(state, fmt.preset, cfg.model, banked=not args.unbanked, what=str(file))
    buffer = io.BytesIO()
    torch.save(record, buffer)
    atomic_write_bytes(args.out, buffer.getvalue())
    return {"out": str(args.out), "preset": fmt.preset, "record": fmt.record, "tensors": len(record),
            "parameters": sum(t.numel() for t in record.values())}


def _is_official_int8(path: Path) -> bool:
    with open(path, "rb") as handle:
        return looks_like_zlib(handle.read(2))
