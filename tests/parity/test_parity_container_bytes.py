"""Container parity with the records whose export is one compressed `torch.save` (baseline, #635, #1291, PROTEUS v1.6):
on the same weights, each record's own quantizer and serializer against the artifact a pgolf run writes (its
resolved config, quant record and provenance in the header). The tensors must be identical, and pgolf's artifact no
larger: so a pgolf submission of a record's weights counts no more model bytes than the record's own file (what
`pgolf bench bytes` adds to the shipped code as "with the record's packed model").

The default suite keeps every tensor of the record (its layer count and vocabulary: the container's overhead grows
with the tensor count) at a narrower width, where the MLP matrices still pass the records' 65,536-element threshold;
`parity_full` runs the records' full shapes (minutes: the records quantize and compress 27 MB).
"""

from __future__ import annotations

import io
import types
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import brotli
import pytest
import torch
from recordkit import Payload, assert_same_tensors, import_format_record, mixed_payload, proteus_v16_export
from torch import Tensor

from pgolf.artifact.format import read_artifact
from pgolf.config import Config, load_config
from pgolf.inspect_model import synthetic_weights
from pgolf.interop.convert import name_map
from pgolf.packing import pack_state_dict
from pgolf.train.provenance import weights_sha256


def _saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _int8_export(rec: types.ModuleType, state: dict[str, Tensor], compress: Callable[[bytes], bytes]) \
        -> tuple[bytes, Payload]:
    """The baseline's export, which #635 keeps (its GPTQ-lite int6 inside `quantize_state_dict_int8`)."""
    obj, _ = rec.quantize_state_dict_int8(state)
    codes = {name: (q, obj["scales"][name]) for name, q in obj["quantized"].items()}
    return compress(_saved(obj)), (codes, obj["passthrough"])


def _baseline(rec: types.ModuleType, state: dict[str, Tensor]) -> tuple[bytes, Payload]:
    return _int8_export(rec, state, lambda raw: zlib.compress(raw, level=9))  # its main(): int8 + zlib level 9


def _pr635(rec: types.ModuleType, state: dict[str, Tensor]) -> tuple[bytes, Payload]:
    return _int8_export(rec, state, rec._compress)  # zstd level 22


def _pr1291(rec: types.ModuleType, state: dict[str, Tensor]) -> tuple[bytes, Payload]:
    """Its `serialize` without GPTQ: `mixed_quantize_int6`, then `{"w", "m"}` byte-shuffled and brotli-11."""
    result, meta = rec.mixed_quantize_int6(state, {"mlp", "attn"})
    return rec._compress(_saved({"w": result, "m": meta}), "brotli"), mixed_payload(result, meta)


def _proteus_v16(rec: types.ModuleType, state: dict[str, Tensor]) -> tuple[bytes, Payload]:
    """Its main()'s export: the inline int5/int6/int8 loop, then `{"w", "m"}` brotli-11 (brotli is on its pod)."""
    result, meta = proteus_v16_export(rec, state)
    return brotli.compress(_saved({"w": result, "m": meta}), quality=11), mixed_payload(result, meta)


@dataclass(frozen=True)
class Case:
    preset: str
    export: Callable[[types.ModuleType, dict[str, Tensor]], tuple[bytes, Payload]]
    width: list[str]  # overrides: a narrower model, every tensor kept (brotli-11 packs ~0.2 MB/s on 2 cores)


CASES = {
    "baseline": Case("baseline", _baseline,
                     ["model.model_dim=256", "model.num_heads=4", "model.num_kv_heads=2"]),
    "pr635": Case("pr635", _pr635,
                  ["model.model_dim=192", "model.num_heads=4", "model.num_kv_heads=2", "model.bigram_dim=64",
                   "model.value_embed_dim=64"]),
    "pr1291": Case("pr1291", _pr1291,
                   ["model.model_dim=128", "model.num_heads=4", "model.num_kv_heads=2", "model.mlp_mult=4.5",
                    "model.value_embed_dim=64"]),
    "proteus_v16": Case("proteus_v16", _proteus_v16,
                        ["model.model_dim=192", "model.num_heads=4", "model.num_kv_heads=2", "model.bigram_dim=64",
                         "model.value_embed_dim=64"]),
}


def _config(case: Case, full: bool) -> Config:
    """The preset (at the narrower width unless `full`), packed without Hessians (the exports above take none)."""
    return load_config(case.preset, env={}, overrides=[*([] if full else case.width), "quant.gptq=false"])


@pytest.mark.parametrize("shape", ["narrow", pytest.param("full", marks=pytest.mark.parity_full)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_pgolf_artifact_of_the_records_tensors_is_no_larger_than_the_records_file(name: str, shape: str,
                                                                                  tmp_path: Path) -> None:
    case = CASES[name]
    cfg = _config(case, shape == "full")
    state = synthetic_weights(cfg, seed=1)
    record_of = {ours: theirs for theirs, ours in name_map(case.preset, cfg.model).items()}
    assert set(record_of) == set(state)
    blob, (codes, floats) = case.export(import_format_record(case.preset), {record_of[n]: t for n, t in state.items()})
    assert codes, "the width keeps no matrix above the records' fp16 threshold"

    packed = pack_state_dict(state, cfg, tmp_path / "artifact.pgolf",
                             {"weights_sha256": weights_sha256(state), "run_id": "20261203-000000-parity"})
    ours, meta = read_artifact(tmp_path / "artifact.pgolf")
    assert meta["config"] == cfg.to_dict()  # the header carries what a run's does
    assert_same_tensors(case.preset, cfg, ours, codes, floats)
    assert packed.model_bytes <= len(blob), (packed.model_bytes, len(blob))

