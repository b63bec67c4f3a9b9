"""The run manifest: what code, config, data and machine produced a result, and the fingerprint of the
weights it ended with."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import pgolf
from pgolf.data.shards import list_shards
from pgolf.model.backend import attention_backend_name
from pgolf.utils import sha256_file


def package_files() -> list[Path]:
    """The package's .py files, or the single file of a `pgolf submit` export that carries them all."""
    if pgolf.SHIPPED_CODE:
        return sorted(Path(p).resolve() for p in pgolf.SHIPPED_CODE)
    root = Path(pgolf.__file__).parent
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _label(path: Path) -> str:
    root = Path(pgolf.__file__).parent
    return f"pgolf/{path.relative_to(root)}" if path.is_relative_to(root) else path.name


def code_hash() -> str:
    """sha256 over the package's .py files (relative path + content), independent of git."""
    digest = hashlib.sha256()
    for path in package_files():
        digest.update(_label(path).removeprefix("pgolf/").encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _source(path: Path) -> str:
    with tokenize.open(path) as handle:  # decoded as Python decodes it: an export may be a latin-1 file
        return handle.read()


def code_text() -> str:
    """Every source file of the package, concatenated with headers, for embedding in the log."""
    return "\n".join(f"# ==== {_label(p)} ====\n{_source(p)}" for p in package_files())


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(pgolf.__file__).parent, capture_output=True, text=True, timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(pgolf.__file__).parent,
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def data_fingerprint(dataset_dir: Path, tokenizer_path: Path, train_files: list[Path]) -> dict[str, Any]:
    val_files = list_shards(dataset_dir, "val")
    def describe(path: Path) -> dict[str, Any]:
        return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return {
        "dataset_dir": str(dataset_dir),
        "tokenizer": describe(tokenizer_path),
        "train_shards": [describe(p) for p in train_files],
        "val_shards": [describe(p) for p in val_files],
    }


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "world_size": world_size,
        "attention_backend": attention_backend_name(device),
        "pgolf": pgolf.__version__,
    }


def weights_sha256(state_dict: dict[str, Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
