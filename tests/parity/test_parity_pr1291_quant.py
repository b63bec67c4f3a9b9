"""Payload parity of preset `pr1291`'s quantizer with PR #1291's export (shared/records/pr1291): from the same
weights and the same Hessians, pgolf stores every tensor in the record's format (fp16 passthrough, int6, int8)
with bit-identical codes, scales and passthrough values — GPTQ with the per-matrix clip search
(`gptq_mixed_quantize_int6`), its round-to-nearest fallback, and the export without GPTQ (`mixed_quantize_int6`).

The default suite runs a small shape (2 layers × 384, the record's script built from its environment variables);
the record's full shape (11 × 512, vocab 4096) is `parity_full`.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
import torch
from recordkit import build_record, cheap_init, fp32, import_record, perturbed
from torch import Tensor

from pgolf.config import Config, load_config
from pgolf.interop import get_format, to_pgolf
from pgolf.quant.container import QuantizedModel
from pgolf.quant.mixed import GPTQOptions, TensorQuantizer, quantize_mixed
from pgolf.quant.plan import QuantPlan

SEED = 1291
# record environment variable → pgolf override: a small shape with every kind of tensor: int6 MLP matrices
# (1088 × 64, 64 × 1088), int8 tok_emb (1040 × 64) and value-embedding table (1040 × 96), fp16 attention matrices,
# the VE projection (64 × 96) and control tensors
SMALL = {"NUM_LAYERS": ("model.num_layers", "2"), "MODEL_DIM": ("model.model_dim", "64"),
         "EMBEDDING_DIM": ("", "64"), "NUM_HEADS": ("model.num_heads", "1"),
         "NUM_KV_HEADS": ("model.num_kv_heads", "1"), "MLP_MULT": ("model.mlp_mult", "17.0"),
         "VOCAB_SIZE": ("model.vocab_size", "1040"), "VE_LAYERS": ("model.value_embed_layers", "0,1"),
         "VE_DIM": ("model.value_embed_dim", "96")}
SMALL_MAX_COLS = 64  # GPTQ costs a Python step per column and candidate: the small case gives Hessians to the fc's
# the record's label of a tensor ↔ pgolf's method: the record labels "gptq" a GPTQ that fell back to its clip search
METHODS = {"int6 gptq": {"gptq", "rtn (cholesky failed)"}, "int6 clip_search": {"rtn"}, "int6 rtn": {"rtn"},
           "int8 rtn": {"rtn"}}
# extra tensors given to both quantizers: the 65,536-element boundary (fp16) and one element more (int8)
EXTRAS = {"extra.edge": (256, 256), "extra.above": (257, 256)}


@dataclass
class Case:
    rec: types.ModuleType
    cfg: Config
    state: dict[str, Tensor]  # the record's names
    names: dict[str, str]  # record name → pgolf name
    hessians: dict[str, Tensor]  # the record's Hessian set (its names, which pgolf shares for these)


def _names(cfg: Config) -> dict[str, str]:
    links = get_format("pr1291").links(cfg.model)
    return {link.record: link.pgolf[0] for link in links} | {name: name for name in EXTRAS}


def _hessian(cols: int, gen: torch.Generator) -> Tensor:
    """H = XᵀX of correlated inputs with one dead (always zero) column."""
    mix = torch.randn(cols, cols, generator=gen) / cols**0.5 + torch.eye(cols)
    x = (torch.randn(2 * cols, cols, generator=gen) @ mix) * torch.linspace(0.2, 3.0, cols)
    x[:, 3] = 0.0
    return x.T @ x / x.shape[0]


def _record_hessians(rec: types.ModuleType, model: torch.nn.Module, max_cols: int | None) -> dict[str, Tensor]:
    """A Hessian for each weight the record's `collect_hessians` hooks (CastedLinear, > 65,536 elements, attn/mlp)
    that has at most `max_cols` columns (the others take the record's clip-search path); the first gets a negative
    definite one, so that its Cholesky fails and both sides fall back to the round-to-nearest clip search."""
    gen = torch.Generator().manual_seed(SEED)
    params = dict(model.named_parameters())
    hooked = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, rec.CastedLinear)]
    names = [n for n in hooked if params[n].numel() > 65536 and rec.classify_param(n) in ("mlp", "attn")
             and (max_cols is None or params[n].shape[1] <= max_cols)]
    out = {name: _hessian(params[name].shape[1], gen) for name in names}
    out[names[0]] = -out[names[0]]
    return out


def _case(env: Mapping[str, str], overrides: list[str], max_cols: int | None) -> Case:
    rec = import_record("pr1291", env)
    rec.set_logging_hparams(types.SimpleNamespace(is_main_process=False, logfile=None))  # its log() needs them
    cfg = load_config("pr1291", env={}, overrides=overrides)
    with cheap_init():
        record = fp32(build_record("pr1291", rec))
    gen = torch.Generator().manual_seed(SEED + 1)
    state = perturbed(record, SEED) | {n: torch.randn(s, generator=gen) * 0.05 for n, s in EXTRAS.items()}
    return Case(rec, cfg, state, _names(cfg), _record_hessians(rec, record, max_cols))


@pytest.fixture(scope="module", params=["small", pytest.param("full", marks=pytest.mark.parity_full)])
def case(request) -> Case:
    if request.param == "full":
        return _case({}, [], None)
    env = {var: value for var, (_, value) in SMALL.items()}
    return _case(env, [f"{key}={value}" for key, value in SMALL.values() if key], SMALL_MAX_COLS)


def _pgolf_quantize(case: Case, hessians: Mapping[str, Tensor]) -> tuple[QuantizedModel, dict[str, str]]:
    model_part = {n: t for n, t in case.state.items() if n not in EXTRAS}
    ours = to_pgolf(model_part, "pr1291", case.cfg.model) | {n: case.state[n] for n in EXTRAS}
    formats = QuantPlan.resolve(case.cfg, ours).formats
    assert formats is not None
    wanted = {n for n, f in formats.items() if f.bits and f.gptq}
    q = case.cfg.quant
    quantizer = TensorQuantizer({n: h for n, h in hessians.items() if n in wanted}, 0.0,
                                GPTQOptions(q.gptq_block_size, q.gptq_damp))
    return quantize_mixed(ours, formats, quantizer)


def _assert_same_payload(case: Case, result: Mapping[str, Tensor], meta: Mapping[str, object],
                         ours: QuantizedModel, methods: Mapping[str, str]) -> dict[str, int]:
    """Per tensor: same format, bit-identical data; returns how many tensors took each record method."""
    seen: dict[str, int] = {}
    assert set(meta) == set(case.state)
    for name, info in meta.items():
        qt, method = ours[case.names[name]], methods[case.names[name]]
        if info == "passthrough":
            assert qt.bits is None and qt.data.dtype == result[name].dtype, name
            assert torch.equal(qt.data.reshape(-1), result[name].reshape(-1)), name
            seen["fp16"] = seen.get("fp16", 0) + 1
            continue
        assert isinstance(info, dict), (name, info)
        assert qt.bits == {"int6": 6, "int8": 8}[info["type"]], (name, info, qt.bits)
        assert torch.equal(qt.data, result[f"{name}.q"]), f"{name}: codes differ"
        assert qt.scale is not None and torch.equal(qt.scale, result[f"{name}.scale"]), f"{name}: scales differ"
        kind = f"{info['type']} {info.get('method', 'rtn')}"
        assert method in METHODS[kind], (name, kind, method)
        seen[kind] = seen.get(kind, 0) + 1
    return seen


def test_gptq_with_clip_search_matches_the_record(case: Case) -> None:
    result, meta = case.rec.gptq_mixed_quantize_int6(dict(case.state), {"mlp", "attn"}, case.hessians)
    ours, methods = _pgolf_quantize(case, case.hessians)
    seen = _assert_same_payload(case, result, meta, ours, methods)
    assert seen["int6 gptq"] == len(case.hessians) and seen["int8 rtn"] == 3, seen  # tok_emb, VE table, extra
    assert methods[case.names[next(iter(case.hessians))]] == "rtn (cholesky failed)"
    assert seen["fp16"] > 0, seen


def test_round_to_nearest_export_matches_the_record(case: Case) -> None:
    result, meta = case.rec.mixed_quantize_int6(dict(case.state), {"mlp", "attn"})
    ours, methods = _pgolf_quantize(case, {})
    seen = _assert_same_payload(case, result, meta, ours, methods)
    assert seen["int6 rtn"] >= len(case.hessians) and seen["int8 rtn"] == 3, seen


def test_gptq_clip_search_over_several_blocks_matches_the_record() -> None:
    """The record's `gptq_quantize_weight` with blocks of 32 columns (the lazy update between blocks), against
    `gptq_quantize` on the `matrix` candidates."""
    from pgolf.quant.gptq import gptq_quantize
    from pgolf.quant.intk import matrix_candidates

    rec = import_record("pr1291", {var: value for var, (_, value) in SMALL.items()})
    gen = torch.Generator().manual_seed(SEED + 2)
    w = torch.randn(48, 96, generator=gen) * 0.05
    h = _hessian(96, gen)
    codes, scale = rec.gptq_quantize_weight(w, h, block_size=32)
    found = gptq_quantize(w, h, matrix_candidates(w, 6), 6, block_size=32)
    assert found is not None and torch.equal(found[0], codes) and torch.equal(found[1], scale)
