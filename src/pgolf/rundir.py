"""The run folder and the typed hand-offs between the stages of a run.

`runs/<run_id>/` holds config.toml, train.log, metrics.jsonl, checkpoint.pt, weights.pgolf (float),
artifact.pgolf (+ artifact.tensors.json) and summary.json. Each stage returns a frozen result:
training a `TrainResult`, packing a `PackResult`, each eval stage a `StageScore`; `Summary` is
summary.json. This module imports nothing from pgolf, so every stage may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.toml"
LOG_NAME = "train.log"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "weights.pgolf"
ARTIFACT_NAME = "artifact.pgolf"
TENSOR_REPORT_SUFFIX = ".tensors.json"  # artifact.pgolf → artifact.tensors.json
SUMMARY_NAME = "summary.json"


def tensor_report_path(artifact: Path) -> Path:
    """Where the per-tensor report of an artifact goes."""
    return artifact.with_name(artifact.stem + TENSOR_REPORT_SUFFIX)


@dataclass(frozen=True)
class RunDir:
    """The paths of one run folder."""

    root: Path

    @classmethod
    def of(cls, out_dir: str | Path, run_id: str) -> RunDir:
        return cls(Path(out_dir) / run_id)

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def log(self) -> Path:
        return self.root / LOG_NAME

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_NAME

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_NAME

    @property
    def weights(self) -> Path:
        return self.root / WEIGHTS_NAME

    @property
    def artifact(self) -> Path:
        return self.root / ARTIFACT_NAME

    @property
    def tensor_report(self) -> Path:
        return tensor_report_path(self.artifact)

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_NAME

    def finished(self) -> bool:
        return self.summary.exists()


@dataclass(frozen=True)
class TrainResult:
    """What the training loop reached."""

    steps: int
    train_tokens: int
    training_time_ms: float
    stopped_early: bool
    last_train_loss: float
    recompiles: int

    @property
    def wallclock_s(self) -> float:
        return self.training_time_ms / 1000.0

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / max(self.wallclock_s, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "train_tokens": self.train_tokens, "train_tokens_per_s": self.tokens_per_s,
                "wallclock_s": self.wallclock_s, "stopped_early": self.stopped_early,
                "last_train_loss": self.last_train_loss, "recompiles_after_warmup": self.recompiles}


@dataclass(frozen=True)
class PackResult:
    """An artifact on disk (or refused) and its budget: what `pgolf pack` prints and summary.json records."""

    artifact: Path
    codec: str
    model_bytes: int
    code_bytes: int
    budget_limit: int
    code_files: tuple[str, ...]
    budget_report: str
    transform: str = "none"
    payload_bytes: int | None = None
    quant: Mapping[str, Any] = field(default_factory=dict)
    tensor_rows: tuple[Mapping[str, Any], ...] = ()
    tensor_report: Path | None = None
    pack_seconds: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def artifact_bytes(self) -> int:
        return self.model_bytes + self.code_bytes

    @property
    def budget_margin(self) -> int:
        return self.budget_limit - self.artifact_bytes

    @property
    def fits_budget(self) -> bool:
        return self.artifact_bytes <= self.budget_limit

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "artifact": str(self.artifact), "codec": self.codec, "model_bytes": self.model_bytes,
            "code_bytes": self.code_bytes, "artifact_bytes": self.artifact_bytes, "budget_margin": self.budget_margin,
            "fits_budget": self.fits_budget, "budget_limit": self.budget_limit, "code_files": list(self.code_files),
            "budget_report": self.budget_report, "transform": self.transform}
        if self.tensor_report is not None:
            out |= {"payload_bytes": self.payload_bytes, "quant": dict(self.quant),
                    "tensor_rows": [dict(r) for r in self.tensor_rows], "tensor_report": str(self.tensor_report),
                    "pack_seconds": self.pack_seconds, "warnings": list(self.warnings)}
        return out


@dataclass(frozen=True)
class StageScore:
    """One eval stage's score; `report` keeps its full description (throughput, projection, completeness)."""

    stage: str
    val_loss: float
    val_bpb: float
    val_tokens: int
    val_bytes: int
    legality: Mapping[str, Any]
    report: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> StageScore:
        return cls(report["stage"], report["val_loss"], report["val_bpb"], report["val_tokens"], report["val_bytes"],
                   report["legality"], dict(report))

    def to_dict(self) -> dict[str, Any]:
        return {**self.report, "stage": self.stage, "val_loss": self.val_loss, "val_bpb": self.val_bpb,
                "val_tokens": self.val_tokens, "val_bytes": self.val_bytes, "legality": dict(self.legality)}


@dataclass(frozen=True)
class Summary:
    """summary.json: the headline score (the last eval stage), the float and artifact scores, budget, provenance."""

    headline: StageScore
    stages: tuple[StageScore, ...]  # the eval stages beyond plain (empty by default)
    pre_quant: tuple[float, float]  # (val_loss, val_bpb) of the float weights
    post_quant: tuple[float, float]  # ... of the artifact's weights, plain eval
    pack: PackResult
    train: TrainResult
    params: int
    weights_sha256: str
    artifact_sha256: str
    phases: Mapping[str, Any]
    manifest: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)  # calibration budget, weight-averaging scores

    def to_dict(self) -> dict[str, Any]:
        h, p, m = self.headline, self.pack, self.manifest
        cfg = m["config"]
        return {
            "val_loss": h.val_loss, "val_bpb": h.val_bpb, "val_tokens": h.val_tokens, "val_bytes": h.val_bytes,
            "eval_stage": h.stage, "legality": dict(h.legality), "eval_stages": [s.to_dict() for s in self.stages],
            "pre_quant_val_loss": self.pre_quant[0], "pre_quant_val_bpb": self.pre_quant[1],
            "post_quant_val_loss": self.post_quant[0], "post_quant_val_bpb": self.post_quant[1],
            "quant_gap_bpb": self.post_quant[1] - self.pre_quant[1],
            "artifact_bytes": p.artifact_bytes, "code_bytes": p.code_bytes, "model_bytes": p.model_bytes,
            "budget_margin": p.budget_margin, "fits_budget": p.fits_budget, "codec": p.codec,
            "transform": p.transform, "quant": dict(p.quant), "pack_seconds": p.pack_seconds,
            "code_files": list(p.code_files), "params": self.params, **self.train.to_dict(),
            "seed": m["seed"], "preset": cfg["run"]["preset"], "run_id": cfg["run"]["run_id"],
            "git_commit": m["git_commit"], "weights_sha256": self.weights_sha256,
            "artifact_sha256": self.artifact_sha256, "phases": dict(self.phases), "proxy": m.get("proxy"),
            "manifest": dict(m), **self.extra,
        }
