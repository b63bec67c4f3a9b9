"""Budget accounting: decimal cap, raw byte counts, exact excess."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgolf.artifact.budget import BUDGET_BYTES, Budget, check_budget, count_code_bytes
from pgolf.errors import ArtifactError


def test_cap_is_decimal() -> None:
    assert BUDGET_BYTES == 16_000_000 != 16 * 1024 * 1024


def test_arithmetic_under_at_and_over_the_cap() -> None:
    under = Budget(code_bytes=47_642, model_bytes=15_815_847)
    assert (under.total, under.margin, under.fits) == (15_863_489, 136_511, True)
    exact = Budget(code_bytes=1_000, model_bytes=15_999_000)
    assert (exact.margin, exact.fits) == (0, True)
    check_budget(exact)
    over = Budget(code_bytes=1_001, model_bytes=15_999_000)
    assert (over.total, over.margin, over.fits) == (16_000_001, -1, False)
    with pytest.raises(ArtifactError, match=r"submission is 1 bytes over the 16,000,000-byte cap"):
        check_budget(over)
    small = Budget(code_bytes=10, model_bytes=95, limit=100)
    assert small.margin == -5 and not small.fits


def test_report_states_every_number() -> None:
    files = (Path("/x/pgolf/a.py"), Path("/x/pgolf/b.py"))
    text = Budget(47_642, 15_815_847, code_files=files).report()
    assert "47,642" in text and "15,815,847" in text and "15,863,489" in text and "16,000,000" in text
    assert "136,511 bytes under the cap" in text and "2 imported pgolf source files" in text
    assert "raw UTF-8 bytes" in text and "/x/pgolf/b.py" in text
    over = Budget(1_000_000, 15_123_456).report()
    assert "123,456 bytes OVER the cap" in over


def test_count_code_bytes_counts_raw_utf8(tmp_path: Path) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("print('héllo ✓')\n", encoding="utf-8")
    b.write_bytes(b"x = 1\r\n")
    assert count_code_bytes([a, b]) == len("print('héllo ✓')\n".encode()) + 7 == 27
    assert count_code_bytes([]) == 0
