"""`pgolf data download`: the official shards via the manifest scheme of TECHNIQUES §1.7.

Remote layout (under the repo's remote root, default `datasets/`): `manifest.json`,
`datasets/fineweb10B_<variant>/fineweb_{val,train}_NNNNNN.bin` and `tokenizers/...`. Local files
mirror the remote paths under the output folder. Every file is fetched to a temporary name, checked
(against the source's sha256 when it publishes one, and shard header/size always), then renamed into
place and recorded in `download.json`, so an interrupted download resumes where it stopped and a
re-run skips verified files without re-hashing them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pgolf.data.manifest import DatasetPaths
from pgolf.data.shards import read_num_tokens
from pgolf.errors import DataError
from pgolf.utils import atomic_write_json, read_json, sha256_file

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
DEFAULT_REMOTE_ROOT = "datasets"
DEFAULT_TRAIN_SHARDS = 80
MANIFEST = "manifest.json"
DOCS_FILES = ["docs_selected.jsonl", "docs_selected.source_manifest.json"]  # the raw documents (--with-docs)
JOURNAL = "download.json"
VARIANT_PATTERN = re.compile(r"^(sp[A-Za-z0-9_]+|byte260)$")
KNOWN_REPOS = "sp1024/byte260: willdepueoai/parameter-golf; sp4096/sp8192: kevclark/parameter-golf"
CASEOPS_VARIANT = "sp8192_lossless_caps_caseops_v1_reserved"
VARIANT_REPOS = {  # where the records found each variant (TECHNIQUES §1.7)
    "sp1024": DEFAULT_REPO_ID, "byte260": DEFAULT_REPO_ID,
    "sp4096": "kevclark/parameter-golf", "sp8192": "kevclark/parameter-golf",
    CASEOPS_VARIANT: "romeerp/parameter-golf-caseops-v1",
}


def default_repo_id(variant: str) -> str:
    """The hub repo that publishes `variant` (the default repo for unknown variants)."""
    return VARIANT_REPOS.get(variant, DEFAULT_REPO_ID)


class FileSource(Protocol):
    """Where remote files come from; paths are relative to the remote root (e.g. `manifest.json`)."""

    def fetch(self, remote_path: str, dest: Path) -> None:
        """Write the remote file to `dest`; raise DataError when it cannot be had."""
        ...

    def sha256(self, remote_path: str) -> str | None:
        """The file's published sha256, or None when the source does not know it."""
        ...


@dataclass
class LocalSource:
    """A local folder laid out like the hub's remote root (tests, mirrors, shared filesystems)."""

    root: Path

    def _path(self, remote_path: str) -> Path:
        path = Path(self.root) / remote_path
        if not path.is_file():
            raise DataError(f"{remote_path} is not in {self.root}: check the mirror folder")
        return path

    def fetch(self, remote_path: str, dest: Path) -> None:
        shutil.copyfile(self._path(remote_path), dest)

    def sha256(self, remote_path: str) -> str | None:
        """The mirror's own copy is the reference, as the LFS hash is on the hub."""
        return sha256_file(self._path(remote_path))


@dataclass
class HubSource:
    """A Hugging Face dataset repo, read through `hf_hub_download` (its cache is reused)."""

    repo_id: str = DEFAULT_REPO_ID
    remote_root: str = DEFAULT_REMOTE_ROOT
    revision: str | None = None
    _sha_cache: dict[str, str | None] = field(default_factory=dict, repr=False)

    def _remote(self, remote_path: str) -> str:
        return f"{self.remote_root.strip('/')}/{remote_path}" if self.remote_root else remote_path

    def fetch(self, remote_path: str, dest: Path) -> None:
        from huggingface_hub import hf_hub_download

        try:
            cached = hf_hub_download(
                repo_id=self.repo_id, filename=self._remote(remote_path), repo_type="dataset", revision=self.revision
            )
        except Exception as exc:  # huggingface_hub raises many types (HTTP, offline, not found)
            raise DataError(self._failure(remote_path, exc)) from exc
        _link_or_copy(Path(cached), dest)

    def _failure(self, remote_path: str, exc: Exception) -> str:
        kind = type(exc).__name__
        if "NotFound" in kind and "Local" not in kind:
            where = f"{self._remote(remote_path)} is not in the hub repo {self.repo_id} ({kind})"
            return f"{where}: check --repo-id and the variant"
        return (
            f"could not download {self._remote(remote_path)} from {self.repo_id} ({kind}: {exc}): check the network "
            "and run the same command again (finished files are kept), or set HF_HUB_OFFLINE=1 to use only files "
            "already in the Hugging Face cache"
        )

    def sha256(self, remote_path: str) -> str | None:
        """The LFS sha256 from the hub's path info; None for non-LFS files or when the lookup fails."""
        if remote_path not in self._sha_cache:
            self._sha_cache[remote_path] = self._lookup_sha256(remote_path)
        return self._sha_cache[remote_path]

    def _lookup_sha256(self, remote_path: str) -> str | None:
        from huggingface_hub import HfApi

        try:
            infos = HfApi().get_paths_info(
                self.repo_id, [self._remote(remote_path)], repo_type="dataset", revision=self.revision
            )
        except Exception:  # noqa: BLE001 - checksums are best effort; the download itself reports real failures
            return None
        lfs = getattr(infos[0], "lfs", None) if infos else None
        return getattr(lfs, "sha256", None)


def _link_or_copy(source: Path, dest: Path) -> None:
    """Hard-link the cached blob when possible (no extra disk), else copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


@dataclass(frozen=True)
class DownloadResult:
    paths: DatasetPaths
    downloaded: list[str]
    skipped: list[str]


@dataclass(frozen=True)
class _Plan:
    dataset_name: str
    files: list[str]  # remote paths, relative to the remote root
    tokenizer_file: str | None
    vocab_size: int


def download(
    variant: str = "sp1024",
    out_dir: str | os.PathLike[str] = "data",
    *,
    train_shards: int = DEFAULT_TRAIN_SHARDS,
    source: FileSource | None = None,
    skip_manifest: bool = False,
    with_docs: bool = False,
    log: Callable[[str], None] | None = None,
) -> DownloadResult:
    """Fetch all val shards, the first `train_shards` train shards and the tokenizer of `variant`.

    `with_docs` also fetches the shuffled source documents (for retraining tokenizers); `log`
    receives one line per file.
    """
    if not VARIANT_PATTERN.match(variant):
        raise DataError(f"variant {variant!r} is not sp<name> or byte260: e.g. --variant sp1024")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = source or HubSource()
    manifest = _load_manifest(source, out, skip_manifest)
    plan = _plan(manifest, variant, train_shards, out / MANIFEST)
    journal = _Journal(out / JOURNAL)
    downloaded, skipped = [], []
    for remote in plan.files + (DOCS_FILES if with_docs else []):
        fetched = _ensure_file(source, remote, out / remote, journal)
        (downloaded if fetched else skipped).append(remote)
        if log is not None:
            log(f"{'downloaded' if fetched else 'present   '} {remote}")
    tokenizer = out / plan.tokenizer_file if plan.tokenizer_file else out / "tokenizers"
    paths = DatasetPaths(out / "datasets" / plan.dataset_name, tokenizer, plan.vocab_size)
    return DownloadResult(paths, downloaded, skipped)


def _load_manifest(source: FileSource, out: Path, skip_manifest: bool) -> dict[str, Any]:
    """The remote manifest (always re-fetched, so a repo switch never meets a stale copy) or the local one."""
    path = out / MANIFEST
    if not skip_manifest:
        with _temp_beside(path) as tmp:
            source.fetch(MANIFEST, tmp)
            os.replace(tmp, path)
    elif not path.is_file():
        raise DataError(f"no local manifest at {path}: run without --skip-manifest to fetch it")
    manifest = read_json(path, "delete it and run again")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("datasets"), list):
        raise DataError(f"manifest {path} has no datasets list: delete it and run again, or check --repo-id")
    return manifest


def _plan(manifest: dict[str, Any], variant: str, train_shards: int, manifest_path: Path) -> _Plan:
    name = f"fineweb10B_{variant}"
    entry = next((d for d in manifest["datasets"] if d.get("name") == name), None)
    if entry is None:
        available = sorted(str(d.get("name", "")).removeprefix("fineweb10B_") for d in manifest["datasets"])
        raise DataError(
            f"variant {variant} is not in the manifest (available: {', '.join(available) or 'none'}): use another "
            f"--repo-id ({KNOWN_REPOS}); if you switched repos with --skip-manifest, {manifest_path} is stale: "
            "delete it or drop --skip-manifest"
        )
    stats = entry.get("stats") or {}
    files_train, files_val = int(stats.get("files_train", 0)), int(stats.get("files_val", 0))
    if not 0 <= train_shards <= files_train:
        raise DataError(
            f"--train-shards {train_shards} is outside 0..{files_train}: "
            f"variant {variant} has {files_train} train shards"
        )
    prefix = f"datasets/{name}"
    files = [f"{prefix}/fineweb_val_{i:06d}.bin" for i in range(files_val)]
    if entry.get("val_bytes_glob"):
        files += [f"{prefix}/fineweb_val_bytes_{i:06d}.bin" for i in range(files_val)]
    files += [f"{prefix}/fineweb_train_{i:06d}.bin" for i in range(train_shards)]
    tokenizer_files = _tokenizer_files(manifest, entry.get("tokenizer_name"), variant)
    files += tokenizer_files
    vocab = int(entry.get("vocab_size", 0))
    return _Plan(name, files, tokenizer_files[0] if tokenizer_files else None, vocab)


def _tokenizer_files(manifest: dict[str, Any], tokenizer_name: str | None, variant: str) -> list[str]:
    entry = next((t for t in manifest.get("tokenizers", []) if t.get("name") == tokenizer_name), None)
    if entry is None:
        raise DataError(
            f"the manifest lists no tokenizer {tokenizer_name!r} for variant {variant}: "
            "the repo's manifest is incomplete; check --repo-id"
        )
    return [entry[key] for key in ("model_path", "vocab_path", "path") if entry.get(key)]


class _Journal:
    """`download.json`: sha256, size and mtime of each verified file, rewritten after every file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        if path.is_file():
            with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
                self.files = dict(json.loads(path.read_text(encoding="utf-8")).get("files", {}))

    def trusted(self, remote: str, local: Path) -> bool:
        """A file verified earlier is trusted without re-hashing while its size and mtime are unchanged."""
        record = self.files.get(remote)
        if record is None or not local.is_file():
            return False
        stat = local.stat()
        return (stat.st_size, stat.st_mtime_ns) == (record.get("size"), record.get("mtime_ns"))

    def record(self, remote: str, local: Path, sha256: str) -> None:
        stat = local.stat()
        self.files[remote] = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        atomic_write_json(self.path, {"files": self.files})


def _ensure_file(source: FileSource, remote: str, local: Path, journal: _Journal) -> bool:
    """Make `local` a verified copy of `remote`; True when it had to be downloaded."""
    if journal.trusted(remote, local) and _content_ok(local, remote):
        return False
    expected = source.sha256(remote)
    if local.is_file() and _verify_existing(remote, local, expected, journal):
        return False
    local.parent.mkdir(parents=True, exist_ok=True)
    with _temp_beside(local) as tmp:
        source.fetch(remote, tmp)
        digest = _verify(tmp, remote, expected)
        os.replace(tmp, local)
    journal.record(remote, local, digest)
    return True


def _verify_existing(remote: str, local: Path, expected: str | None, journal: _Journal) -> bool:
    """A file present but not trusted (changed, or from another downloader): keep it only if it checks out."""
    digest = sha256_file(local)
    known = expected or journal.files.get(remote, {}).get("sha256")
    if (known is not None and digest != known) or not _content_ok(local, remote):
        return False
    journal.record(remote, local, digest)
    return True


def _content_ok(path: Path, remote: str) -> bool:
    try:
        _check_content(path, remote)
    except DataError:
        return False
    return True


def _verify(path: Path, remote: str, expected: str | None) -> str:
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        raise DataError(
            f"checksum mismatch for {remote}: expected sha256 {expected}, got {digest}: the download was "
            "corrupted; run the same command again to retry"
        )
    _check_content(path, remote)
    return digest


def _check_content(path: Path, remote: str) -> None:
    if remote.endswith(".bin"):
        try:
            read_num_tokens(path)
        except DataError as exc:
            raise DataError(
                f"downloaded {remote} is damaged ({exc}); run the same command again to re-fetch it"
            ) from exc


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A fresh temporary path in `path`'s folder, removed afterwards unless it was renamed away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # sources create the file themselves (os.link needs a free name)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
