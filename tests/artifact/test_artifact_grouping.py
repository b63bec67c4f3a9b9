"""The `grouped` payload layout: the record's row order, the layout itself, round trips and damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pgolf.artifact.codecs import CODECS
from pgolf.artifact.format import _regions, _serialize, read_artifact, write_artifact
from pgolf.artifact.grouping import similarity_order
from pgolf.artifact.transforms import apply_transform, invert_transform
from pgolf.errors import ArtifactError
from pgolf.quant.container import QuantizedModel, QuantizedTensor
from pgolf.quant.intk import ClipRule, quantize_rows
from testkit import SOTA_RECORD, record_functions


def layered_model() -> QuantizedModel:
    g = torch.Generator().manual_seed(0)
    tensors = {}
    roles = ("attn.c_q.weight", "mlp.proj.weight")
    names = ["tok_emb.weight"] + [f"blocks.{i}.{role}" for i in range(2) for role in roles]
    for name in names:
        codes, scale = quantize_rows(torch.randn(24, 16, generator=g), 6, ClipRule("max"))
        tensors[name] = QuantizedTensor(name, "per_row", 6, codes, scale, torch.float32)
    tensors["gain"] = QuantizedTensor("gain", "passthrough", None, torch.randn(5, generator=g), None, torch.float32)
    return QuantizedModel(tensors)


@pytest.mark.skipif(not SOTA_RECORD.is_file(), reason="the shared record scripts are not checked out")
@pytest.mark.parametrize(("shape", "low", "high"), [((40, 12), -31, 32), ((300, 4), -1, 2), ((256, 128), -31, 32)])
def test_row_order_is_the_records_similarity_sort(shape: tuple[int, int], low: int, high: int) -> None:
    """Random codes, and codes of three values in four columns, where most steps have tied nearest rows."""
    matrix = np.random.default_rng(0).integers(low, high, size=shape).astype(np.int8)
    record = record_functions("_similarity_sort_l1")["_similarity_sort_l1"](matrix)
    assert np.array_equal(similarity_order(matrix), record)


def test_tied_rows_are_taken_in_index_order() -> None:
    matrix = np.zeros((9, 5), dtype=np.int8)
    matrix[4] = 3  # farthest: taken last
    assert similarity_order(matrix).tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 4]


def test_layout_groups_roles_transposes_and_stores_orders() -> None:
    model = layered_model()
    table, raw = _serialize(model)
    regions = _regions(table)
    assert [r.group for r in regions if r.group] == ["tok_emb.weight", "attn.c_q.weight", "mlp.proj.weight",
                                                     "attn.c_q.weight", "mlp.proj.weight"]
    coded = apply_transform(raw, regions, "grouped")
    sorted_rows = 24 * 3  # tok_emb and both c_q matrices
    assert len(coded) == len(raw) + 2 * sorted_rows
    # after tok_emb: the two c_q matrices (layer 0 then 1), each sorted and transposed
    q0 = model["blocks.0.attn.c_q.weight"].data.numpy()
    order = similarity_order(q0)
    assert coded[24 * 16 : 2 * 24 * 16] == np.ascontiguousarray(q0[order].T).tobytes()
    assert invert_transform(coded, regions, "grouped") == raw


@pytest.mark.parametrize("codec", [c for c in ("lzma", "lrzip") if CODECS[c].available])
def test_grouped_artifact_roundtrips(tmp_path: Path, codec: str) -> None:
    model = layered_model()
    write_artifact(tmp_path / "g.pgolf", model, {}, codec=codec, transform="grouped")
    loaded, _ = read_artifact(tmp_path / "g.pgolf")
    assert all(torch.equal(loaded[n].data, model[n].data) for n in model)


def test_damaged_row_order_is_refused() -> None:
    table, raw = _serialize(layered_model())
    regions = _regions(table)
    coded = bytearray(apply_transform(raw, regions, "grouped"))
    start = 5 * 24 * 16  # the first stored order follows the five code matrices
    coded[start : start + 4] = b"\x00\x00\x00\x00"  # row 0 twice
    with pytest.raises(ArtifactError, match="not a permutation"):
        invert_transform(bytes(coded), regions, "grouped")
    with pytest.raises(ArtifactError, match="tensor table needs"):
        invert_transform(bytes(coded[:-1]), regions, "grouped")
