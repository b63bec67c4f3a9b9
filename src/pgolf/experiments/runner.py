"""Launch `pgolf train` runs one after another or N at a time, skipping finished ones, resuming
interrupted ones.

Each run is a subprocess (`python -m pgolf train --config <resolved.toml>`, or `--resume RUN_DIR`), so a
crash or out-of-memory in one run does not end the ablation, and N runs can be pinned to N devices
with CUDA_VISIBLE_DEVICES. The child sees none of the official environment variables (SEED, ...):
the resolved config file is the whole truth.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgolf.config import ENV_VARS, Config, config_from_dict, read_toml_file
from pgolf.errors import UserError
from pgolf.experiments.results import SUMMARY_NAME
from pgolf.rundir import CHECKPOINT_NAME
from pgolf.utils import atomic_write_json, atomic_write_text

_LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMINGS_NAME = "timings.json"


@dataclass(frozen=True)
class PlannedRun:
    config: str  # name of the configuration (row) it belongs to
    seed: int
    cfg: Config

    @property
    def run_id(self) -> str:
        return self.cfg.run.run_id

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run.out_dir) / self.cfg.run.run_id

    def state(self) -> str:
        """'done' (summary.json exists), 'resume' (a checkpoint exists) or 'fresh'."""
        if (self.run_dir / SUMMARY_NAME).is_file():
            self._check_unchanged()
            return "done"
        if (self.run_dir / CHECKPOINT_NAME).is_file():
            self._check_unchanged()
            return "resume"
        return "fresh"

    def _check_unchanged(self) -> None:
        saved_path = self.run_dir / "config.toml"
        if not saved_path.is_file():
            return
        saved = config_from_dict(read_toml_file(saved_path), str(saved_path)).to_dict()
        planned = self.cfg.to_dict()
        for section, entries in planned.items():
            for key, value in entries.items():
                if (section, key) != ("run", "out_dir") and saved.get(section, {}).get(key) != value:  # folders move
                    raise UserError(
                        f"run {self.run_dir} was made with {section}.{key}={saved[section][key]!r} "
                        f"but the ablation now asks for {value!r}: delete {self.run_dir} to re-run it, "
                        "or give the changed configuration a new name")


@dataclass
class Launcher:
    """Runs planned runs as subprocesses, `jobs` at a time (one per entry of `devices` when given)."""

    work_dir: Path
    jobs: int = 1
    devices: Sequence[str] = ()
    echo: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.devices:
            self.jobs = len(self.devices)
        if self.jobs < 1:
            raise UserError(f"--jobs must be ≥ 1, got {self.jobs}")
        path = self.work_dir / TIMINGS_NAME
        if path.is_file():
            self.timings.update(json.loads(path.read_text(encoding="utf-8")))

    def _command(self, run: PlannedRun, state: str) -> list[str]:
        if state == "resume":
            return [sys.executable, "-m", "pgolf", "train", "--resume", str(run.run_dir)]
        config_file = self.work_dir / "configs" / f"{run.run_id}.toml"
        atomic_write_text(config_file, run.cfg.to_toml())
        if run.run_dir.exists():  # started but left nothing to resume from: start over
            shutil.rmtree(run.run_dir)
        return [sys.executable, "-m", "pgolf", "train", "--config", str(config_file)]

    def _env(self, device: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and k not in _LAUNCHER_VARS}
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        return env

    def run_all(self, runs: Sequence[PlannedRun]) -> list[str]:
        """Run what is not finished; return one line per failed run (empty when all succeeded)."""
        todo = [(run, run.state()) for run in runs]
        pending = [(run, state) for run, state in todo if state != "done"]
        skipped = len(todo) - len(pending)
        if skipped:
            self.echo(f"{skipped} of {len(todo)} runs already finished: skipped")
        failures: list[str] = []
        free: list[str | None] = [*self.devices] or [None] * self.jobs
        active: dict[subprocess.Popen, tuple[PlannedRun, str | None, float]] = {}
        done = skipped
        try:
            while pending or active:
                while pending and free:
                    run, state = pending.pop(0)
                    device = free.pop(0)
                    log_path = self.work_dir / "logs" / f"{run.run_id}.log"
                    log_path.parent.mkdir(parents=True, exist_ok=True)
                    command = self._command(run, state)
                    with open(log_path, "a", encoding="utf-8") as log:
                        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._env(device))
                    active[process] = (run, device, time.perf_counter())
                    where = f" on device {device}" if device is not None else ""
                    self.echo(f"[{done + len(active):>3}/{len(todo)}] start {run.run_id} ({state}){where}")
                for process in [p for p in active if p.poll() is not None]:
                    run, device, started = active.pop(process)
                    free.append(device)
                    done += 1
                    seconds = time.perf_counter() - started
                    failures += self._finished(run, process.returncode, seconds, f"[{done:>3}/{len(todo)}]")
                    self._echo_eta(len(todo) - done)
                if active:
                    time.sleep(0.2)
        except BaseException:
            for process in active:
                process.terminate()
            for process in active:
                process.wait()
            raise
        return failures

    def _echo_eta(self, left: int) -> None:
        if left > 0 and self.timings:
            per_run = sum(self.timings.values()) / len(self.timings)
            self.echo(f"      {left} runs left, about {left * per_run / self.jobs / 60:.1f} min "
                      f"({per_run:.0f} s per run measured)")

    def _finished(self, run: PlannedRun, returncode: int, seconds: float, counter: str) -> list[str]:
        log = self.work_dir / "logs" / f"{run.run_id}.log"
        summary_path = run.run_dir / SUMMARY_NAME
        if returncode != 0 or not summary_path.is_file():
            self.echo(f"{counter} FAILED {run.run_id} (exit {returncode}) after {seconds:.1f} s: see {log}")
            return [f"{run.run_id}: exit {returncode}, log {log}"]
        self.timings[run.run_id] = round(seconds, 3)
        atomic_write_json(self.work_dir / TIMINGS_NAME, self.timings)
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        self.echo(f"{counter} done  {run.run_id} in {seconds:.1f} s: val_bpb {summary['val_bpb']:.4f}, "
                  f"{summary['steps']} steps, {summary['artifact_bytes']:,} bytes")
        return []
