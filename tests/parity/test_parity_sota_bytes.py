"""Bytes parity with the SOTA record's per-group serializer (#1855 `_serialize_pergroup`): on the very same
quantized tensors, pgolf's grouped per-group streams (`codec = auto`, as the `sota` preset) come out no
larger, per role group and in total (pgolf's compressed header included)."""

from __future__ import annotations

import itertools
import json
import re
import struct
import tempfile

import brotli
import pytest
import torch

from pgolf.artifact.codecs import CODECS
from pgolf.artifact.format import PREFIX_BYTES, _regions, encode_artifact
from pgolf.artifact.grouping import grouped_segments
from pgolf.artifact.streams import stream_sizes
from pgolf.quant.container import QuantizedModel, QuantizedTensor, is_correction
from pgolf.quant.intk import ClipRule, quantize_rows
from testkit import SOTA_RECORD, record_functions

pytestmark = [
    pytest.mark.skipif(not SOTA_RECORD.is_file(), reason="the shared record scripts (../shared/records) are not "
                       "checked out"),
    pytest.mark.skipif(not CODECS["lrzip"].available, reason="the lrzip tool is not installed (apt-get install lrzip)"),
]
SERIALIZER = ("_serialize_pergroup", "_unpack_streams", "_similarity_sort_l1", "_lrzip_compress", "_pack_streams",
              "_GROUP_ORDER", "_SIMSORT_KEYS", "_PACK_MAGIC")
SHAPES = {"attn.c_q.weight": (1, 1), "attn.c_k.weight": (0.5, 1), "attn.c_v.weight": (0.5, 1),
          "attn.proj.weight": (1, 1), "mlp.fc.weight": (4, 1), "mlp.proj.weight": (1, 4)}  # (rows, cols) / dim


def _int_k(name: str, rows: int, cols: int, bits: int, g: torch.Generator) -> QuantizedTensor:
    """Codes of a heavy-tailed matrix (cubed Gaussian): like trained weights, compressible enough that the
    record's lrzip passes its LZ4 pre-test (on Gaussian codes it stores them raw; see docs/artifact.md)."""
    codes, scale = quantize_rows(torch.randn(rows, cols, generator=g) ** 3, bits, ClipRule("max"))
    return QuantizedTensor(name, "per_row", bits, codes, scale, torch.float32)


def small_model(roles: tuple[str, ...] = tuple(SHAPES), layers: int = 2, dim: int = 64,
                vocab: int = 256) -> QuantizedModel:
    """The record's tensor kinds at a small shape: int7 embedding, int6 block matrices of `roles`, an int8
    gate, fp32 gains."""
    g = torch.Generator().manual_seed(0)
    tensors = {"tok_emb.weight": _int_k("tok_emb.weight", vocab, dim, 7, g)}
    for i in range(layers):
        for role in roles:
            r, c = SHAPES[role]
            name = f"blocks.{i}.{role}"
            tensors[name] = _int_k(name, int(r * dim), int(c * dim), 6, g)
        gate = f"blocks.{i}.attn.attn_gate_w"
        tensors[gate] = _int_k(gate, 4, 12, 8, g)
        gain = f"blocks.{i}.attn_scale"
        tensors[gain] = QuantizedTensor(gain, "passthrough", None, torch.randn(dim, generator=g), None, torch.float32)
    return QuantizedModel(tensors)


def record_streams(qm: QuantizedModel, layers: int) -> tuple[int, dict[str, int]]:
    """(total bytes, lrzip stream bytes per role) of the record's serializer on `qm`'s tensors: its role
    matrices as `.q`/`.scale`, everything else in its brotli remainder."""
    rec = record_functions(*SERIALIZER)
    roles = {key.lstrip("_").removesuffix(".q"): key for key in rec["_GROUP_ORDER"]}
    result, meta = {}, {}
    for name, qt in qm.items():
        role = re.sub(r"^blocks\.\d+\.", "", name)
        suffixes = (".q", ".scale") if role in roles and not is_correction(name) else (".d", ".s")
        for suffix, tensor in zip(suffixes, (qt.data, qt.scale), strict=True):
            if tensor is not None:
                result[name + suffix] = tensor
        meta[name] = f"{qt.scheme} int{qt.bits}"
    with tempfile.TemporaryDirectory() as folder:
        blob = rec["_serialize_pergroup"](result, meta, layers, folder)
    streams = rec["_unpack_streams"](blob)
    return len(blob), {role: len(streams[rec["_GROUP_ORDER"].index(key)]) for role, key in roles.items()}


def pgolf_streams(qm: QuantizedModel) -> tuple[int, dict[str, int]]:
    """(artifact bytes, stream bytes per role that has a stream of its own) of pgolf's grouped per-group
    encoding with codec auto."""
    blob, _, transform = encode_artifact(qm, {}, codec="auto", transform="grouped")
    header_len = struct.unpack_from("<6sHI32s", blob)[2]
    header = json.loads(brotli.decompress(blob[PREFIX_BYTES : PREFIX_BYTES + header_len]))
    regions = _regions(header["tensors"])
    parts = grouped_segments(regions)
    starts = set(itertools.accumulate(stream_sizes(parts), initial=0))
    stream_of = {start: size for start, (_, size) in zip(sorted(starts), header["streams"], strict=False)}
    roles = list(dict.fromkeys(r.group for r in regions if r.group))
    ends = list(itertools.accumulate(parts, initial=0))
    assert transform == "grouped"
    return len(blob), {role: stream_of[ends[i]] for i, role in enumerate(roles)
                       if ends[i] in starts and ends[i + 1] in starts}


@pytest.mark.parametrize("roles", [
    pytest.param(("attn.c_q.weight", "mlp.proj.weight"), id="sorted-and-unsorted-roles"),  # lrzip ≈ 1 s a stream
    pytest.param(tuple(SHAPES), id="every-role", marks=pytest.mark.parity_full),
])
def test_per_group_streams_are_no_larger_than_the_records_serializer(roles: tuple[str, ...]) -> None:
    qm = small_model(roles)
    total, per_role = pgolf_streams(qm)
    record_total, record_per_role = record_streams(qm, layers=2)
    assert len(per_role) >= len(roles)  # the embedding and every role but the last (the small gate joins it)
    for role, size in per_role.items():
        assert size <= record_per_role[role], (role, size, record_per_role[role])
    assert total <= record_total, (total, record_total)


@pytest.mark.parity_full
def test_sota_cpu_pack_is_no_larger_than_the_records_serializer_on_its_tensors() -> None:
    """The whole `sota_cpu` packing (sdclip with the gate rule, LQER, round-to-nearest) on synthetic weights."""
    import dataclasses

    from pgolf.config import load_config
    from pgolf.inspect_model import synthetic_weights
    from pgolf.packing import pack_weights

    cfg = load_config("sota_cpu", env={})
    cfg = dataclasses.replace(cfg, quant=dataclasses.replace(cfg.quant, gptq=False, codec="auto", codec_level=-1))
    qm = pack_weights(synthetic_weights(cfg, 0), cfg, {}, torch.device("cpu"), list).quantized
    total, per_role = pgolf_streams(qm)
    record_total, record_per_role = record_streams(qm, cfg.model.num_layers)
    assert all(size <= record_per_role[role] for role, size in per_role.items())
    assert total <= record_total, (total, record_total)
