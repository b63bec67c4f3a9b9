"""Payload transforms (byte planes, bit packing), `auto` choices and format versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from artifact_fixtures import artifact_header, artifact_payload, sealed
from pgolf.artifact.codecs import CODECS
from pgolf.artifact.format import encode_artifact, read_artifact, write_artifact
from pgolf.artifact.transforms import TRANSFORMS, Region, apply_transform, invert_transform
from pgolf.errors import ArtifactError
from pgolf.quant.container import QuantizedModel, QuantizedTensor
from pgolf.quant.intk import ClipRule, quantize_rows
from testkit import same_tensor


def int_k_model() -> QuantizedModel:
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for bits in range(4, 9):
        codes, scale = quantize_rows(torch.randn(37, 29, generator=g), bits, ClipRule("search"))
        tensors[f"w{bits}"] = QuantizedTensor(f"w{bits}", "per_row", bits, codes, scale, torch.float32)
    tensors["gain"] = QuantizedTensor("gain", "passthrough", None, torch.randn(33, generator=g), None, torch.float32)
    ids = torch.arange(-5, 6, dtype=torch.int8)
    tensors["ids"] = QuantizedTensor("ids", "passthrough", None, ids, None, torch.int8)
    return QuantizedModel(tensors)


def same(a: QuantizedModel, b: QuantizedModel) -> bool:
    return list(a) == list(b) and all(
        torch.equal(a[n].data, b[n].data) and a[n].bits == b[n].bits
        and same_tensor(a[n].scale, b[n].scale) for n in a)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_every_transform_roundtrips_through_the_artifact(tmp_path: Path, transform: str) -> None:
    model = int_k_model()
    info = write_artifact(tmp_path / "a.pgolf", model, {"k": 1}, codec="zstd", transform=transform)
    assert info.transform == transform
    loaded, meta = read_artifact(tmp_path / "a.pgolf")
    assert same(loaded, model) and meta == {"k": 1}


def test_bitpack_stores_k_bits_per_code() -> None:
    codes = torch.tensor([-31, 31, 0, -1, 5, 7, -7, 30, 1], dtype=torch.int8)
    raw = codes.numpy().tobytes() + b"\x01\x02\x03\x04"
    regions = [Region(1, 9, 6), Region(2, 2)]
    packed = apply_transform(raw, regions, "bitpack")
    assert len(packed) == (9 * 6 + 7) // 8 + 4
    assert packed[-4:] == b"\x01\x03\x02\x04"  # fp16 region split into byte planes
    assert invert_transform(packed, regions, "bitpack") == raw
    with pytest.raises(ArtifactError, match="cannot be bit-packed"):
        apply_transform(bytes([40]), [Region(1, 1, 6)], "bitpack")
    with pytest.raises(ArtifactError, match="tensor table needs"):
        invert_transform(packed[:-1], regions, "bitpack")


def test_bykind_puts_every_code_region_first_and_floats_in_byte_planes() -> None:
    """Codes of two tensors around a float region: the codes come out side by side, then the floats' planes."""
    first, scale, second, gain = b"\x01\x02\x03", b"\x10\x11\x12\x13", b"\x04\x05", b"\x20\x21"
    regions = [Region(1, 3, 6), Region(2, 2), Region(1, 2, 6), Region(2, 1)]
    raw = first + scale + second + gain
    coded = apply_transform(raw, regions, "bykind")
    assert coded == first + second + b"\x10\x12\x11\x13" + gain
    assert invert_transform(coded, regions, "bykind") == raw
    with pytest.raises(ArtifactError, match="tensor table needs"):
        invert_transform(coded[:-1], regions, "bykind")


def test_auto_keeps_the_smallest_codec_and_transform() -> None:
    model = int_k_model()
    sizes = {(c, t): len(encode_artifact(model, {}, codec=c, transform=t)[0])
             for c in CODECS if CODECS[c].available for t in TRANSFORMS}
    blob, codec, transform = encode_artifact(model, {}, codec="auto", transform="auto")
    assert len(blob) == min(sizes.values()) == sizes[(codec, transform)]
    blob_t, _, transform_only = encode_artifact(model, {}, codec="lzma", transform="auto")
    assert len(blob_t) == min(sizes[("lzma", t)] for t in TRANSFORMS) == sizes[("lzma", transform_only)]


def test_version_1_artifacts_without_a_transform_still_load(tmp_path: Path) -> None:
    model = int_k_model()
    blob, _, _ = encode_artifact(model, {"v": 1})
    header = artifact_header(blob)
    del header["transform"]
    header["format_version"] = 1
    (tmp_path / "v1.pgolf").write_bytes(sealed(header, artifact_payload(blob), version=1))
    loaded, meta = read_artifact(tmp_path / "v1.pgolf")
    assert same(loaded, model) and meta == {"v": 1}


def test_damaged_bitpacked_payload_is_refused_before_tensors_are_built(tmp_path: Path) -> None:
    path = tmp_path / "a.pgolf"
    write_artifact(path, int_k_model(), {}, codec="zlib", transform="bitpack")
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="checksum"):
        read_artifact(path)
    with pytest.raises(ArtifactError, match="unknown payload transform"):
        encode_artifact(int_k_model(), {}, transform="shuffle")
