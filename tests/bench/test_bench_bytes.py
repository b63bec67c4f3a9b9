"""`pgolf bench bytes`: the records' own code counts and the codec stacks it packs with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pgolf.bench.bytes import (
    RECORD_OF_PRESET,
    codes_entropy_bytes,
    export_seconds,
    record_code_bytes,
    record_model_bytes,
    similarity_sort_speed,
    stack_config,
)
from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.quant.container import QuantizedModel, QuantizedTensor

RECORDS = Path(__file__).parents[3] / "shared" / "records"


@pytest.mark.skipif(not RECORDS.is_dir(), reason="the shared record folders are not checked out")
def test_record_code_bytes_are_what_each_record_counted() -> None:
    counted = {preset: record_code_bytes(RECORDS / folder) for preset, folder in RECORD_OF_PRESET.items()}
    assert counted["sota"] == (31_999, "logs 'Code size (compressed)' (largest)")  # #1855 ships compressed code
    assert counted["pr635"] == (78_438, "submission.json bytes_code")
    assert counted["baseline"] == (47_642, "submission.json bytes_code")
    assert counted["proteus_v16"] == ((RECORDS / "proteus_v16" / "train_gpt.py").stat().st_size,
                                      "train_gpt.py file size (the record states no count)")


@pytest.mark.skipif(not RECORDS.is_dir(), reason="the shared record folders are not checked out")
def test_record_model_bytes_are_the_largest_packed_model_each_record_logged() -> None:
    packed = {preset: record_model_bytes(RECORDS / folder) for preset, folder in RECORD_OF_PRESET.items()}
    assert packed["sota"] == (15_875_551, "quantized+pergroup")  # seed 1234's, of 15,865,260 / 15,868,948 / that
    assert packed["pr635"] == (15_905_723, "int6+zstd")
    assert packed["baseline"] == (15_815_847, "int8+zlib")
    assert packed["proteus_v16"] is None  # the record ships no log


def test_an_unpacked_model_size_is_not_taken_for_the_packed_one(tmp_path: Path) -> None:
    (tmp_path / "train.log").write_text("Serialized model: 67224983 bytes\nCode size: 47642 bytes\n")
    assert record_model_bytes(tmp_path) is None
    (tmp_path / "b.log").write_text("Serialized model int8+zlib: 15815847 bytes (payload:17178912)\n")
    assert record_model_bytes(tmp_path) == (15_815_847, "int8+zlib")


@pytest.mark.skipif(not RECORDS.is_dir(), reason="the shared record folders are not checked out")
def test_the_similarity_sort_is_timed_against_the_records_on_the_same_codes() -> None:
    result = similarity_sort_speed(RECORDS, rows=96, cols=16)
    assert (result["rows"], result["cols"], result["same_order"]) == (96, 16, True)
    assert result["speedup"] > 0


def test_stack_labels_set_codec_lqer_and_layout() -> None:
    cfg = load_config("sota_cpu", env={})
    plain, record = stack_config(cfg, "brotli"), stack_config(cfg, "lrzip+lqer+grouped")
    assert (plain.quant.codec, plain.quant.lqer_rank, plain.quant.transform) == ("brotli", 0, cfg.quant.transform)
    assert (record.quant.codec, record.quant.lqer_rank, record.quant.transform) == ("lrzip", 4, "grouped")
    assert stack_config(cfg, "auto+lqer+grouped").quant.codec == "auto"
    with pytest.raises(UserError, match=r"<codec>\[\+lqer\]\[\+grouped\]"):
        stack_config(cfg, "brotli+magic")


def test_export_seconds_time_a_fresh_process_without_then_with_the_shrink_cache() -> None:
    seconds = export_seconds("baseline")
    assert set(seconds) == {"cold", "cached"}
    assert 0 < seconds["cached"] < seconds["cold"]  # the second process reads what the first one shrank


def test_codes_entropy_counts_each_tensors_integer_codes_only() -> None:
    four_values = (torch.arange(64) % 4 - 2).to(torch.int8).reshape(8, 8)  # 2 bits a code: 16 bytes
    constant = torch.full((4, 4), 3, dtype=torch.int8)  # 0 bits
    halves = torch.tensor([[-31] * 8, [31] * 8], dtype=torch.int8)  # 1 bit a code: 2 bytes
    tensors = {name: QuantizedTensor(name, "per_row", 6, codes, torch.ones(codes.shape[0]), torch.float32)
               for name, codes in (("a", four_values), ("b", constant), ("c", halves))}
    tensors["gain"] = QuantizedTensor("gain", "passthrough", None, torch.randn(64), None, torch.float32)
    assert codes_entropy_bytes(QuantizedModel(tensors)) == 18
