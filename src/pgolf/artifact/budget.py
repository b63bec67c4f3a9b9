"""The 16,000,000-byte budget: counted code bytes + model bytes (TECHNIQUES §3.9, §5.1).

Code is counted as it ships (`pgolf.export.shipped_budget`, what `pgolf train` logs): the single-file
`train_gpt.py` a run of its config exports, in the config's `quant.code_form` (by default minified
inside the smallest self-extracting wrapper), holding only the modules that config reaches. A run
of such an export counts its own file. `imported_code.measure_budget` is the conservative raw count: every
imported pgolf source file at its UTF-8 size. Model bytes are the whole artifact file. The cap is decimal:
16,000,000 bytes, not 16 MiB.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pgolf.errors import ArtifactError

BUDGET_BYTES = 16_000_000


def count_code_bytes(files: Iterable[str | os.PathLike[str]]) -> int:
    """Sum of the files' sizes in bytes (raw UTF-8 source, no minification or compression)."""
    return sum(Path(f).stat().st_size for f in files)


@dataclass(frozen=True)
class Budget:
    """Byte accounting of one submission; `code_files` only documents what `code_bytes` counted."""

    code_bytes: int
    model_bytes: int
    limit: int = BUDGET_BYTES
    code_files: tuple[Path, ...] = ()
    code_how: str = ""  # how code_bytes were counted, for the report

    @property
    def total(self) -> int:
        return self.code_bytes + self.model_bytes

    @property
    def margin(self) -> int:
        """limit − total; negative when over budget."""
        return self.limit - self.total

    @property
    def fits(self) -> bool:
        return self.total <= self.limit

    def report(self) -> str:
        how = self.code_how or "raw UTF-8 bytes"
        if self.code_files and not self.code_how:
            how += f" of {len(self.code_files)} imported pgolf source files"
        lines = [
            f"code bytes:  {self.code_bytes:>12,} ({how})",
            f"model bytes: {self.model_bytes:>12,} (whole artifact file)",
            f"total:       {self.total:>12,} of {self.limit:,} (decimal cap)",
            f"margin:      {self.margin:>12,} bytes under the cap" if self.fits
            else f"excess:      {-self.margin:>12,} bytes OVER the cap",
        ]
        lines += [f"  counted: {path}" for path in self.code_files]
        return "\n".join(lines)


def check_budget(budget: Budget) -> None:
    """Raise ArtifactError with the exact excess when the submission is over the cap."""
    if not budget.fits:
        raise ArtifactError(
            f"submission is {-budget.margin:,} bytes over the {budget.limit:,}-byte cap "
            f"(code {budget.code_bytes:,} + model {budget.model_bytes:,} = {budget.total:,}): "
            "use a smaller model, fewer bits or a stronger codec"
        )
