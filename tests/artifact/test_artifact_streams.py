"""Per-group streams of the `grouped` payload: stream cuts, per-stream `auto`, old files, damage, missing tool."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import brotli
import pytest
import torch

from artifact_fixtures import artifact_header, sealed
from pgolf.artifact.auto import compress_auto
from pgolf.artifact.codecs import CODECS, compress, decompress
from pgolf.artifact.format import (
    PREFIX_BYTES,
    _regions,
    _serialize,
    encode_artifact,
    read_artifact,
    write_artifact,
)
from pgolf.artifact.grouping import grouped_segments
from pgolf.artifact.streams import MIN_STREAM, compress_auto_each, stream_sizes
from pgolf.artifact.transforms import apply_transform
from pgolf.errors import ArtifactError
from pgolf.quant.container import QuantizedModel, QuantizedTensor
from pgolf.quant.intk import ClipRule, quantize_rows

ROLES = ("attn.c_q.weight", "mlp.fc.weight", "mlp.proj.weight")


def layered_model(layers: int = 2, rows: int = 64, cols: int = 96) -> QuantizedModel:
    """int6 matrices of three roles per layer (each role group well over MIN_STREAM), plus a small gate."""
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for name in [f"blocks.{i}.{role}" for i in range(layers) for role in ROLES]:
        codes, scale = quantize_rows(torch.randn(rows, cols, generator=g), 6, ClipRule("max"))
        tensors[name] = QuantizedTensor(name, "per_row", 6, codes, scale, torch.float32)
    codes, scale = quantize_rows(torch.randn(8, 12, generator=g), 8, ClipRule("max"))
    tensors["blocks.0.attn.gate"] = QuantizedTensor("blocks.0.attn.gate", "per_row", 8, codes, scale, torch.float32)
    return QuantizedModel(tensors)


def test_small_parts_join_the_stream_before_them() -> None:
    big = MIN_STREAM
    assert stream_sizes([big, 10, big, 0, big]) == [big + 10, big, big]
    assert stream_sizes([10, big, big]) == [10 + big, big]
    assert stream_sizes([0, 0]) == []


def test_auto_of_many_parts_is_auto_of_each_part_in_order() -> None:
    """The parallel trials pick per part what one `compress_auto` picks, in the parts' order, whatever finishes
    first: text (brotli wins), int32 counts (lzma wins), noise, and an empty part."""
    parts = [b"the quick brown fox jumps over the lazy dog. " * 300, struct.pack("<20000i", *range(20000)),
             os.urandom(3000), b""]
    names = ["zlib", "zstd", "lzma", "brotli"]
    each = compress_auto_each(parts, names)
    assert each == [compress_auto(part, names) for part in parts]
    for part, (name, out) in zip(parts, each, strict=True):
        assert len(out) == min(len(compress(part, n)) for n in names) and decompress(out, name) == part
    assert len({name for name, _ in each}) > 1


def test_grouped_payload_is_one_stream_per_role_each_with_its_smallest_codec(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # auto among the Python codecs: lrzip takes a second a stream
    model = layered_model()
    table, raw = _serialize(model)
    regions = _regions(table)
    coded = apply_transform(raw, regions, "grouped")
    sizes = stream_sizes(grouped_segments(regions))
    assert len(sizes) == len(ROLES)  # one per role; the gate, the row orders and the rest are small: they join
    blob, codec, transform = encode_artifact(model, {}, codec="auto", transform="grouped")
    header = artifact_header(blob)
    assert struct.unpack_from("<6sHI32s", blob)[1] == 3 and transform == "grouped"
    cursor, expected = 0, []
    for size in sizes:
        name, out = compress_auto(coded[cursor : cursor + size])
        expected.append([name, len(out)])
        cursor += size
    assert header["streams"] == expected and codec == max(expected, key=lambda s: s[1])[0]
    write_artifact(tmp_path / "g.pgolf", model, {}, codec="lzma", transform="grouped")
    assert {c for c, _ in artifact_header((tmp_path / "g.pgolf").read_bytes())["streams"]} == {"lzma"}
    loaded, _ = read_artifact(tmp_path / "g.pgolf")
    assert all(torch.equal(loaded[n].data, model[n].data) for n in model)


def test_version_2_single_stream_grouped_artifacts_still_load(tmp_path: Path) -> None:
    model = layered_model()
    blob, _, _ = encode_artifact(model, {}, codec="zlib", transform="grouped")
    header = artifact_header(blob)
    table, raw = _serialize(model)
    payload = compress(apply_transform(raw, _regions(table), "grouped"), "zlib")
    del header["streams"]
    header.update(format_version=2, payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    (tmp_path / "v2.pgolf").write_bytes(sealed(header, payload, version=2))
    loaded, _ = read_artifact(tmp_path / "v2.pgolf")
    assert all(torch.equal(loaded[n].data, model[n].data) for n in model)


def test_a_stream_table_that_misses_the_payload_is_refused(tmp_path: Path) -> None:
    blob, _, _ = encode_artifact(layered_model(), {}, codec="zlib", transform="grouped")
    header = artifact_header(blob)
    header["streams"][0][1] += 1
    new_header = brotli.compress(json.dumps(header, separators=(",", ":")).encode())
    prefix = struct.pack("<6sHI32s", b"PGOLF\0", 3, len(new_header), hashlib.sha256(new_header).digest())
    payload = blob[PREFIX_BYTES + struct.unpack_from("<6sHI32s", blob)[2] :]
    (tmp_path / "bad.pgolf").write_bytes(prefix + new_header + payload)
    with pytest.raises(ArtifactError, match="stream table"):
        read_artifact(tmp_path / "bad.pgolf")


@pytest.mark.skipif(not CODECS["lrzip"].available, reason="the lrzip tool is not installed (apt-get install lrzip)")
def test_lrzip_streams_need_the_tool_to_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = layered_model()
    write_artifact(tmp_path / "z.pgolf", model, {}, codec="lrzip", level=1, transform="grouped")
    loaded, _ = read_artifact(tmp_path / "z.pgolf")
    assert all(torch.equal(loaded[n].data, model[n].data) for n in model)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ArtifactError, match="apt-get install lrzip"):
        read_artifact(tmp_path / "z.pgolf")
