"""The `policy` and `fit` schemes: every tensor at the format the run's `QuantPlan` gives it.

Round-to-nearest or GPTQ (`quant.gptq`), LQER corrections (`quant.lqer_rank`), and for `fit` the bit
widths re-solved until the real artifact fits the budget (`pgolf.packing.fitted`, imported only by `fit`
runs). A run of the `int8` scheme never imports this module, nor the policy, mixed-precision and
calibration modules it uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pgolf.config import Config, parse_fit_bits
from pgolf.errors import ArtifactError
from pgolf.model.gpt import GPT, build_model
from pgolf.packing import Encoder, Packed
from pgolf.precision import autocast_dtype
from pgolf.quant.container import QuantizedModel, is_correction
from pgolf.quant.mixed import GPTQOptions, TensorQuantizer, quantize_mixed
from pgolf.quant.plan import QuantPlan
from pgolf.quant.policy import Assignment, TensorFormat
from pgolf.quant.report import tensor_rows

if TYPE_CHECKING:  # quant.calibration, quant.gptq and quant.fit are imported where the config uses them
    from pgolf.quant.calibration import Calibration, TrainFiles


def pack_planned(state_dict: dict[str, Tensor], cfg: Config, encode: Encoder, device: torch.device,
                 train_files: TrainFiles, log: Callable[[str], None], uniform_bits: int | None,
                 calibration: Calibration | None, plan: QuantPlan | None, world_size: int) -> Packed:
    """`state_dict` (on CPU) quantized and encoded per the plan (`pgolf.packing.pack_weights` documents the rest)."""
    q = cfg.quant
    plan = plan if plan is not None else QuantPlan.resolve(cfg, state_dict)
    if plan.policy is None or plan.assignment is None or set(plan.assignment.formats) != set(state_dict):
        raise ArtifactError(f"the quantization plan ({plan.scheme}) was resolved for other tensors than the weights "
                            "being packed: resolve it from the same model")
    policy, assignment = plan.policy, _with_uniform_bits(plan.assignment, uniform_bits)
    for warning in assignment.warnings:
        log(f"warning: {warning}")
    quant_meta: dict[str, Any] = {"scheme": q.scheme, "policy": policy.name, "policy_rules": policy.source,
                                  "gptq": q.gptq, "prune_fraction": q.prune_fraction}
    hessians: dict[str, Tensor] = {}
    if q.gptq or q.scheme == "fit":
        from pgolf.quant.calibration import CALIBRATION_BATCH, calibration_sequences

        model = _float_model(state_dict, cfg, device)
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

        sensitivity = measure_sensitivity(model, state_dict, assignment.formats, parse_fit_bits(q.fit_bits),
                                          quantizer, sequences, autocast_dtype(cfg, device))
    if "calibration" in quant_meta:  # everything that read the calibration tokens: sequences, Hessians, sensitivities
        quant_meta["calibration"]["pass_seconds"] = time.perf_counter() - pass_start
    if q.scheme == "fit":
        from pgolf.packing.fitted import pack_fitted

        packed = pack_fitted(state_dict, assignment.formats, sensitivity, quantizer, encode, cfg, quant_meta)
    else:
        packed = _mixed(state_dict, assignment.formats, quantizer, encode, cfg, quant_meta)
    labels = {n: f"lqer int{qt.bits}" if is_correction(n) else
              str(assignment.formats[n].with_bits(qt.bits) if qt.bits else assignment.formats[n])
              for n, qt in packed.quantized.items()}
    packed.rows = tensor_rows(state_dict, packed.quantized, labels)
    packed.warnings = list(assignment.warnings)
    return packed


def _float_model(state_dict: Mapping[str, Tensor], cfg: Config, device: torch.device) -> GPT:
    model = build_model(cfg.model, device)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    return model


def _with_uniform_bits(assignment: Assignment, bits: int | None) -> Assignment:
    """`assignment` with every int-k tensor at `bits` (a size projection), or unchanged when None."""
    if bits is None:
        return assignment
    return Assignment({n: f.with_bits(bits) if f.bits else f for n, f in assignment.formats.items()},
                      assignment.warnings)


def _mixed(state_dict: Mapping[str, Tensor], formats: Mapping[str, TensorFormat], quantizer: TensorQuantizer,
           encode: Encoder, cfg: Config, quant_meta: dict[str, Any]) -> Packed:
    """Every tensor at its planned format, plus LQER corrections of the worst-quantized ones when asked."""
    qm, quant_meta["methods"] = quantize_mixed(state_dict, formats, quantizer)
    qm = with_lqer(qm, state_dict, cfg, quant_meta)
    blob, codec, transform = encode(qm, quant_meta)
    return Packed(blob, codec, transform, qm, [], quant_meta)


def with_lqer(qm: QuantizedModel, state_dict: Mapping[str, Tensor], cfg: Config,
               quant_meta: dict[str, Any]) -> QuantizedModel:
    """`qm` plus LQER corrections of its worst-quantized matrices when `quant.lqer_rank` > 0 (named in the meta)."""
    q = cfg.quant
    if q.lqer_rank <= 0:
        return qm
    from pgolf.quant.lqer import LQERSettings, add_lqer

    qm = add_lqer(qm, state_dict, LQERSettings(q.lqer_rank, q.lqer_top_k, q.lqer_group, q.lqer_factor_bits))
    quant_meta["lqer"] = [n for n in qm if is_correction(n)]
    return qm
