"""`pgolf bench bytes`: shipped bytes against the records' own.

Per record preset:

* code: the `train_gpt.py` a run of the preset ships (plain, minified, compressed: the form counted by
  default) against the code bytes the record itself counted (its submission.json, else its logs'
  "Code size" line, the compressed one where the record logs both, else its train_gpt.py's size);
* the record's own packed model (the largest its logs report) plus that shipped code: the total a pgolf
  submission would count where its model packs no larger than the record's (for `sota`,
  tests/parity/test_parity_sota_bytes.py shows pgolf's per-group streams no larger on equal tensors);
* export time: seconds a fresh process takes to measure that code (what every `pgolf train` does), with an
  empty minified-export cache (the first run of a code version) and with the entry that run left;
* model: a short training run of the preset's `_cpu` counterpart on the embedded sample, packed under
  each codec stack (each installed codec alone, + LQER, + LQER + the grouped layout), with the preset's
  policy (and its transform where the stack does not say grouped).

And the projection of `sota` at full size (synthetic weights, as `pgolf inspect` projects; the sdclip
policy with the int8 gate rule, round-to-nearest) under each stack, plus its shipped code: the total the
record's policy would count, and the order-0 entropy of its integer codes: the least a coder of independent
symbols needs for them (the grouped layout's sorted, transposed streams can go below it). Slow stacks can be
left out (`--projection`, `--codecs`; an empty list skips).

And the similarity sort of the grouped layout against the record's own `_similarity_sort_l1`, timed in the
same run on the int7 codes of an embedding of `sota`'s shape: seconds each, and whether the orders agree.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pgolf.artifact.codecs import AUTO, CODECS
from pgolf.artifact.grouping import similarity_order
from pgolf.config import Config, load_config
from pgolf.data.resolve import resolve_dataset, train_files
from pgolf.errors import UserError
from pgolf.export import CODE_FORMS, shipped_code
from pgolf.inspect_model import synthetic_weights
from pgolf.interop.records import import_record
from pgolf.packing import load_packed_state, pack_weights
from pgolf.pipeline import run_train
from pgolf.quant.calibration import calibration_sequences
from pgolf.quant.container import QuantizedModel
from pgolf.quant.intk import ClipRule, quantize_rows
from pgolf.quant.report import order0_bytes
from pgolf.rundir import WEIGHTS_NAME
from pgolf.utils import atomic_write_json

RECORD_OF_PRESET = {"baseline": "baseline", "pr635": "pr635", "pr1291": "pr1291", "proteus_v16": "proteus_v16",
                    "sota": "sota_1855"}
STACK_CODECS = ("brotli", "lzma", "zstd", "lrzip")
_CODE_SIZE = re.compile(r"Code size(?: \((compressed|uncompressed)\))?: (\d+) bytes")
_MODEL_SIZE = re.compile(r"^Serialized model (\S+): (\d+) bytes", re.MULTILINE)  # the packed one has a label


def record_code_bytes(folder: Path) -> tuple[int, str] | None:
    """(bytes, where from) of the code a record counted; None when it states none."""
    meta_path = folder / "submission.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for key in ("bytes_code", "code_bytes"):
            if isinstance(meta.get(key), int):
                return meta[key], f"{meta_path.name} {key}"
    found: dict[str, list[int]] = {}
    for log in sorted(folder.glob("*.log")):
        for kind, value in _CODE_SIZE.findall(log.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(kind or "plain", []).append(int(value))
    for kind in ("compressed", "plain"):
        if kind in found:
            return max(found[kind]), f"logs 'Code size{' (compressed)' if kind == 'compressed' else ''}' (largest)"
    script = folder / "train_gpt.py"
    return (script.stat().st_size, "train_gpt.py file size (the record states no count)") if script.is_file() else None


def record_model_bytes(folder: Path) -> tuple[int, str] | None:
    """(bytes, format label) of the largest packed model a record's logs report (its worst seed); None when
    they report none."""
    found = [(int(size), label) for log in sorted(folder.glob("*.log"))
             for label, size in _MODEL_SIZE.findall(log.read_text(encoding="utf-8", errors="replace"))]
    return max(found) if found else None


_TIMED_EXPORT = ("import sys, time\n"
                 "from pgolf.config import load_config\n"
                 "from pgolf.export import shipped_code\n"
                 "cfg = load_config(sys.argv[1], env={})\n"
                 "start = time.perf_counter()\n"
                 "shipped_code(cfg)\n"
                 "print(time.perf_counter() - start)\n")


def export_seconds(preset: str) -> dict[str, float]:
    """Seconds `shipped_code` takes for `preset` in a fresh process: `cold` with an empty pgolf cache (shrink
    runs), `cached` in a second process that finds the entry the first one wrote."""
    with tempfile.TemporaryDirectory(prefix="pgolf-bench-export-") as cache:
        env = {**os.environ, "PGOLF_CACHE": cache}
        seconds = {}
        for label in ("cold", "cached"):
            done = subprocess.run([sys.executable, "-c", _TIMED_EXPORT, preset], env=env, capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise UserError(f"timing the export of {preset} failed: {last}")
            seconds[label] = round(float(done.stdout.split()[-1]), 2)
        return seconds


def stack_config(cfg: Config, label: str) -> Config:
    """`cfg` packed by stack `label`: `<codec>[+lqer][+grouped]` (LQER rank 4 as the record, else off; the
    grouped transform — one stream per role group — else the config's own; codec `auto`: the smallest installed
    codec, per stream when grouped)."""
    codec, *parts = label.split("+")
    if (codec not in CODECS and codec != AUTO) or not set(parts) <= {"lqer", "grouped"}:
        raise UserError(f"codec stack {label!r}: use <codec>[+lqer][+grouped] with a codec of "
                        f"{', '.join(CODECS)}, {AUTO}")
    quant = dataclasses.replace(cfg.quant, codec=codec, codec_level=-1, lqer_rank=4 if "lqer" in parts else 0,
                                transform="grouped" if "grouped" in parts else cfg.quant.transform)
    return dataclasses.replace(cfg, quant=quant)


def _stacks(cfg: Config, codecs: tuple[str, ...]) -> list[str]:
    """Every stack of `codecs` that runs here: each codec alone, and (policy schemes) with LQER, and grouped."""
    extra = ("+lqer", "+lqer+grouped") if cfg.quant.scheme != "int8" else ("+grouped",)
    return [codec + suffix for codec in codecs if _runs_here(codec) for suffix in ("", *extra)]


def _runs_here(codec: str) -> bool:
    return codec == AUTO or CODECS[codec].available


CALIBRATION_SEQS = 64  # GPTQ calibration of the _cpu runs: enough for their codes' statistics, minutes less on 2 cores


def _short_run(preset: str, steps: int, folder: Path) -> Config:
    """Train `preset` for `steps` steps on its own data with adaptive eval stages off (and so the averaged
    weights, not a choice among candidates by sliding score); the run's config."""
    overrides = {"train.iterations": steps, "train.max_wallclock_seconds": 0, "train.train_log_every": 0,
                 "eval.ttt": "off", "eval.slot": "off", "eval.stride": 0, "train.final_weights": "average",
                 "eval.val_max_tokens": 16384, "quant.calibration_reserve_seconds": 0,
                 "quant.calibration_seqs": CALIBRATION_SEQS,
                 "run.out_dir": folder, "run.run_id": preset}
    cfg = load_config(preset, env={}, overrides=[f"{k}={v}" for k, v in overrides.items()])
    run_train(cfg)
    return cfg


def trained_model_bytes(preset: str, steps: int, folder: Path,
                        codecs: tuple[str, ...] = STACK_CODECS) -> dict[str, Any]:
    """Model bytes of a short `preset` run under each codec stack (calibration shared by all stacks)."""
    cfg = _short_run(preset, steps, folder)
    state, _ = load_packed_state(folder / preset / WEIGHTS_NAME)
    calibration = None
    if cfg.quant.gptq or cfg.quant.scheme == "fit":
        from pgolf.model.gpt import build_model

        model = build_model(cfg.model, torch.device("cpu"))
        model.load_state_dict(state)
        calibration = calibration_sequences(cfg, model, lambda: train_files(cfg, resolve_dataset(cfg)))
    sizes = {}
    for label in _stacks(cfg, codecs):
        stack = stack_config(cfg, label)
        packed = pack_weights(state, stack, {"config": stack.to_dict()}, torch.device("cpu"), list,
                              calibration=calibration)
        sizes[label] = len(packed.blob)
    return {"preset": preset, "steps": steps, "policy": cfg.quant.policy if cfg.quant.scheme != "int8" else "int8",
            "gptq": cfg.quant.gptq, "calibration_seqs": cfg.quant.calibration_seqs, "transform": cfg.quant.transform,
            "model_bytes": sizes}


def _cpu_run(preset: str, steps: int, folder: Path, codecs: tuple[str, ...]) -> dict[str, Any]:
    """`trained_model_bytes`, or the reason the preset could not run (one bad preset does not end the bench)."""
    try:
        return trained_model_bytes(preset, steps, folder, codecs)
    except UserError as exc:
        return {"preset": preset, "steps": steps, "error": str(exc)}


def codes_entropy_bytes(quantized: QuantizedModel) -> int:
    """The order-0 entropy of each tensor's integer codes (per tensor; one byte a code), summed, in bytes."""
    return math.ceil(sum(order0_bytes(qt.data) for qt in quantized.values() if not qt.data.is_floating_point()))


def sota_projection(stacks: tuple[str, ...]) -> dict[str, Any]:
    """Full-size `sota`: projected model bytes per stack (synthetic weights, RTN) plus its shipped code."""
    cfg = load_config("sota", env={})
    state = synthetic_weights(cfg, cfg.run.seed)
    rtn = dataclasses.replace(cfg, quant=dataclasses.replace(cfg.quant, gptq=False))
    code = shipped_code(cfg).bytes
    out: dict[str, Any] = {"policy": cfg.quant.policy, "code_bytes": code, "stacks": {}}
    for label in stacks:
        stack = stack_config(rtn, label)
        if not _runs_here(stack.quant.codec):
            continue
        start = time.perf_counter()
        packed = pack_weights(state, stack, {"config": stack.to_dict()}, torch.device("cpu"), list)
        model_bytes = len(packed.blob)
        out["stacks"][label] = {"model_bytes": model_bytes, "total": model_bytes + code,
                                "fits": model_bytes + code <= cfg.quant.budget_bytes,
                                "pack_seconds": round(time.perf_counter() - start, 1),
                                "codes_entropy_bytes": codes_entropy_bytes(packed.quantized)}
    return out


def similarity_sort_speed(records: Path, rows: int = 8192, cols: int = 512) -> dict[str, Any]:
    """pgolf's `similarity_order` against the SOTA record's `_similarity_sort_l1` on the same int7 codes (the
    `sdclip` policy's embedding: k = 14 standard deviations)."""
    record_sort = import_record(RECORD_OF_PRESET["sota"], root=records)._similarity_sort_l1
    codes, _ = quantize_rows(torch.randn(rows, cols, generator=torch.Generator().manual_seed(0)), 7,
                             ClipRule("sd", 14.0))
    matrix = codes.numpy()
    seconds, orders = {}, {}
    for label, sort in (("record", record_sort), ("pgolf", similarity_order)):
        start = time.perf_counter()
        orders[label] = sort(matrix)
        seconds[label] = time.perf_counter() - start
    return {"rows": rows, "cols": cols, "record_seconds": round(seconds["record"], 2),
            "pgolf_seconds": round(seconds["pgolf"], 2), "speedup": round(seconds["record"] / seconds["pgolf"], 2),
            "same_order": bool((orders["record"] == orders["pgolf"]).all())}


# plain, + LQER, the record's whole stack (every stream lrzip), the `sota` preset's (auto: the smallest per stream)
PROJECTION_STACKS = ("brotli", "brotli+lqer", "lrzip+lqer+grouped", "auto+lqer+grouped")


def bench_bytes(records: Path, steps: int = 20, projection: tuple[str, ...] = PROJECTION_STACKS,
                codecs: tuple[str, ...] = STACK_CODECS, out: Path | None = None) -> dict[str, Any]:
    if not records.is_dir():
        raise UserError(f"records folder {records} does not exist: pass --records <the challenge's records folder>")
    result: dict[str, Any] = {"presets": {}}
    with tempfile.TemporaryDirectory(prefix="pgolf-bench-bytes-") as tmp:
        for preset, record in RECORD_OF_PRESET.items():
            cfg = load_config(preset, env={})
            code = {form: shipped_code(cfg, form) for form in CODE_FORMS}
            own = record_code_bytes(records / record)
            counted = code[cfg.quant.code_form]
            row: dict[str, Any] = {
                "record": record, "code_bytes": {form: info.bytes for form, info in code.items()},
                "shipped_bytes": counted.bytes, "shipped_form": counted.form, "modules": len(counted.modules),
                "record_code_bytes": own[0] if own else None, "record_code_source": own[1] if own else None,
                "code_within_record": own is not None and counted.bytes <= own[0],
                "export_seconds": export_seconds(preset),
            }
            packed = record_model_bytes(records / record)
            if packed is not None:
                total = packed[0] + counted.bytes
                row["with_record_model"] = {"model_bytes": packed[0], "format": packed[1], "total": total,
                                            "fits": total <= cfg.quant.budget_bytes}
            if preset != "baseline" and steps > 0:
                row["cpu_run"] = _cpu_run(f"{preset}_cpu", steps, Path(tmp), codecs)
            result["presets"][preset] = row
    result["sota_full_projection"] = sota_projection(projection)
    result["similarity_sort"] = similarity_sort_speed(records)
    if out is not None:
        atomic_write_json(out, result)
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{'preset':<12} {'shipped code':>12} {'record':>9}  within  form"]
    for preset, row in result["presets"].items():
        counted = row["shipped_bytes"]
        own = f"{row['record_code_bytes']:,}" if row["record_code_bytes"] else "-"
        seconds = row["export_seconds"]
        lines.append(f"{preset:<12} {counted:>12,} {own:>9}  {'yes' if row['code_within_record'] else 'NO':<6}  "
                     f"{row['shipped_form']} ({row['modules']} modules; measured in {seconds['cold']} s, "
                     f"{seconds['cached']} s cached)")
        if "with_record_model" in row:
            own_model = row["with_record_model"]
            lines.append(f"{'':<12} with the record's packed model ({own_model['format']}, "
                         f"{own_model['model_bytes']:,}): {own_model['total']:,} "
                         f"({'fits' if own_model['fits'] else 'OVER'})")
        if "error" in row.get("cpu_run", {}):
            lines.append(f"{'':<12} {row['cpu_run']['preset']} did not run: {row['cpu_run']['error']}")
        elif "cpu_run" in row:
            sizes = ", ".join(f"{k} {v:,}" for k, v in row["cpu_run"]["model_bytes"].items())
            lines.append(f"{'':<12} {row['cpu_run']['preset']} model bytes: {sizes}")
    sota = result["sota_full_projection"]
    for label, stack in sota["stacks"].items():
        lines.append(f"sota full-size projection, {label}: model {stack['model_bytes']:,} "
                     f"(its codes' entropy {stack['codes_entropy_bytes']:,}) + code {sota['code_bytes']:,} "
                     f"= {stack['total']:,} ({'fits' if stack['fits'] else 'OVER'})")
    sort = result["similarity_sort"]
    lines.append(f"similarity sort of a {sort['rows']} x {sort['cols']} int7 matrix: "
                 f"record {sort['record_seconds']} s, pgolf {sort['pgolf_seconds']} s ({sort['speedup']}x, "
                 f"{'same order' if sort['same_order'] else 'ORDERS DIFFER'})")
    return "\n".join(lines)
