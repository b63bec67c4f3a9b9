"""The pgolf container: bit-exact roundtrip for every codec, and refusal of anything damaged or foreign."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import brotli
import pytest
import torch

import pgolf.artifact.format as fmt
from artifact_fixtures import artifact_header, artifact_payload, baseline_state_dict, sealed
from pgolf.artifact.codecs import CODECS
from pgolf.artifact.format import MAGIC, PREFIX_BYTES, artifact_model_bytes, read_artifact, write_artifact
from pgolf.errors import ArtifactError
from pgolf.quant import QuantizedModel, QuantizedTensor, dequantize, quantize_state_dict_int8
from pgolf.utils import sha256_file
from testkit import present, same_tensor

META = {"config": {"model": {"dim": 128}, "seed": 1337}, "provenance": "unit test", "note": "héllo ✓"}


def edge_model() -> QuantizedModel:
    """The int8 export of a baseline-named state dict plus awkward tensors (0-d, empty, bool, per-tensor)."""
    sd = baseline_state_dict(vocab=1100, dim=64)
    sd["extra.cube"] = torch.randn(41, 40, 41)
    sd["extra.step"] = torch.tensor(7, dtype=torch.int64)
    sd["extra.empty"] = torch.zeros(0, 5)
    sd["extra.mask"] = torch.tensor([True, False, True])
    sd["extra.temperature"] = torch.tensor(0.25, dtype=torch.float64)
    qm = quantize_state_dict_int8(sd)
    assert {qt.scheme for qt in qm.values()} == {"per_row", "per_tensor", "passthrough"}
    return qm


@pytest.fixture(scope="module")
def model() -> QuantizedModel:
    return edge_model()


def assert_same_model(a: QuantizedModel, b: QuantizedModel) -> None:
    assert list(a) == list(b)
    for name in a:
        x, y = a[name], b[name]
        assert (x.scheme, x.bits, x.orig_dtype) == (y.scheme, y.bits, y.orig_dtype), name
        assert x.data.dtype == y.data.dtype and x.data.shape == y.data.shape, name
        assert torch.equal(x.data, y.data), name
        assert same_tensor(x.scale, y.scale), name
        assert x.scale is None or x.scale.dtype == present(y.scale).dtype, name


@pytest.mark.parametrize("codec", [*CODECS, "auto"])
def test_roundtrip_is_bit_exact(tmp_path: Path, model: QuantizedModel, codec: str) -> None:
    path = tmp_path / "model.pgolf"
    info = write_artifact(path, model, META, codec=codec)
    loaded, meta = read_artifact(path)
    assert meta == META
    assert_same_model(model, loaded)
    for name, t in dequantize(model).items():
        u = dequantize(loaded)[name]
        assert u.dtype == t.dtype and torch.equal(u, t), name
    assert info.total_bytes == path.stat().st_size == artifact_model_bytes(path)
    assert info.sha256 == sha256_file(path)
    assert info.codec in CODECS and codec in ("auto", info.codec)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pgolf"]  # no temporary file left behind


def test_auto_is_no_larger_than_any_codec(tmp_path: Path, model: QuantizedModel) -> None:
    sizes = {c: write_artifact(tmp_path / f"{c}.pgolf", model, META, codec=c).total_bytes for c in CODECS}
    auto = write_artifact(tmp_path / "auto.pgolf", model, META, codec="auto")
    assert auto.total_bytes == min(sizes.values()) and sizes[auto.codec] == auto.total_bytes


def test_output_is_deterministic_and_header_is_documented(tmp_path: Path, model: QuantizedModel) -> None:
    a = write_artifact(tmp_path / "a.pgolf", model, META)
    b = write_artifact(tmp_path / "b.pgolf", model, META)
    assert a.sha256 == b.sha256
    blob = (tmp_path / "a.pgolf").read_bytes()
    magic, version, header_len, digest = struct.unpack_from("<6sHI32s", blob)
    assert (magic, version) == (b"PGOLF\0", 3)  # one stream too: the header is compressed in every artifact
    packed = blob[PREFIX_BYTES : PREFIX_BYTES + header_len]
    assert hashlib.sha256(packed).digest() == digest
    text = brotli.decompress(packed)
    assert len(packed) < len(text) / 4  # the JSON tensor table repeats keys and names
    header = json.loads(text)
    assert header["codec"] == "zlib" and header["transform"] == "none"
    assert header["payload_bytes"] == len(blob) - PREFIX_BYTES - header_len
    first = header["tensors"][0]
    assert first["name"] == "tok_emb.weight" and first["scheme"] == "per_row" and first["bits"] == 8
    assert first["orig_dtype"] == "bfloat16" and first["data"] == {"dtype": "int8", "shape": [1100, 64], "offset": 0,
                                                                 "nbytes": 1100 * 64}
    assert first["scale"]["dtype"] == "float16" and first["scale"]["offset"] == 1100 * 64


def test_meta_must_be_json(tmp_path: Path, model: QuantizedModel) -> None:
    with pytest.raises(ArtifactError, match="meta is not plain JSON"):
        write_artifact(tmp_path / "a.pgolf", model, {"t": torch.zeros(1)})
    with pytest.raises(ArtifactError, match="unknown codec"):
        write_artifact(tmp_path / "a.pgolf", model, {}, codec="gzip")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ refusals


@pytest.fixture(scope="module")
def good_blob(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    small = QuantizedModel({k: v for k, v in edge_model().items() if k.startswith(("tok_emb", "extra"))})
    path = tmp_path_factory.mktemp("good") / "good.pgolf"
    write_artifact(path, small, META)
    return path.read_bytes()


@pytest.fixture
def build_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records every call that would build tensors; refusals must leave it empty."""
    calls: list[int] = []
    real = fmt._build_model

    def spy(*args: Any) -> QuantizedModel:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(fmt, "_build_model", spy)
    return calls


def header_len(blob: bytes) -> int:
    return struct.unpack_from("<6sHI32s", blob)[2]


def refuse(tmp_path: Path, blob: bytes, match: str, build_calls: list[int]) -> None:
    path = tmp_path / "bad.pgolf"
    path.write_bytes(blob)
    with pytest.raises(ArtifactError, match=match):
        read_artifact(path)
    assert build_calls == []


def test_good_blob_reads_through_the_spy(tmp_path: Path, good_blob: bytes, build_calls: list[int]) -> None:
    (tmp_path / "ok.pgolf").write_bytes(good_blob)
    read_artifact(tmp_path / "ok.pgolf")
    assert build_calls == [1]


def test_wrong_magic(tmp_path: Path, good_blob: bytes, build_calls: list[int]) -> None:
    refuse(tmp_path, b"PGOLD\0" + good_blob[6:], "wrong magic", build_calls)
    refuse(tmp_path, b"hello world, this is text" * 4, "wrong magic", build_calls)


@pytest.mark.parametrize("where", ["empty", "in_magic", "in_prefix", "in_header", "header_end", "in_payload", "last"])
def test_truncated(tmp_path: Path, good_blob: bytes, build_calls: list[int], where: str) -> None:
    hl = header_len(good_blob)
    cut = {"empty": 0, "in_magic": 3, "in_prefix": 10, "in_header": PREFIX_BYTES + hl // 2,
           "header_end": PREFIX_BYTES + hl, "in_payload": (PREFIX_BYTES + hl + len(good_blob)) // 2,
           "last": len(good_blob) - 1}[where]
    refuse(tmp_path, good_blob[:cut], "truncated", build_calls)


def test_trailing_bytes(tmp_path: Path, good_blob: bytes, build_calls: list[int]) -> None:
    refuse(tmp_path, good_blob + b"\0", "trailing bytes", build_calls)


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_flipped_byte_in_header_json(tmp_path: Path, good_blob: bytes, build_calls: list[int], offset: int) -> None:
    hl = header_len(good_blob)
    for pos in (PREFIX_BYTES + offset, PREFIX_BYTES + hl // 2 + offset, PREFIX_BYTES + hl - 1 - offset):
        blob = bytearray(good_blob)
        blob[pos] ^= 0x01
        refuse(tmp_path, bytes(blob), "header checksum mismatch", build_calls)


def test_digit_changed_in_header_keeps_valid_json_but_is_refused(
    tmp_path: Path, good_blob: bytes, build_calls: list[int]
) -> None:
    text = json.dumps(artifact_header(good_blob), separators=(",", ":")).encode()
    changed = brotli.compress(text.replace(b'"shape":[1100,', b'"shape":[1000,', 1))
    assert changed != brotli.compress(text)
    digest = good_blob[12:PREFIX_BYTES]  # the original header's
    blob = struct.pack("<6sHI", MAGIC, 3, len(changed)) + digest + changed + artifact_payload(good_blob)
    refuse(tmp_path, blob, "header checksum mismatch", build_calls)


def test_flipped_byte_in_payload(tmp_path: Path, good_blob: bytes, build_calls: list[int]) -> None:
    start = PREFIX_BYTES + header_len(good_blob)
    for pos in (start, (start + len(good_blob)) // 2, len(good_blob) - 1):
        blob = bytearray(good_blob)
        blob[pos] ^= 0x80
        refuse(tmp_path, bytes(blob), "payload checksum mismatch", build_calls)


def test_flipped_byte_in_prefix(tmp_path: Path, good_blob: bytes, build_calls: list[int]) -> None:
    for pos, match in ((6, "version"), (8, "truncated|checksum"), (20, "header checksum mismatch")):
        blob = bytearray(good_blob)
        blob[pos] ^= 0x04
        refuse(tmp_path, bytes(blob), match, build_calls)


def test_torch_save_and_pickle_are_named(tmp_path: Path, build_calls: list[int]) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buf)
    legacy = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    for blob in (buf.getvalue(), legacy.getvalue(), pickle.dumps({"w": [1, 2]}, protocol=2),
                 pickle.dumps({"w": [1, 2]}, protocol=5)):
        refuse(tmp_path, blob, r"this is a pickle/torch.save file|is a pickle/torch.save file, not a pgolf artifact;"
               r" use `pgolf pack` / `pgolf eval` for official exports", build_calls)


def test_official_ptz_is_named(tmp_path: Path, build_calls: list[int]) -> None:
    import zlib

    refuse(tmp_path, zlib.compress(b"anything", 9), "zlib stream .*official", build_calls)


def reseal(blob: bytes, edit: Any) -> bytes:
    """Apply `edit` to the parsed header and rewrite it with a valid digest (a deliberate forgery)."""
    header = artifact_header(blob)
    edit(header)
    return sealed(header, artifact_payload(blob))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.update(codec="gzip"), "unknown codec"),
        (lambda h: h["tensors"][0]["data"].update(dtype="object"), "unsupported dtype"),
        (lambda h: h["tensors"][0]["data"].update(shape=[1000, 64]), "offset/length disagree"),
        (lambda h: h["tensors"][1]["data"].update(offset=0), "offset/length disagree"),
        (lambda h: h["tensors"][0].update(scheme="per_channel"), "unknown scheme"),
        (lambda h: h["tensors"][0].update(bits=None), "inconsistent"),
        (lambda h: h["tensors"][0].update(scale=None), "inconsistent"),
        (lambda h: h["tensors"][0].update(name=h["tensors"][1]["name"]), "duplicate"),
        (lambda h: h["tensors"].pop(), "does not cover"),
        (lambda h: h.pop("meta"), "meta"),
        (lambda h: h.update(payload_bytes="12"), "payload_bytes"),
        (lambda h: h["tensors"][0]["scale"].update(shape=[1]), "offset/length disagree"),
    ],
)
def test_forged_header_schema_is_refused(
    tmp_path: Path, good_blob: bytes, build_calls: list[int], edit: Any, match: str
) -> None:
    refuse(tmp_path, reseal(good_blob, edit), match, build_calls)


def test_forged_raw_checksum_is_refused(tmp_path: Path, good_blob: bytes, build_calls: list[int]) -> None:
    refuse(tmp_path, reseal(good_blob, lambda h: h.update(raw_payload_sha256="0" * 64)),
           "decompressed payload", build_calls)


def test_header_not_json(tmp_path: Path, build_calls: list[int]) -> None:
    raw = b"{not json"
    blob = struct.pack("<6sHI32s", MAGIC, 1, len(raw), hashlib.sha256(raw).digest()) + raw
    refuse(tmp_path, blob, "not valid UTF-8 JSON", build_calls)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        read_artifact(tmp_path / "nope.pgolf")
    with pytest.raises(ArtifactError, match="does not exist"):
        artifact_model_bytes(tmp_path / "nope.pgolf")
    with pytest.raises(ArtifactError, match="directory"):
        read_artifact(tmp_path)


def test_scale_shape_checked_against_data(tmp_path: Path, build_calls: list[int]) -> None:
    qt = QuantizedTensor("w", "per_row", 8, torch.zeros(3, 2, dtype=torch.int8), torch.ones(3), torch.float32)
    path = tmp_path / "w.pgolf"
    write_artifact(path, QuantizedModel({"w": qt}), {})
    refuse(tmp_path, reseal(path.read_bytes(), lambda h: h["tensors"][0]["data"].update(shape=[2, 3])),
           "scale shape", build_calls)
