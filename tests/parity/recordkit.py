"""Parity-test helpers: the record scripts of ../shared/records on CPU (through `pgolf.interop.records`, which
holds the import shims), skipped cleanly when the folder is absent, and pgolf's side of each comparison.

Differences are measured as `max|a − b| / max|b|` (`max_rel_diff`).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import torch
from torch import Tensor

from pgolf.interop.records import cheap_init, import_record as _import_record, max_rel_diff, perturbed, records_dir

if TYPE_CHECKING:
    from pgolf.model.gpt import GPT
    from pgolf.quant.container import QuantizedModel

M = TypeVar("M", bound=torch.nn.Module)
Payload = tuple[dict[str, tuple[Tensor, Tensor]], dict[str, Tensor]]  # ({name: (codes, scales)}, {name: float})

__all__ = ["cheap_init", "max_rel_diff", "perturbed"]

RECORDS_DIR = records_dir()
TOLERANCE = 1e-5


def require_records() -> Path:
    """The records folder, or a clean skip of the calling test when it is absent."""
    if not (RECORDS_DIR / "README.md").is_file():
        pytest.skip(f"record scripts not found at {RECORDS_DIR}: check out ../shared/records beside the repository "
                    "(or set PGOLF_RECORDS_DIR) to run the parity tests")
    return RECORDS_DIR


def import_record(folder: str, env: Mapping[str, str] | None = None, script: str = "train_gpt.py") -> types.ModuleType:
    require_records()
    return _import_record(folder, env, script=script)


def import_format_record(preset: str, env: Mapping[str, str] | None = None) -> types.ModuleType:
    """The record script of `preset`'s format, imported under its run's environment (updated by `env`, e.g. a
    small shape for the default suite)."""
    from pgolf.interop import get_format

    fmt = get_format(preset)
    return import_record(fmt.record, {**fmt.env, **(env or {})}, script=fmt.script)


def build_record(preset: str, rec: types.ModuleType) -> torch.nn.Module:
    """The record's GPT at full shape, built by the format of `preset` from the imported script."""
    from pgolf.interop import get_format

    build = get_format(preset).build_record
    assert build is not None, f"format {preset!r} does not build its record's model"
    return build(rec)


def seeded(seed: int) -> None:
    torch.manual_seed(seed)


def fp32(model: M) -> M:
    """A model in fp32 on CPU in train mode (the records build theirs in fp32 before casting on GPU)."""
    return model.float().cpu().train()


def state_diffs(ours: Mapping[str, Tensor], theirs: Mapping[str, Tensor]) -> dict[str, float]:
    """Per-name relative difference of two state dicts with the same names."""
    assert set(ours) == set(theirs), sorted(set(ours) ^ set(theirs))[:5]
    return {name: max_rel_diff(ours[name], theirs[name]) for name in theirs}


def assert_close(a: Tensor, b: Tensor, what: str, tol: float = TOLERANCE) -> None:
    diff = max_rel_diff(a, b)
    assert diff <= tol, f"{what}: max relative difference {diff:.3g} > {tol:g}"


def assert_states_close(ours: Mapping[str, Tensor], theirs: Mapping[str, Tensor], what: str,
                        tol: float = TOLERANCE) -> None:
    diffs = state_diffs(ours, theirs)
    worst = max(diffs, key=diffs.__getitem__)
    assert diffs[worst] <= tol, f"{what}: {worst} differs by {diffs[worst]:.3g} > {tol:g}"


def val_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0,
              bos_id: int | None = 1) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of random tokens with a few BOS tokens inside (document boundaries matter)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (batch, seq_len + 1), generator=gen)
    if bos_id is not None:
        tokens[:, :: max(2, seq_len // 3)] = bos_id
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def pgolf_step(model: GPT, cfg, grads: Mapping[str, Tensor]) -> None:
    """One training step of pgolf at step 0 from the given gradients, in the trainer's order: gradient sync,
    the step-0 schedule values (LR multiplier, Muon momentum, WD taper), gradient clipping, every optimizer.

    The gradients are given rather than computed: Newton–Schulz in bf16 turns a 1e-7 difference of its input
    into a few per cent of its output (the records' own Muon does), so the step is compared from identical
    gradients, and the gradients are compared on their own."""
    from pgolf.optim.factory import (
        build_optimizers,
        set_learning_rates,
        set_muon_weight_decay,
    )
    from pgolf.optim.parallel_muon import ParallelMuon
    from pgolf.optim.schedule import Schedule

    optimizers, muon = build_optimizers(model, cfg, torch.device("cpu"))
    values = Schedule.from_config(cfg).at(0, 0.0)
    for name, p in model.named_parameters():
        p.grad = grads[name].clone() if name in grads else None
    parallel = isinstance(muon, ParallelMuon)
    if parallel:
        muon.sync_gradients()
    for group in muon.param_groups:
        group["momentum"] = values.muon_momentum
    set_learning_rates(optimizers, values.lr_scale)
    set_muon_weight_decay(muon, values.muon_wd_scale)
    if cfg.optim.grad_clip_norm > 0:
        if parallel:
            muon.clip_grad_norm_(cfg.optim.grad_clip_norm)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
    for opt in optimizers:
        opt.step()


def record_adamw(groups: list[dict], h, weight_decay: float) -> torch.optim.AdamW:
    """An AdamW as the records build theirs (fused, their betas and eps), over `groups`."""
    return torch.optim.AdamW(groups, betas=(h.beta1, h.beta2), eps=h.adam_eps, weight_decay=weight_decay, fused=True)


def record_step(record: torch.nn.Module, h, muon: torch.optim.Optimizer, adams: list[torch.optim.Optimizer],
                batch: tuple[Tensor, Tensor], preset: str, cfg=None) -> dict[str, Tensor]:
    """Step 0 of a record's training loop with its own optimizers (built by the test as its script does):
    backward, the Muon momentum at the warm-up start, LR multiplier 1, clipping at `h.grad_clip_norm`, then the
    Adams and Muon (Parallel Muon launches its reduce-scatters first). Returns the clipped gradients the step
    used, under pgolf names, for `pgolf_step`."""
    record(*batch).backward()
    for group in muon.param_groups:
        group["momentum"] = h.muon_momentum_warmup_start
    torch.nn.utils.clip_grad_norm_(record.parameters(), h.grad_clip_norm)
    grads = record_grads_as_pgolf(record, preset, cfg)
    launch = getattr(muon, "launch_reduce_scatters", None)
    if launch is not None:
        launch()
    for opt in adams:
        opt.step()
    muon.step()
    return grads


def pgolf_model(cfg, state: Mapping[str, Tensor]) -> GPT:
    """pgolf's GPT for `cfg.model` in fp32 holding `state`."""
    from pgolf.model.gpt import GPT

    with cheap_init():
        model = fp32(GPT(cfg.model))
    model.load_state_dict(state, strict=True)
    return model


def record_grads_as_pgolf(record: torch.nn.Module, preset: str, cfg=None) -> dict[str, Tensor]:
    """The record model's gradients under pgolf names; parameters without a gradient are left out."""
    from pgolf.interop import to_pgolf

    params = dict(record.named_parameters())
    grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in params.items()}
    present = {n: torch.full_like(p, float(p.grad is not None)) for n, p in params.items()}
    model_cfg = None if cfg is None else cfg.model
    mask = to_pgolf(present, preset, model_cfg)
    return {n: g for n, g in to_pgolf(grads, preset, model_cfg).items() if bool(mask[n].all())}


def assert_payloads(preset: str, cfg, state: Mapping[str, Tensor], codes: Mapping[str, tuple[Tensor, Tensor]],
                    floats: Mapping[str, Tensor]) -> None:
    """pgolf's export of `state` (record names, unbanked) under `cfg.quant.policy` stores the record's integer
    `codes` and scales ({name: (codes, scales)}) and its `floats` ({name: stored tensor}) exactly. The policy's
    formats are those of the whole model of `cfg.model` (layer slices count every layer)."""
    import dataclasses

    from pgolf.interop.convert import name_map
    from pgolf.model.gpt import GPT
    from pgolf.quant.mixed import TensorQuantizer, quantize_mixed
    from pgolf.quant.policy import assign_formats, load_policy

    with torch.device("meta"):
        shapes = GPT(dataclasses.replace(cfg.model, ortho_init=False)).state_dict()
    formats = assign_formats(load_policy(cfg.quant.policy), shapes).formats
    names = name_map(preset, cfg.model)
    ours, _ = quantize_mixed({names[n]: t for n, t in state.items()}, {names[n]: formats[names[n]] for n in state},
                             TensorQuantizer({}))
    assert_same_tensors(preset, cfg, ours, codes, floats)


def assert_same_tensors(preset: str, cfg, ours: QuantizedModel, codes: Mapping[str, tuple[Tensor, Tensor]],
                        floats: Mapping[str, Tensor]) -> None:
    """`ours` (pgolf names) holds exactly the record's integer `codes` and scales and its stored `floats` (record
    names), and no other integer tensor."""
    from pgolf.interop.convert import name_map

    names = name_map(preset, cfg.model)
    assert {names[n] for n in codes} == {n for n, t in ours.tensors.items() if t.scheme != "passthrough"}
    for name, (q, scale) in codes.items():
        mine = ours.tensors[names[name]]
        assert mine.bits is not None and int(q.abs().max()) <= (1 << (mine.bits - 1)) - 1, f"{name}: int width"
        assert torch.equal(mine.data, q), f"{name}: codes differ"
        assert mine.scale is not None and torch.equal(mine.scale, scale), f"{name}: scales differ"
    for name, kept in floats.items():
        mine = ours.tensors[names[name]]
        assert mine.data.dtype == kept.dtype and torch.equal(mine.data, kept), f"{name}: stored float differs"


def mixed_payload(result: Mapping[str, Tensor], meta: Mapping[str, object]) -> Payload:
    """The payload of a `{"w": result, "m": meta}` export (#1291's `mixed_quantize_int6`, PROTEUS's inline loop):
    a dict entry of `meta` is a quantized tensor stored as `name.q` and `name.scale`, a string one a stored float."""
    codes = {name: (result[f"{name}.q"], result[f"{name}.scale"]) for name, info in meta.items()
             if isinstance(info, dict)}
    return codes, {name: result[name] for name, info in meta.items() if not isinstance(info, dict)}


def proteus_v16_export(rec: types.ModuleType, state: Mapping[str, Tensor], num_layers: int = 11,
                       n_int6_mlp: int = 6) -> tuple[dict[str, Tensor], dict[str, object]]:
    """(result, meta) as PROTEUS v1.6's main() builds them inline (lines 2531-2570) before its `torch.save` and
    brotli-11: float tensors of ≤ 65,536 elements fp16, larger control tensors fp32, attention and the
    `n_int6_mlp // 2` edge MLP layers each side int6, other MLPs and the untied `recur_mlp` ones int5 (both
    GPTQ-lite, one percentile per matrix), the rest the baseline's int8."""
    half = n_int6_mlp // 2
    result: dict[str, Tensor] = {}
    meta: dict[str, object] = {}
    for name, t in state.items():
        cat = "mlp" if "recur_mlp" in name else rec._classify_param(name)
        edge = "blocks." in name and not half <= int(name.split(".")[1]) < num_layers - half
        if t.numel() <= 65536:
            result[name], meta[name] = t.to(torch.float16), "passthrough"
            continue
        if any(pattern in name for pattern in rec.CONTROL_TENSOR_NAME_PATTERNS):
            result[name], meta[name] = t.float(), "passthrough_ctrl"
            continue
        if cat == "attn" or (cat == "mlp" and edge):
            quantize, kind = rec.quantize_int6_per_row, "int6"
        elif cat == "mlp":
            quantize, kind = rec.quantize_int4_per_row, "int5"  # clip range 15
        else:
            quantize, kind = rec.quantize_float_tensor, "int8"
        result[f"{name}.q"], result[f"{name}.scale"] = quantize(t)
        meta[name] = {"type": kind}
    return result, meta


def sample_weights(preset: str, cfg, pgolf_names: tuple[str, ...], seed: int) -> dict[str, Tensor]:
    """{record name: weight} of the given pgolf tensors at the shapes of `cfg.model`: N(0, 0.02²) with a few
    outliers per row (so the clip percentiles choose differently) and some rows below the 1/R scale floor."""
    import dataclasses

    from pgolf.interop.convert import name_map
    from pgolf.model.gpt import GPT

    with torch.device("meta"):
        shapes = {n: t.shape for n, t in GPT(dataclasses.replace(cfg.model, ortho_init=False)).state_dict().items()}
    record_of = {ours: theirs for theirs, ours in name_map(preset, cfg.model).items()}
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in pgolf_names:
        w = torch.randn(shapes[name], generator=gen) * 0.02
        if w.ndim == 2:
            w[:, :3] *= torch.rand(w.shape[0], 1, generator=gen) * 40
            w[::7] *= 0.01
        out[record_of[name]] = w
    return out
