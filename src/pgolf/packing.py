"""Quantize and encode a float state dict as the config's `[quant]` section says.

* ``int8``   — the baseline's export, bit-identical (`quant.int8`).
* ``policy`` — the formats of `quant.policy`, round-to-nearest or GPTQ (`quant.gptq`).
* ``fit``    — the policy's formats with the bit width of every int-k tensor chosen from
  `quant.fit_bits` to minimise the measured loss increase while code + artifact bytes stay within
  `quant.budget_bytes − quant.budget_margin`. Sizes are first estimated, then checked by encoding the
  real artifact; the target is corrected and the allocation re-solved until the real bytes fit.

GPTQ Hessians and fit sensitivities use calibration tokens from `quant.calibration` (self-generated or
training shards, never validation data); the source, its legality note and its cost go into the
artifact's meta.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pgolf.artifact.budget import shipped_code
from pgolf.artifact.format import encode_artifact
from pgolf.config import CALIBRATION_SOURCES, Config, parse_fit_bits
from pgolf.errors import ArtifactError
from pgolf.model.gpt import GPT, build_model
from pgolf.precision import autocast_dtype
from pgolf.quant.calibration import self_generated_sequences, train_sequences
from pgolf.quant.container import QuantizedModel, QuantizedTensor, is_correction
from pgolf.quant.mixed import GPTQOptions, TensorQuantizer, quantize_mixed
from pgolf.quant.policy import Assignment, TensorFormat, assign_formats, load_policy
from pgolf.quant.report import estimated_bytes, tensor_rows

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


Calibration = tuple[Tensor, dict[str, Any]]


def calibration_sequences(cfg: Config, model: GPT, train_files: TrainFiles) -> Calibration:
    """Calibration token rows (count, seq_len + 1) from `quant.calibration`, and their record for the meta."""
    q = cfg.quant
    seq_len = q.calibration_seq_len or cfg.train.train_seq_len
    start = time.perf_counter()
    if q.calibration == "train":
        sequences = train_sequences(train_files(), q.calibration_seqs, seq_len)
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
                 uniform_bits: int | None = None, calibration: Calibration | None = None) -> Packed:
    """Quantize `state_dict` per `cfg.quant` and encode it with `meta` (config, provenance).

    `uniform_bits` forces every int-k tensor of the policy to that width (size projections);
    `calibration` reuses tokens from `calibration_sequences` (several packings of one model).
    """
    start = time.perf_counter()
    cpu_state = {k: v.detach().cpu() for k, v in state_dict.items()}
    encode = _Encoder(cfg, meta)
    q = cfg.quant
    if q.scheme == "int8":
        from pgolf.quant.int8 import quantize_state_dict_int8
        qm = quantize_state_dict_int8(cpu_state)
        blob, codec, transform = encode(qm, {"scheme": "int8"})
        labels = {n: f"int{qt.bits}" if qt.bits else str(qt.data.dtype).removeprefix("torch.") for n, qt in qm.items()}
        return Packed(blob, codec, transform, qm, tensor_rows(cpu_state, qm, labels), {"scheme": "int8"},
                      seconds=time.perf_counter() - start)

    policy = load_policy(q.policy)
    assignment = assign_formats(policy, cpu_state)
    if uniform_bits is not None:
        assignment = Assignment({n: f.with_bits(uniform_bits) if f.bits else f for n, f in assignment.formats.items()},
                                assignment.warnings)
    for warning in assignment.warnings:
        log(f"warning: {warning}")
    quant_meta: dict[str, Any] = {"scheme": q.scheme, "policy": policy.name, "policy_rules": policy.source,
                                  "gptq": q.gptq, "prune_fraction": q.prune_fraction}
    hessians: dict[str, Tensor] = {}
    if q.gptq or q.scheme == "fit":
        model = _float_model(cpu_state, cfg, device)
        pass_start = time.perf_counter()
        sequences, record = calibration or calibration_sequences(cfg, model, train_files)
        quant_meta["calibration"] = record = dict(record)
        log(f"calibration: {record['tokens']:,} tokens from {record['source']} ({record['legality']}) "
            f"in {record['seconds']:.1f}s")
        if q.gptq:
            from pgolf.quant.gptq import collect_hessians, hessian_names
            wanted = {n for n, f in assignment.formats.items() if f.bits is not None} & hessian_names(model)
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
        qm, methods = quantize_mixed(cpu_state, assignment.formats, quantizer)
        quant_meta["methods"] = methods
        if q.lqer_rank > 0:
            from pgolf.quant.lqer import LQERSettings, add_lqer

            qm = add_lqer(qm, cpu_state, LQERSettings(q.lqer_rank, q.lqer_top_k, q.lqer_group, q.lqer_factor_bits))
            quant_meta["lqer"] = [n for n in qm if is_correction(n)]
        blob, codec, transform = encode(qm, quant_meta)
        packed = Packed(blob, codec, transform, qm, [], quant_meta)
    labels = {n: f"lqer int{qt.bits}" if is_correction(n) else
              str(assignment.formats[n].with_bits(qt.bits) if qt.bits else assignment.formats[n])
              for n, qt in packed.quantized.items()}
    packed.rows = tensor_rows(cpu_state, packed.quantized, labels)
    packed.warnings = list(assignment.warnings)
    packed.seconds = time.perf_counter() - start
    return packed


def _fit(state_dict: Mapping[str, Tensor], formats: Mapping[str, TensorFormat], sensitivity: Sensitivity,
         quantizer: TensorQuantizer, encode: _Encoder, cfg: Config, quant_meta: Mapping[str, Any]) -> Packed:
    """Re-solve the allocation with a corrected target until the real artifact fits; keep the best fit."""
    from pgolf.quant.fit import allocate_bits

    fixed = {n: quantizer.quantize(n, t, formats[n])[0] for n, t in state_dict.items() if n not in sensitivity.est_bytes}
    fixed_est = sum(estimated_bytes(qt) for qt in fixed.values())
    available = cfg.quant.budget_bytes - cfg.quant.budget_margin - shipped_code(cfg)[0]
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
        for name, tensor in state_dict.items():
            tensors[name] = fixed[name] if name in fixed else sensitivity.quantized[name][bits[name]]
        qm = QuantizedModel(tensors)
        predicted = sum(sensitivity.loss_increase[n][b] for n, b in bits.items())
        methods = {n: sensitivity.methods[n][b] for n, b in bits.items()}
        meta = {**quant_meta, "methods": methods, "fit_bits": bits, "fit_predicted_loss_increase": predicted,
                "fit_available_bytes": available, "fit_rounds": round_index + 1,
                "fit_base_calibration_loss": sensitivity.base_loss}
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
