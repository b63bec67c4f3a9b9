"""`pgolf reproduce summary.json`: re-run a run from its manifest and say whether the result matches.

The manifest holds the config that trained (proxy mode already resolved), the code hash, the data
fingerprint and the environment; differences in those are reported before the run, because they
explain a mismatch. On CPU with the same code and data the weights come out bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgolf.config import config_from_dict
from pgolf.data.resolve import resolve_dataset, train_files
from pgolf.experiments.results import RunResult, load_run
from pgolf.pipeline import run_train
from pgolf.train import provenance
from pgolf.train.distributed import choose_device

_COMPARED = ("val_bpb", "val_loss", "pre_quant_val_bpb", "model_bytes", "steps")


@dataclass(frozen=True)
class Reproduction:
    original: RunResult
    rerun: RunResult
    tolerance: float
    notes: tuple[str, ...]

    @property
    def identical_weights(self) -> bool:
        return self.original.summary["weights_sha256"] == self.rerun.summary["weights_sha256"]

    @property
    def delta_bpb(self) -> float:
        return self.rerun.summary["val_bpb"] - self.original.summary["val_bpb"]

    @property
    def reproduced(self) -> bool:
        return self.identical_weights or abs(self.delta_bpb) <= self.tolerance

    def report(self) -> str:
        lines = [f"original: {self.original.run_dir}", f"rerun:    {self.rerun.run_dir}", *self.notes,
                 f"{'metric':<20}{'original':>16}{'rerun':>16}{'difference':>14}"]
        for key in _COMPARED:
            a, b = self.original.summary[key], self.rerun.summary[key]
            lines.append(f"{key:<20}{a:>16.8g}{b:>16.8g}{b - a:>+14.3g}")
        verdict = ("REPRODUCED: bit-identical weights" if self.identical_weights else
                   f"REPRODUCED within {self.tolerance:g} bpb (weights differ)" if self.reproduced else
                   f"did NOT reproduce: val_bpb differs by {self.delta_bpb:+.6f} (tolerance {self.tolerance:g})")
        return "\n".join([*lines, verdict])


def _differences(summary: dict[str, Any], fingerprint: dict[str, Any], environment: dict[str, Any]) -> list[str]:
    manifest = summary["manifest"]
    notes = []
    if manifest["code_sha256"] != provenance.code_hash():
        notes.append(f"note: the pgolf code differs from the run's (git commit then: {manifest['git_commit']})")
    shards = ("tokenizer", "train_shards", "val_shards")
    if any(manifest["data"][k] != fingerprint[k] for k in shards):
        notes.append("note: the data differs from the run's fingerprint (tokenizer or shard hashes)")
    for key in ("torch", "device_name", "world_size", "attention_backend"):
        if manifest["environment"].get(key) != environment.get(key):
            notes.append(f"note: {key} was {manifest['environment'].get(key)!r}, now {environment.get(key)!r}")
    return notes


def _fresh_run_id(out_dir: Path, base: str) -> str:
    candidate, i = base, 0
    while (out_dir / candidate).exists():
        i += 1
        candidate = f"{base}-{i}"
    return candidate


def reproduce(path: Path, out_dir: Path | None = None, tolerance: float = 0.0,
              echo: Callable[[str], None] = print) -> Reproduction:
    original = load_run(path)
    manifest = original.summary["manifest"]
    cfg = config_from_dict(manifest["config"], f"{path} manifest")
    cfg.run.out_dir = str(out_dir if out_dir is not None else original.run_dir.parent)
    cfg.run.run_id = _fresh_run_id(Path(cfg.run.out_dir), f"{original.run_id}-repro")
    paths = resolve_dataset(cfg)
    fingerprint = provenance.data_fingerprint(paths.dataset_dir, paths.tokenizer_path, train_files(cfg, paths))
    notes = _differences(original.summary, fingerprint, provenance.environment(choose_device(cfg.train.device), 1))
    for note in notes:
        echo(note)
    run_train(cfg)
    return Reproduction(original, load_run(Path(cfg.run.out_dir) / cfg.run.run_id), tolerance, tuple(notes))
