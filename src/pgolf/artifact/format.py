"""The pgolf artifact: a versioned, pickle-free container for a `QuantizedModel`.

Layout (all integers little-endian)::

    b"PGOLF\\0"            6 bytes  magic
    format version        u16
    header length         u32
    sha256(header)        32 bytes
    header                UTF-8 JSON (codec, transform, tensor table, meta, payload lengths and digests);
                          from version 3 brotli-compressed (raw, the JSON tensor table is 24-41 KB at record size)
    payload               codec(transform(concatenation of every tensor's raw little-endian bytes))
                          — or, with a `streams` table (version 3), the parts of the transformed
                          payload each compressed as its own stream (`pgolf.artifact.streams`)

Each tensor contributes its `data` bytes then its `scale` bytes, in model order; the header gives
dtype, shape, offset and length of each region in the raw payload. `transform` (version 2 onward;
version 1 files have none) is a reversible per-region rewrite applied before the codec
(`pgolf.artifact.transforms`); the `grouped` transform is written as one stream per role group
(version 3 onward; a version 2 grouped payload is one stream). Every artifact is written as version 3: its
compressed header is bytes of the budget that a raw one would waste. Reading verifies magic,
version, header digest, header schema, payload length and digest, the transformed length, and the raw
length and digest before a single tensor is built, so a damaged or foreign file never reaches torch.
The whole file counts as model bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

import brotli
import torch
from torch import Tensor

from pgolf.artifact.codecs import AUTO, compress, decompress, get_codec
from pgolf.errors import ArtifactError
from pgolf.quant.container import DTYPES, SCHEMES, QuantizedModel, QuantizedTensor, Scheme, dtype_name
from pgolf.utils import atomic_write_bytes, sha256_bytes

if TYPE_CHECKING:  # imported where an artifact's payload is transformed or split into streams (not for `none`)
    from pgolf.artifact.streams import Streams
    from pgolf.artifact.transforms import Region

MAGIC = b"PGOLF\0"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # version 1: no payload transform; 2: one stream
_PACKED_HEADER = 3  # from this version on the header is brotli-compressed
_PREFIX = struct.Struct("<6sHI32s")
PREFIX_BYTES = _PREFIX.size
TRANSFORMS: tuple[str, ...] = ("none", "byteplane", "bitpack", "bykind", "grouped")  # `pgolf.artifact.transforms`


@dataclass(frozen=True)
class ArtifactInfo:
    """What `write_artifact` produced; `total_bytes` is the artifact's model-byte count."""

    path: Path
    total_bytes: int
    sha256: str
    codec: str
    header_bytes: int
    payload_bytes: int
    raw_payload_bytes: int
    transform: str = "none"


@dataclass(frozen=True)
class _Region:
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _Entry:
    name: str
    scheme: Scheme
    bits: int | None
    orig_dtype: torch.dtype
    data: _Region
    scale: _Region | None


# ---------------------------------------------------------------------------------------------- write


def _raw_bytes(t: Tensor) -> bytes:
    if sys.byteorder != "little":
        raise ArtifactError("pgolf artifacts are little-endian; pack them on a little-endian machine")
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _region_json(t: Tensor, offset: int) -> dict[str, Any]:
    return {"dtype": dtype_name(t.dtype), "shape": list(t.shape), "offset": offset,
            "nbytes": t.numel() * t.element_size()}


def _serialize(qm: QuantizedModel) -> tuple[list[dict[str, Any]], bytes]:
    """Tensor table for the header and the raw payload."""
    table: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    offset = 0
    for name, qt in qm.items():
        entry: dict[str, Any] = {"name": name, "scheme": qt.scheme, "bits": qt.bits,
                                 "orig_dtype": dtype_name(qt.orig_dtype), "scale": None}
        for key, tensor in (("data", qt.data), ("scale", qt.scale)):
            if tensor is None:
                continue
            entry[key] = _region_json(tensor, offset)
            chunks.append(_raw_bytes(tensor))
            offset += entry[key]["nbytes"]
        table.append(entry)
    return table, b"".join(chunks)


def _encode_header(header: dict[str, Any]) -> bytes:
    try:
        return json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"artifact meta is not plain JSON ({exc}): pass only str/int/float/bool/list/dict") from exc


def _regions(table: list[dict[str, Any]]) -> list[Region]:
    """Payload regions of a tensor table, in payload order, with int-k code widths and matrix roles marked."""
    from pgolf.artifact.transforms import Region

    regions = []
    for entry in table:
        for key in ("data", "scale"):
            region = entry.get(key)
            if region is None:
                continue
            itemsize = DTYPES[region["dtype"]].itemsize
            codes = key == "data" and region["dtype"] == "int8" and entry["scheme"] != "passthrough"
            matrix = codes and entry["scheme"] == "per_row" and len(region["shape"]) == 2 and region["nbytes"] > 0
            regions.append(Region(itemsize, region["nbytes"] // itemsize, entry["bits"] if codes else None,
                                  region["shape"][0] if matrix else 0, _role(entry["name"]) if matrix else ""))
    return regions


def _role(name: str) -> str:
    """The role of a tensor across layers: its name without the `blocks.<i>.` prefix."""
    return re.sub(r"^blocks\.\d+\.", "", name)


# codec, transform, payload, stream table (None: one stream)
_Encoded: TypeAlias = "tuple[str, str, bytes, Streams | None]"


def _encode_payload(raw: bytes, table: list[dict[str, Any]], codec: str, level: int | None,
                    transform: str) -> _Encoded:
    if transform == "none":  # the payload as it is: no transform code is imported (or shipped)
        coded = raw
    else:
        from pgolf.artifact.transforms import apply_transform

        regions = _regions(table)
        coded = apply_transform(raw, regions, transform)
        if transform == "grouped":  # one stream per role group: only runs that pack grouped import (and ship) these
            from pgolf.artifact.grouping import grouped_segments
            from pgolf.artifact.streams import compress_streams, main_codec

            streams, payload = compress_streams(coded, grouped_segments(regions), codec, level)
            return main_codec(streams, "zlib" if codec == AUTO else codec), transform, payload, streams
    if codec != AUTO:
        return codec, transform, compress(coded, codec, level), None
    from pgolf.artifact.auto import compress_auto  # only runs that pick their codec import (and ship) it

    name, payload = compress_auto(coded)
    return name, transform, payload, None


def _assemble(table: list[dict[str, Any]], raw: bytes, meta: dict[str, Any], encoded: _Encoded) -> bytes:
    """Prefix, header and payload of one encoding."""
    codec, transform, payload, streams = encoded
    header = _encode_header({
        "format_version": FORMAT_VERSION,
        "codec": codec,
        "transform": transform,
        "raw_payload_bytes": len(raw),
        "raw_payload_sha256": sha256_bytes(raw),
        "payload_bytes": len(payload),
        "payload_sha256": sha256_bytes(payload),
        **({"streams": [list(s) for s in streams]} if streams is not None else {}),
        "tensors": table,
        "meta": meta,
    })
    header = brotli.compress(header, quality=11)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), hashlib.sha256(header).digest()) + header + payload


def encode_artifact(qm: QuantizedModel, meta: dict[str, Any], codec: str = "zlib", level: int | None = None,
                    transform: str = "none") -> tuple[bytes, str, str]:
    """The artifact bytes of `qm` and `meta`, with the codec and transform actually used.

    `codec="auto"` / `transform="auto"` keep the smallest artifact (codecs at their default level, per stream
    for multi-stream payloads); ties keep the earlier candidate.
    """
    if transform != AUTO and transform not in TRANSFORMS:
        raise ArtifactError(f"unknown payload transform {transform!r}: use one of {', '.join(TRANSFORMS)}, auto")
    table, raw = _serialize(qm)
    best: tuple[bytes, str, str] | None = None
    for t in TRANSFORMS if transform == AUTO else (transform,):
        encoded = _encode_payload(raw, table, codec, level, t)
        blob = _assemble(table, raw, meta, encoded)
        if best is None or len(blob) < len(best[0]):
            best = (blob, encoded[0], t)
    assert best is not None
    return best


def write_artifact(
    path: str | os.PathLike[str],
    qm: QuantizedModel,
    meta: dict[str, Any],
    codec: str = "zlib",
    level: int | None = None,
    transform: str = "none",
) -> ArtifactInfo:
    """Pack `qm` and `meta` into `path` atomically; `auto` codec/transform keep the smallest result."""
    blob, _, _ = encode_artifact(qm, meta, codec, level, transform)
    return save_artifact_bytes(path, blob)


def save_artifact_bytes(path: str | os.PathLike[str], blob: bytes) -> ArtifactInfo:
    """Write bytes made by `encode_artifact` atomically and describe them."""
    header_len = _PREFIX.unpack_from(blob)[2]
    header = json.loads(_split(blob, Path(path))[0])
    atomic_write_bytes(path, blob)
    return ArtifactInfo(Path(path), len(blob), sha256_bytes(blob), header["codec"], header_len,
                        header["payload_bytes"], header["raw_payload_bytes"], header["transform"])


# ----------------------------------------------------------------------------------------------- read


def looks_like_torch_save(head: bytes) -> bool:
    """A zip archive (torch.save since 1.6) or a binary pickle (legacy torch.save, pickle protocol ≥ 2)."""
    return head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def looks_like_zlib(head: bytes) -> bool:
    """A zlib stream header (RFC 1950: deflate method, header checksum divisible by 31)."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def _refuse_foreign(data: bytes, path: Path) -> None:
    """Name the format of well-known non-artifacts instead of a bare 'wrong magic'."""
    if looks_like_torch_save(data):
        raise ArtifactError(
            f"{path} is a pickle/torch.save file, not a pgolf artifact; "
            "use `pgolf pack` / `pgolf eval` for official exports"
        )
    if looks_like_zlib(data):
        raise ArtifactError(
            f"{path} is a zlib stream (like the official final_model.int8.ptz), not a pgolf artifact; "
            "use `pgolf pack` / `pgolf eval` for official exports"
        )


def _bad(path: Path, what: str) -> ArtifactError:
    return ArtifactError(
        f"{path}: {what}; the file is damaged or not a pgolf artifact — re-create it with `pgolf pack`"
    )


def _split(data: bytes, path: Path) -> tuple[bytes, bytes]:
    """Check the fixed prefix and header digest; return (header JSON bytes, compressed payload)."""
    if data[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(data):
            raise _bad(path, f"truncated artifact ({len(data)} bytes)")
        _refuse_foreign(data, path)
        raise _bad(path, "wrong magic bytes")
    if len(data) < PREFIX_BYTES:
        raise _bad(path, f"truncated artifact ({len(data)} bytes, the fixed prefix alone is {PREFIX_BYTES})")
    _, version, header_len, header_digest = _PREFIX.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise ArtifactError(
            f"{path}: artifact format version {version} is not supported (this pgolf reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); use the pgolf release that wrote it"
        )
    header_end = PREFIX_BYTES + header_len
    if header_end > len(data):
        raise _bad(path, f"truncated artifact (header needs {header_end} bytes, file has {len(data)})")
    header = data[PREFIX_BYTES:header_end]
    if hashlib.sha256(header).digest() != header_digest:
        raise _bad(path, "header checksum mismatch")
    if version >= _PACKED_HEADER:
        try:
            header = brotli.decompress(header)
        except brotli.error:
            raise _bad(path, "the compressed header does not decompress") from None
    return header, data[header_end:]


def _get(obj: Any, key: str, kind: type, where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ArtifactError(f"artifact header: {where}.{key} is missing or has the wrong type; re-create the artifact")
    return value


def _dtype(name: Any, where: str) -> torch.dtype:
    if name not in DTYPES:
        raise ArtifactError(f"artifact header: {where} has unsupported dtype {name!r}; re-create the artifact")
    return DTYPES[name]


def _parse_region(obj: Any, cursor: int, where: str) -> _Region:
    dtype = _dtype(_get(obj, "dtype", str, where), where)
    shape = tuple(_get(obj, "shape", list, where))
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ArtifactError(f"artifact header: {where}.shape must be non-negative integers; re-create the artifact")
    offset, nbytes = _get(obj, "offset", int, where), _get(obj, "nbytes", int, where)
    if offset != cursor or nbytes != math.prod(shape) * dtype.itemsize:
        raise ArtifactError(f"artifact header: {where} offset/length disagree with the tensor table; "
                            "re-create the artifact")
    return _Region(dtype, shape, offset, nbytes)


def _is_scheme(value: str) -> TypeGuard[Scheme]:
    return value in SCHEMES


def _parse_entry(obj: Any, cursor: int, index: int) -> _Entry:
    where = f"tensors[{index}]"
    name = _get(obj, "name", str, where)
    scheme = _get(obj, "scheme", str, where)
    if not _is_scheme(scheme):
        raise ArtifactError(f"artifact header: {where} has unknown scheme {scheme!r}; upgrade pgolf or re-pack")
    bits = obj.get("bits")
    quantized = scheme != "passthrough"
    valid_bits = isinstance(bits, int) and not isinstance(bits, bool) and 1 <= bits <= 16
    bits_ok = valid_bits if quantized else bits is None
    if not bits_ok or quantized != (obj.get("scale") is not None):
        raise ArtifactError(f"artifact header: {where} ({name}) has bits/scale inconsistent with scheme {scheme}")
    orig_dtype = _dtype(_get(obj, "orig_dtype", str, where), where)
    data = _parse_region(obj.get("data"), cursor, f"{where}.data")
    scale = _parse_region(obj["scale"], cursor + data.nbytes, f"{where}.scale") if quantized else None
    expected_scale = {"per_row": data.shape[:1], "per_tensor": ()}.get(scheme)
    if scale is not None and (scale.shape != expected_scale or (not data.shape and scheme == "per_row")):
        raise ArtifactError(f"artifact header: {where} ({name}) scale shape {list(scale.shape)} does not fit "
                            f"scheme {scheme} with data shape {list(data.shape)}; re-create the artifact")
    return _Entry(name, scheme, bits, orig_dtype, data, scale)


def _parse_header(header_bytes: bytes) -> tuple[dict[str, Any], list[_Entry]]:
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"artifact header is not valid UTF-8 JSON ({exc}); re-create the artifact") from exc
    if not isinstance(header, dict):
        raise ArtifactError("artifact header is not a JSON object; re-create the artifact")
    get_codec(_get(header, "codec", str, "header"))
    if "transform" in header and header["transform"] not in TRANSFORMS:
        raise ArtifactError(f"artifact header: unknown payload transform {header['transform']!r}; "
                            "upgrade pgolf or re-pack")
    for key in ("raw_payload_bytes", "payload_bytes"):
        _get(header, key, int, "header")
    for key in ("raw_payload_sha256", "payload_sha256"):
        _get(header, key, str, "header")
    _get(header, "meta", dict, "header")
    entries: list[_Entry] = []
    cursor = 0
    for index, obj in enumerate(_get(header, "tensors", list, "header")):
        entry = _parse_entry(obj, cursor, index)
        entries.append(entry)
        cursor = (entry.scale or entry.data).offset + (entry.scale or entry.data).nbytes
    if len({e.name for e in entries}) != len(entries):
        raise ArtifactError("artifact header: duplicate tensor names; re-create the artifact")
    if cursor != header["raw_payload_bytes"]:
        raise ArtifactError("artifact header: tensor table does not cover the payload; re-create the artifact")
    return header, entries


def _tensor(raw: bytes, region: _Region) -> Tensor:
    if region.nbytes == 0:
        return torch.empty(region.shape, dtype=region.dtype)
    chunk = bytearray(raw[region.offset : region.offset + region.nbytes])
    return torch.frombuffer(chunk, dtype=region.dtype).reshape(region.shape)


def _build_model(entries: list[_Entry], raw: bytes) -> QuantizedModel:
    tensors: dict[str, QuantizedTensor] = {}
    for e in entries:
        scale = None if e.scale is None else _tensor(raw, e.scale)
        try:
            tensors[e.name] = QuantizedTensor(e.name, e.scheme, e.bits, _tensor(raw, e.data), scale, e.orig_dtype)
        except ValueError as exc:
            raise ArtifactError(f"artifact header: {exc}; re-create the artifact") from exc
    return QuantizedModel(tensors)


def read_artifact(path: str | os.PathLike[str]) -> tuple[QuantizedModel, dict[str, Any]]:
    """Load (model, meta) from an artifact, refusing anything damaged or foreign before building tensors."""
    path = Path(path)
    data = _read_file(path)
    header_bytes, payload = _split(data, path)
    header, entries = _parse_header(header_bytes)
    transform = header.get("transform", "none")
    if len(payload) != header["payload_bytes"]:
        state = "truncated artifact" if len(payload) < header["payload_bytes"] else "trailing bytes after payload"
        raise _bad(path, f"{state} (payload {len(payload)} bytes, header says {header['payload_bytes']})")
    if sha256_bytes(payload) != header["payload_sha256"]:
        raise _bad(path, "payload checksum mismatch")
    if "streams" in header:  # multi-stream: grouped artifacts only
        from pgolf.artifact.streams import decompress_streams, parse_streams

        coded = decompress_streams(payload, parse_streams(header["streams"], len(payload)))
    else:
        coded = decompress(payload, header["codec"])
    if transform == "none":  # its length is checked with its digest below
        raw = coded
    else:
        from pgolf.artifact.transforms import invert_transform

        raw = invert_transform(coded, _regions(header["tensors"]), transform)
    if len(raw) != header["raw_payload_bytes"] or sha256_bytes(raw) != header["raw_payload_sha256"]:
        raise _bad(path, "decompressed payload does not match its recorded length/checksum")
    return _build_model(entries, raw), header["meta"]


def read_artifact_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The artifact's `meta` (config, provenance) after checking its prefix and header; no tensors built."""
    path = Path(path)
    header_bytes, _ = _split(_read_file(path), path)
    header, _ = _parse_header(header_bytes)
    return header["meta"]


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"artifact {path} does not exist: check the path or run `pgolf pack` first") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path} is a directory, not an artifact file: pass the .pgolf file") from None


def artifact_model_bytes(path: str | os.PathLike[str]) -> int:
    """Model bytes charged against the budget: the size of the whole artifact file."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {path} does not exist: check the path or run `pgolf pack` first") from None
