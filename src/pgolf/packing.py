"""Quantize and encode a float state dict as the config's `[quant]` section says.

* ``int8``   — the baseline's export, bit-identical (`quant.int8`).
* ``policy`` — the formats of `quant.policy`, round-to-nearest or GPTQ (`quant.gptq`).
* ``fit``    — the policy's formats with the bit width of every int-k tensor chosen from
  `quant.fit_bits` to minimise the measured loss increase while code + artifact bytes stay within
  `quant.budget_bytes − quant.budget_margin`. Sizes are first estimated, then checked by encoding the
  real artifact; the target is corrected and the allocation re-solved until the real bytes fit.
  LQER (`quant.lqer_rank` > 0) corrects each allocation's worst matrices before it is encoded, as for
  ``policy``, so the real bytes include the corrections (the predicted loss does not count their gain).

GPTQ Hessians and fit sensitivities use calibration tokens from `quant.calibration` (self-generated or
training shards, never validation data); the source, its legality note and its cost go into the
artifact's meta.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

import pgolf
from pgolf.artifact.budget import Budget, check_budget, count_code_bytes
from pgolf.artifact.format import encode_artifact, read_artifact, save_artifact_bytes
from pgolf.config import CALIBRATION_SOURCES, Config, parse_fit_bits, reads_train_calibration, resolve_grad_accum
from pgolf.data import resolve
from pgolf.data.loader import make_train_loader
from pgolf.errors import ArtifactError
from pgolf.model.gpt import GPT, build_model
from pgolf.precision import autocast_dtype
from pgolf.quant.calibration import loader_sequences, self_generated_sequences, train_sequences
from pgolf.quant.container import QuantizedModel, QuantizedTensor, dequantize, is_correction
from pgolf.quant.mixed import GPTQOptions, TensorQuantizer, quantize_mixed
from pgolf.quant.plan import QuantPlan
from pgolf.quant.policy import Assignment, TensorFormat
from pgolf.quant.report import estimated_bytes, tensor_rows
from pgolf.rundir import PackResult, tensor_report_path
from pgolf.utils import atomic_write_json

if TYPE_CHECKING:  # quant.int8, quant.gptq and quant.fit are imported where the config uses them
    from pgolf.quant.fit import Sensitivity

TrainFiles = Callable[[], list[Path]]
FIT_ROUNDS = 6
FIT_CLOSE_ENOUGH = 0.995  # stop re-solving once the artifact uses this fraction of the available bytes
CALIBRATION_BATCH = 8


@dataclass
class Packed:
    """An encoded artifact (not yet written) and what went into it."""

    blob: bytes
    codec: str
    transform: str
    quantized: QuantizedModel
    rows: list[dict[str, Any]]
    quant_meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # quantization (incl. calibration, GPTQ, fitting) and encoding


def config_train_files(cfg: Config) -> list[Path]:
    """The training shards of the config's dataset (read only when calibrating on training data)."""
    return resolve.train_files(cfg, resolve.resolve_dataset(cfg))


Calibration = tuple[Tensor, dict[str, Any]]


def calibration_sequences(cfg: Config, model: GPT, train_files: TrainFiles, world_size: int = 1) -> Calibration:
    """Calibration token rows (count, seq_len + 1) from `quant.calibration`, and their record for the meta.

    `world_size` is the training run's: `loader` replays rank 0's share of its first batches."""
    q = cfg.quant
    seq_len = q.calibration_seq_len or cfg.train.train_seq_len
    start = time.perf_counter()
    if q.calibration == "train":
        sequences = train_sequences(train_files(), q.calibration_seqs, seq_len)
    elif q.calibration == "loader":
        loader = make_train_loader(cfg.data.loader, train_files(), 0, world_size)
        sequences = loader_sequences(loader, q.calibration_seqs, cfg.train.train_batch_tokens, seq_len,
                                     resolve_grad_accum(cfg, world_size))
    else:
        sequences = self_generated_sequences(model, q.calibration_seqs, seq_len, q.calibration_temperature,
                                             q.calibration_seed, CALIBRATION_BATCH,
                                             autocast_dtype(cfg, next(model.parameters()).device))
    meta = {"source": q.calibration, "legality": CALIBRATION_SOURCES[q.calibration], "sequences": q.calibration_seqs,
            "seq_len": seq_len, "tokens": q.calibration_seqs * seq_len,
            "seconds": round(time.perf_counter() - start, 3)}
    return sequences, meta


def _float_model(state_dict: Mapping[str, Tensor], cfg: Config, device: torch.device) -> GPT:
    model = build_model(cfg.model, device)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    return model


class _Encoder:
    """Encodes a quantized model with the config's codec/transform and the run's meta."""

    def __init__(self, cfg: Config, meta: Mapping[str, Any]) -> None:
        self.cfg, self.meta = cfg, dict(meta)

    def __call__(self, qm: QuantizedModel, quant_meta: Mapping[str, Any]) -> tuple[bytes, str, str]:
        q = self.cfg.quant
        return encode_artifact(qm, {**self.meta, "quant": dict(quant_meta)}, codec=q.codec,
                               level=None if q.codec_level < 0 else q.codec_level, transform=q.transform)


def pack_weights(state_dict: Mapping[str, Tensor], cfg: Config, meta: Mapping[str, Any], device: torch.device,
                 train_files: TrainFiles, log: Callable[[str], None] = lambda _: None,
                 uniform_bits: int | None = None, calibration: Calibration | None = None,
                 plan: QuantPlan | None = None, world_size: int = 1) -> Packed:
    """Quantize `state_dict` per `cfg.quant` and encode it with `meta` (config, provenance).

    `plan` is the run's `QuantPlan` (the one late QAT rehearsed; resolved here when None); `uniform_bits`
    forces every int-k tensor to that width (size projections); `calibration` reuses tokens from
    `calibration_sequences` (several packings of one model); `world_size` is the training run's (`loader`
    calibration replays rank 0's batches).
    """
    start = time.perf_counter()
    cpu_state = {k: v.detach().cpu() for k, v in state_dict.items()}
    encode = _Encoder(cfg, meta)
    q = cfg.quant
    if q.scheme == "int8":
        return _pack_int8(cpu_state, encode, start)

    plan = plan if plan is not None else QuantPlan.resolve(cfg, cpu_state)
    if plan.policy is None or plan.assignment is None or set(plan.assignment.formats) != set(cpu_state):
        raise ArtifactError(f"the quantization plan ({plan.scheme}) was resolved for other tensors than the weights "
                            "being packed: resolve it from the same model")
    policy, assignment = plan.policy, _with_uniform_bits(plan.assignment, uniform_bits)
    for warning in assignment.warnings:
        log(f"warning: {warning}")
    quant_meta: dict[str, Any] = {"scheme": q.scheme, "policy": policy.name, "policy_rules": policy.source,
                                  "gptq": q.gptq, "prune_fraction": q.prune_fraction}
    hessians: dict[str, Tensor] = {}
    if q.gptq or q.scheme == "fit":
        model = _float_model(cpu_state, cfg, device)
        pass_start = time.perf_counter()
        sequences, record = calibration or calibration_sequences(cfg, model, train_files, world_size)
        quant_meta["calibration"] = record = dict(record)
        log(f"calibration: {record['tokens']:,} tokens from {record['source']} ({record['legality']}) "
            f"in {record['seconds']:.1f}s")
        if q.gptq:
            from pgolf.quant.gptq import collect_hessians, hessian_names

            wanted = {n for n, f in assignment.formats.items() if f.bits and f.gptq} & hessian_names(model)
            hessians = collect_hessians(model, sequences[:, :-1].split(CALIBRATION_BATCH), wanted,
                                        autocast_dtype(cfg, device))
    quantizer = TensorQuantizer(hessians, q.prune_fraction, GPTQOptions(q.gptq_block_size, q.gptq_damp))
    if q.scheme == "fit":
        from pgolf.quant.fit import measure_sensitivity

        sensitivity = measure_sensitivity(model, cpu_state, assignment.formats, parse_fit_bits(q.fit_bits),
                                          quantizer, sequences, autocast_dtype(cfg, device))
    if "calibration" in quant_meta:  # everything that read the calibration tokens: sequences, Hessians, sensitivities
        quant_meta["calibration"]["pass_seconds"] = time.perf_counter() - pass_start
    if q.scheme == "fit":
        packed = _fit(cpu_state, assignment.formats, sensitivity, quantizer, encode, cfg, quant_meta)
    else:
        packed = _mixed(cpu_state, assignment.formats, quantizer, encode, cfg, quant_meta)
    labels = {n: f"lqer int{qt.bits}" if is_correction(n) else
              str(assignment.formats[n].with_bits(qt.bits) if qt.bits else assignment.formats[n])
              for n, qt in packed.quantized.items()}
    packed.rows = tensor_rows(cpu_state, packed.quantized, labels)
    packed.warnings = list(assignment.warnings)
    packed.seconds = time.perf_counter() - start
    return packed


def _with_uniform_bits(assignment: Assignment, bits: int | None) -> Assignment:
    """`assignment` with every int-k tensor at `bits` (a size projection), or unchanged when None."""
    if bits is None:
        return assignment
    return Assignment({n: f.with_bits(bits) if f.bits else f for n, f in assignment.formats.items()},
                      assignment.warnings)


def _mixed(state_dict: Mapping[str, Tensor], formats: Mapping[str, TensorFormat], quantizer: TensorQuantizer,
           encode: _Encoder, cfg: Config, quant_meta: dict[str, Any]) -> Packed:
    """Every tensor at its planned format, plus LQER corrections of the worst-quantized ones when asked."""
    qm, quant_meta["methods"] = quantize_mixed(state_dict, formats, quantizer)
    qm = _with_lqer(qm, state_dict, cfg, quant_meta)
    blob, codec, transform = encode(qm, quant_meta)
    return Packed(blob, codec, transform, qm, [], quant_meta)


def _with_lqer(qm: QuantizedModel, state_dict: Mapping[str, Tensor], cfg: Config,
               quant_meta: dict[str, Any]) -> QuantizedModel:
    """`qm` plus LQER corrections of its worst-quantized matrices when `quant.lqer_rank` > 0 (named in the meta)."""
    q = cfg.quant
    if q.lqer_rank <= 0:
        return qm
    from pgolf.quant.lqer import LQERSettings, add_lqer

    qm = add_lqer(qm, state_dict, LQERSettings(q.lqer_rank, q.lqer_top_k, q.lqer_group, q.lqer_factor_bits))
    quant_meta["lqer"] = [n for n in qm if is_correction(n)]
    return qm


def _pack_int8(state_dict: dict[str, Tensor], encode: _Encoder, start: float) -> Packed:
    """The baseline's int8 export (it chooses each tensor's treatment itself; no plan)."""
    from pgolf.quant.int8 import quantize_state_dict_int8

    qm = quantize_state_dict_int8(state_dict)
    blob, codec, transform = encode(qm, {"scheme": "int8"})
    labels = {n: f"int{qt.bits}" if qt.bits else str(qt.data.dtype).removeprefix("torch.") for n, qt in qm.items()}
    return Packed(blob, codec, transform, qm, tensor_rows(state_dict, qm, labels), {"scheme": "int8"},
                  seconds=time.perf_counter() - start)


def _fit(state_dict: Mapping[str, Tensor], formats: Mapping[str, TensorFormat], sensitivity: Sensitivity,
         quantizer: TensorQuantizer, encode: _Encoder, cfg: Config, quant_meta: Mapping[str, Any]) -> Packed:
    """Re-solve the allocation with a corrected target until the real artifact fits; keep the best fit."""
    from pgolf.quant.fit import allocate_bits

    fixed = {n: quantizer.quantize(n, t, formats[n])[0]
             for n, t in state_dict.items() if n not in sensitivity.est_bytes}
    fixed_est = sum(estimated_bytes(qt) for qt in fixed.values())
    available = cfg.quant.budget_bytes - cfg.quant.budget_margin - counted_code(cfg)[0]
    target = float(available)
    best: Packed | None = None
    smallest_excess = None
    for round_index in range(FIT_ROUNDS):
        try:
            bits = allocate_bits(sensitivity, target - fixed_est)
        except ArtifactError:
            if best is None:
                raise
            break
        tensors: dict[str, QuantizedTensor] = {}
        for name in state_dict:
            tensors[name] = fixed[name] if name in fixed else sensitivity.quantized[name][bits[name]]
        predicted = sum(sensitivity.loss_increase[n][b] for n, b in bits.items())
        methods = {n: sensitivity.methods[n][b] for n, b in bits.items()}
        meta = {**quant_meta, "methods": methods, "fit_bits": bits, "fit_predicted_loss_increase": predicted,
                "fit_available_bytes": available, "fit_rounds": round_index + 1,
                "fit_base_calibration_loss": sensitivity.base_loss}
        qm = _with_lqer(QuantizedModel(tensors), state_dict, cfg, meta)
        blob, codec, transform = encode(qm, meta)
        if len(blob) <= available:
            if best is None or predicted < best.quant_meta["fit_predicted_loss_increase"]:
                best = Packed(blob, codec, transform, qm, [], meta)
            if len(blob) >= FIT_CLOSE_ENOUGH * available:
                break
        else:
            smallest_excess = min(len(blob) - available, smallest_excess or len(blob))
        target *= available / len(blob)
    if best is None:
        raise ArtifactError(f"quant fit: the closest allocation is still {smallest_excess:,} bytes over the "
                            f"{available:,} bytes available (budget − margin − code): allow fewer bits "
                            "(quant.fit_bits), prune (quant.prune_fraction) or try quant.codec=auto")
    return best


# ---- artifacts on disk ------------------------------------------------------------------------
def float_weights(state_dict: Mapping[str, Tensor]) -> QuantizedModel:
    """A state dict as an all-passthrough model, so float weights use the same pickle-free container."""
    return QuantizedModel({
        name: QuantizedTensor(name, "passthrough", None, t.detach().cpu().contiguous(), None, t.dtype)
        for name, t in state_dict.items()
    })


def load_packed_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The (dequantized) state dict of a pgolf file and its meta."""
    quantized, meta = read_artifact(path)
    return dequantize(quantized), meta


def counted_code(cfg: Config) -> tuple[int, tuple[Path, ...], str]:
    """(bytes, source files, how counted) of the code a run of `cfg` ships.

    Inside a single-file export that is the file itself; otherwise the export is rendered (not written).
    """
    if pgolf.SHIPPED_CODE:
        files = tuple(sorted(Path(p).resolve() for p in pgolf.SHIPPED_CODE))
        return count_code_bytes(files), files, "bytes of the shipped file itself"
    from pgolf.export import shipped_code  # tooling: an exported run counts its own file (above)

    info = shipped_code(cfg)
    return info.bytes, info.files, f"train_gpt.py as it ships: {info.form}, {len(info.modules)} modules"


def shipped_budget(cfg: Config, model_bytes: int) -> Budget:
    """Budget of `model_bytes` plus the code a run of `cfg` ships, against `quant.budget_bytes`."""
    code_bytes, files, how = counted_code(cfg)
    return Budget(code_bytes, model_bytes, cfg.quant.budget_bytes, files, how)


def measure_code_budget(cfg: Config, model_bytes: int) -> Budget:
    """Budget of `model_bytes` plus the code a run of `cfg` ships (artifact.budget.shipped_budget)."""
    return shipped_budget(cfg, model_bytes)


def pack_result(path: Path, codec: str, budget: Budget, transform: str = "none") -> PackResult:
    """The budget numbers of an artifact (no quantization details: an already-quantized input)."""
    files = budget.code_files
    root = Path(files[0]).parent.parent if files else Path(".")
    shown = tuple(str(Path(f).relative_to(root)) if root in Path(f).parents else str(f) for f in files)
    return PackResult(artifact=path, codec=codec, model_bytes=budget.model_bytes, code_bytes=budget.code_bytes,
                      budget_limit=budget.limit, code_files=shown, budget_report=budget.report(), transform=transform)


def pack_state_dict(state_dict: Mapping[str, Tensor], cfg: Config, path: Path, extra_meta: Mapping[str, Any],
                    device: torch.device | None = None, enforce_budget: bool = False,
                    log: Callable[[str], None] = lambda _: None, plan: QuantPlan | None = None,
                    world_size: int = 1) -> PackResult:
    """Quantize with the config's scheme/policy, write the artifact and its per-tensor report.

    With `enforce_budget`, an artifact that would put the submission over `quant.budget_bytes` is not
    written: ArtifactError names the exact excess.
    """
    packed = pack_weights(state_dict, cfg, {"config": cfg.to_dict(), "quant_scheme": cfg.quant.scheme, **extra_meta},
                          device or torch.device("cpu"), lambda: config_train_files(cfg), log, plan=plan,
                          world_size=world_size)
    budget = measure_code_budget(cfg, len(packed.blob))
    if enforce_budget:
        check_budget(budget)
    save_artifact_bytes(path, packed.blob)
    report_path = tensor_report_path(path)
    quant = {k: v for k, v in packed.quant_meta.items() if k != "policy_rules"}
    atomic_write_json(report_path, {"artifact": str(path), "quant": quant, "tensors": packed.rows})
    base = pack_result(path, packed.codec, budget, packed.transform)
    return dataclasses.replace(base, payload_bytes=packed.quantized.stats["payload_bytes"], quant=quant,
                               tensor_rows=tuple(packed.rows), tensor_report=report_path,
                               pack_seconds=packed.seconds, warnings=tuple(packed.warnings))


def calibration_budget(cfg: Config, training_s: float, pack: PackResult) -> tuple[dict[str, Any], str | None]:
    """Training time + the calibration pass against the training budget, for runs that calibrate on
    training data: (summary fields, log line), or ({}, None) when it does not apply."""
    if not reads_train_calibration(cfg) or cfg.train.max_wallclock_seconds <= 0:
        return {}, None
    budget = cfg.train.max_wallclock_seconds + cfg.quant.calibration_reserve_seconds
    pass_s = pack.quant["calibration"]["pass_seconds"]
    used = training_s + pass_s
    inside = used <= budget
    line = (f"calibration_budget: training {training_s:.1f}s + calibration pass {pass_s:.1f}s = {used:.1f}s of "
            f"{budget:.1f}s: " + ("inside the training budget" if inside else "OVER the training budget: raise "
                                  "quant.calibration_reserve_seconds or calibrate with quant.calibration=ar"))
    return {"train_plus_calibration_s": used, "calibration_inside_budget": inside}, line
