"""Run outputs: the log (stdout + train.log), metrics.jsonl and a progress display."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


class RunLogger:
    """Rank-0 logging. Lines go to stdout and train.log; `file_only` lines (code, manifest) to the file."""

    def __init__(self, run_dir: Path | None, enabled: bool = True, console: TextIO | None = None) -> None:
        self.enabled = enabled and run_dir is not None
        self.console = console or sys.stdout
        self._log: TextIO | None = None
        self._metrics: TextIO | None = None
        if self.enabled and run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(run_dir / "train.log", "a", encoding="utf-8")  # noqa: SIM115 - held open until close()
            self._metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - held open until close()

    def log(self, message: str, file_only: bool = False) -> None:
        if not self.enabled:
            return
        if not file_only:
            tqdm.write(message, file=self.console)
        if self._log is not None:
            self._log.write(message + "\n")
            self._log.flush()

    def metrics(self, record: dict[str, Any]) -> None:
        if self._metrics is not None:
            self._metrics.write(json.dumps(record, sort_keys=True) + "\n")
            self._metrics.flush()

    def close(self) -> None:
        for handle in (self._log, self._metrics):
            if handle is not None:
                handle.close()


class Progress:
    """A progress bar on a terminal; on a pipe, nothing (the log lines already report progress)."""

    def __init__(self, total: int | None, enabled: bool, initial: int = 0, desc: str = "train") -> None:
        interactive = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=not interactive, leave=False,
                        dynamic_ncols=True)

    def update(self, step: int, **postfix: float) -> None:
        self.bar.n = step
        if postfix:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()}, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
