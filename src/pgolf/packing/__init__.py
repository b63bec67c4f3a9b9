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

Each scheme's code is imported in its branch of `pack_weights`, so a run ships only its own: `int8` in
`quant.int8`, `policy` and `fit` in `packing.planned` (with the policy, mixed-precision, calibration,
GPTQ, fit and LQER modules it imports where the config uses them).
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
from pgolf.config import Config, reads_train_calibration
from pgolf.data import resolve
from pgolf.quant.container import QuantizedModel, QuantizedTensor, dequantize
from pgolf.quant.report import tensor_rows
from pgolf.rundir import PackResult, tensor_report_path
from pgolf.utils import atomic_write_json

if TYPE_CHECKING:  # each scheme's modules are imported in its branch of `pack_weights`
    from pgolf.quant.calibration import Calibration, TrainFiles
    from pgolf.quant.plan import QuantPlan


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


class Encoder:
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
    `quant.calibration.calibration_sequences` (several packings of one model); `world_size` is the training
    run's (`loader` calibration replays rank 0's batches). The int8 scheme uses none of them.
    """
    start = time.perf_counter()
    cpu_state = {k: v.detach().cpu() for k, v in state_dict.items()}
    encode = Encoder(cfg, meta)
    if cfg.quant.scheme == "int8":
        packed = _pack_int8(cpu_state, encode)
    else:
        from pgolf.packing.planned import pack_planned

        packed = pack_planned(cpu_state, cfg, encode, device, train_files, log, uniform_bits, calibration, plan,
                              world_size)
    packed.seconds = time.perf_counter() - start
    return packed


def _pack_int8(state_dict: dict[str, Tensor], encode: Encoder) -> Packed:
    """The baseline's int8 export (it chooses each tensor's treatment itself; no plan)."""
    from pgolf.quant.int8 import quantize_state_dict_int8

    qm = quantize_state_dict_int8(state_dict)
    blob, codec, transform = encode(qm, {"scheme": "int8"})
    labels = {n: f"int{qt.bits}" if qt.bits else str(qt.data.dtype).removeprefix("torch.") for n, qt in qm.items()}
    return Packed(blob, codec, transform, qm, tensor_rows(state_dict, qm, labels), {"scheme": "int8"})


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
