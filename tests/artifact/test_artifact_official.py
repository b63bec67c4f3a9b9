"""Official `train_gpt.py` exports: load, dequantize exactly like pgolf, re-pack losslessly, refuse junk."""

from __future__ import annotations

import io
import pickle
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from artifact_fixtures import baseline_state_dict, official_int8_export, official_ptz_bytes
from pgolf.artifact.format import read_artifact, write_artifact
from pgolf.artifact.official import load_official_checkpoint, official_quant_to_model, read_official_int8
from pgolf.errors import ArtifactError
from pgolf.quant import dequantize, quantize_state_dict_int8
from testkit import present


@pytest.fixture(scope="module")
def state_dict() -> dict[str, Tensor]:
    sd = baseline_state_dict(vocab=1100, dim=64, untied_head=True)
    sd["extra.cube"] = torch.randn(41, 40, 41)  # exercises the per-tensor branch
    return sd


@pytest.fixture(scope="module")
def official(state_dict: dict[str, Tensor]) -> dict[str, Any]:
    obj = official_int8_export(state_dict)
    assert set(obj["qmeta"]) == {"tok_emb.weight", "lm_head.weight"}
    assert obj["passthrough_orig_dtypes"] and "extra.cube" in obj["quantized"]
    return obj


@pytest.fixture
def ptz(tmp_path: Path, official: dict[str, Any]) -> Path:
    path = tmp_path / "final_model.int8.ptz"
    path.write_bytes(official_ptz_bytes(official))
    return path


def assert_same_tensors(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert set(a) == set(b)
    for name, tensor in a.items():
        assert tensor.dtype == b[name].dtype and tensor.shape == b[name].shape, name
        assert torch.equal(tensor, b[name]), name


def test_ptz_dequantizes_exactly_like_pgolf_roundtrip(ptz: Path, state_dict: dict[str, Tensor]) -> None:
    assert_same_tensors(load_official_checkpoint(ptz), dequantize(quantize_state_dict_int8(state_dict)))


def test_pgolf_codes_equal_official_codes(official: dict[str, Any], state_dict: dict[str, Tensor]) -> None:
    ours = quantize_state_dict_int8(state_dict)
    for name, q in official["quantized"].items():
        assert torch.equal(ours[name].data, q), name
        assert torch.equal(present(ours[name].scale), official["scales"][name]), name
    for name, t in official["passthrough"].items():
        assert ours[name].data.dtype == t.dtype and torch.equal(ours[name].data, t), name


def test_final_model_pt_loads_unchanged(tmp_path: Path, state_dict: dict[str, Tensor]) -> None:
    path = tmp_path / "final_model.pt"
    torch.save(state_dict, path)
    assert_same_tensors(load_official_checkpoint(path), state_dict)
    legacy = tmp_path / "legacy.pt"
    torch.save(state_dict, legacy, _use_new_zipfile_serialization=False)
    assert_same_tensors(load_official_checkpoint(legacy), state_dict)


def test_repack_preserves_codes(tmp_path: Path, ptz: Path, official: dict[str, Any]) -> None:
    qm = read_official_int8(ptz)
    for name, q in official["quantized"].items():
        assert qm[name].scheme == ("per_row" if name in official["qmeta"] else "per_tensor") and qm[name].bits == 8
        assert torch.equal(qm[name].data, q) and torch.equal(present(qm[name].scale), official["scales"][name])
    write_artifact(tmp_path / "repacked.pgolf", qm, {"source": "final_model.int8.ptz"}, codec="zstd")
    loaded, meta = read_artifact(tmp_path / "repacked.pgolf")
    assert meta == {"source": "final_model.int8.ptz"}
    for name, q in official["quantized"].items():
        assert torch.equal(loaded[name].data, q) and torch.equal(present(loaded[name].scale), official["scales"][name])
    assert_same_tensors(dequantize(loaded), load_official_checkpoint(ptz))


def test_scheme_from_scale_rank_without_qmeta(official: dict[str, Any]) -> None:
    obj = {k: v for k, v in official.items() if k != "qmeta"}
    qm = official_quant_to_model(obj)
    assert qm["tok_emb.weight"].scheme == "per_row" and qm["extra.cube"].scheme == "per_tensor"


def write_ptz(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "bad.ptz"
    path.write_bytes(official_ptz_bytes(obj))
    return path


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda o: o.update({"__quant_format__": "int6_gptq_v2"}), "unsupported official export format 'int6_gptq_v2'"),
        (lambda o: o.pop("scales"), "'scales' is not a dict"),
        (lambda o: o["passthrough"].update({"blocks.0.attn_scale": [1.0, 2.0]}), "'passthrough' is not a dict"),
        (lambda o: o["dtypes"].update({"tok_emb.weight": "complex128"}), "'dtypes' is not a dict"),
        (lambda o: o["scales"].pop("tok_emb.weight"), "names disagree"),
        (lambda o: o["quantized"].update({"tok_emb.weight": torch.zeros(1100, 64)}), "expected int8"),
        (lambda o: o["scales"].update({"tok_emb.weight": torch.ones(3, dtype=torch.float16)}), "malformed int8"),
    ],
)
def test_malformed_official_exports(tmp_path: Path, official: dict[str, Any], mutate, match: str) -> None:
    obj = {k: (dict(v) if isinstance(v, dict) else v) for k, v in official.items()}
    mutate(obj)
    with pytest.raises(ArtifactError, match=match):
        load_official_checkpoint(write_ptz(tmp_path, obj))


class NotAllowed:
    pass


def test_refuses_non_state_dicts_and_foreign_files(tmp_path: Path) -> None:
    cases: dict[str, bytes] = {}
    for label, obj in {"list": [torch.zeros(2)], "mixed": {"w": torch.zeros(2), "step": 3}}.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        cases[label] = buf.getvalue()
    cases["class"] = pickle.dumps(NotAllowed(), protocol=2)
    cases["zlib_junk"] = zlib.compress(b"not a torch file", 9)
    cases["text"] = b"hello, definitely not a checkpoint"
    cases["damaged_zlib"] = zlib.compress(b"x" * 1000, 9)[:-5]
    expected = {"list": "not a dict of name -> tensor", "mixed": "not a dict of name -> tensor",
                "class": "weights-only", "zlib_junk": "weights-only", "text": "neither final_model.pt",
                "damaged_zlib": "damaged zlib"}
    for label, blob in cases.items():
        path = tmp_path / label
        path.write_bytes(blob)
        with pytest.raises(ArtifactError, match=expected[label]):
            load_official_checkpoint(path)


def test_refuses_pgolf_artifacts_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "a.pgolf"
    write_artifact(path, quantize_state_dict_int8({"w": torch.zeros(3)}), {})
    with pytest.raises(ArtifactError, match="is a pgolf artifact"):
        load_official_checkpoint(path)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_official_checkpoint(tmp_path / "final_model.pt")


def test_read_official_int8_refuses_float_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "final_model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ArtifactError, match="float weights"):
        read_official_int8(path)
