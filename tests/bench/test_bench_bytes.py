"""`pgolf bench bytes`: the records' own code counts and the codec stacks it packs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgolf.bench.bytes import RECORD_OF_PRESET, record_code_bytes, stack_config
from pgolf.config import load_config
from pgolf.errors import UserError

RECORDS = Path(__file__).parents[3] / "shared" / "records"


@pytest.mark.skipif(not RECORDS.is_dir(), reason="the shared record folders are not checked out")
def test_record_code_bytes_are_what_each_record_counted() -> None:
    counted = {preset: record_code_bytes(RECORDS / folder) for preset, folder in RECORD_OF_PRESET.items()}
    assert counted["sota"] == (31_999, "logs 'Code size (compressed)' (largest)")  # #1855 ships compressed code
    assert counted["pr635"] == (78_438, "submission.json bytes_code")
    assert counted["baseline"] == (47_642, "submission.json bytes_code")
    assert counted["proteus_v16"] == ((RECORDS / "proteus_v16" / "train_gpt.py").stat().st_size,
                                      "train_gpt.py file size (the record states no count)")


def test_stack_labels_set_codec_lqer_and_layout() -> None:
    cfg = load_config("sota_cpu", env={})
    plain, record = stack_config(cfg, "brotli"), stack_config(cfg, "lrzip+lqer+grouped")
    assert (plain.quant.codec, plain.quant.lqer_rank, plain.quant.transform) == ("brotli", 0, cfg.quant.transform)
    assert (record.quant.codec, record.quant.lqer_rank, record.quant.transform) == ("lrzip", 4, "grouped")
    assert stack_config(cfg, "auto+lqer+grouped").quant.codec == "auto"
    with pytest.raises(UserError, match=r"<codec>\[\+lqer\]\[\+grouped\]"):
        stack_config(cfg, "brotli+magic")
