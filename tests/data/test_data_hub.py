from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pgolf.data import hub
from pgolf.data.hub import HubSource, LocalSource, download
from pgolf.data.shards import read_num_tokens, write_shard
from pgolf.errors import DataError

PREFIX = "datasets/fineweb10B_sp1024"


@pytest.fixture
def fake_hub(tmp_path: Path, sp1024_path: Path) -> Path:
    """A folder laid out like the hub's `datasets/` root: manifest, sp1024 shards, tokenizer."""
    root = tmp_path / "hub"
    rng = np.random.default_rng(0)
    for name, count in [("val", 2), ("train", 4)]:
        for i in range(count):
            write_shard(root / PREFIX / f"fineweb_{name}_{i:06d}.bin", rng.integers(0, 1024, 500 + i))
    (root / "tokenizers").mkdir()
    for suffix in (".model", ".vocab"):
        (root / "tokenizers" / f"fineweb_1024_bpe{suffix}").write_bytes(sp1024_path.with_suffix(suffix).read_bytes())
    manifest = {
        "datasets": [
            {
                "name": "fineweb10B_sp1024",
                "tokenizer_name": "sp_bpe_1024",
                "vocab_size": 1024,
                "bos_id": 1,
                "stats": {"files_train": 4, "files_val": 2},
            },
            {
                "name": "fineweb10B_byte260",
                "tokenizer_name": "byte260",
                "vocab_size": 260,
                "stats": {"files_train": 0, "files_val": 0},
            },
        ],
        "tokenizers": [
            {
                "name": "sp_bpe_1024",
                "model_path": "tokenizers/fineweb_1024_bpe.model",
                "vocab_path": "tokenizers/fineweb_1024_bpe.vocab",
            },
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@dataclass
class CountingSource(LocalSource):
    """A LocalSource that records fetches and can fail or corrupt chosen files."""

    fetched: list[str] = field(default_factory=list)
    fail_after: int | None = None
    corrupt: str | None = None

    def fetch(self, remote_path: str, dest: Path) -> None:
        if self.fail_after is not None and len(self.fetched) >= self.fail_after:
            raise DataError("network down (simulated)")
        self.fetched.append(remote_path)
        super().fetch(remote_path, dest)
        if remote_path == self.corrupt:
            data = bytearray(dest.read_bytes())
            data[-1] ^= 0xFF
            dest.write_bytes(bytes(data))


def _shards(n_train: int) -> list[str]:
    return [f"{PREFIX}/fineweb_val_{i:06d}.bin" for i in range(2)] + [
        f"{PREFIX}/fineweb_train_{i:06d}.bin" for i in range(n_train)
    ]


TOKENIZER = ["tokenizers/fineweb_1024_bpe.model", "tokenizers/fineweb_1024_bpe.vocab"]


def test_download_fetches_val_prefix_of_train_and_tokenizer(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    result = download("sp1024", out, train_shards=2, source=CountingSource(fake_hub))
    assert result.downloaded == _shards(2) + TOKENIZER and result.skipped == []
    for remote in result.downloaded:
        assert (out / remote).read_bytes() == (fake_hub / remote).read_bytes()
    assert not (out / PREFIX / "fineweb_train_000002.bin").exists()
    assert result.paths.dataset_dir == out / PREFIX and result.paths.vocab_size == 1024
    assert result.paths.tokenizer_path == out / "tokenizers/fineweb_1024_bpe.model"
    journal = json.loads((out / "download.json").read_text())["files"]
    assert set(journal) == set(result.downloaded)
    assert all(len(entry["sha256"]) == 64 for entry in journal.values())
    assert not list(out.rglob("*.part"))


def test_rerun_skips_verified_files_without_fetching(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    download("sp1024", out, train_shards=2, source=LocalSource(fake_hub))
    again = CountingSource(fake_hub)
    result = download("sp1024", out, train_shards=3, source=again)
    assert again.fetched == ["manifest.json", f"{PREFIX}/fineweb_train_000002.bin"]
    assert result.downloaded == [f"{PREFIX}/fineweb_train_000002.bin"]
    assert len(result.skipped) == 6


def test_resume_after_partial_download(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(DataError, match="network down"):
        download("sp1024", out, train_shards=4, source=CountingSource(fake_hub, fail_after=4))  # manifest + 3 files
    assert not list(out.rglob("*.part"))
    resumed = CountingSource(fake_hub)
    result = download("sp1024", out, train_shards=4, source=resumed)
    assert result.skipped == _shards(4)[:3]
    assert resumed.fetched == ["manifest.json", *_shards(4)[3:], *TOKENIZER]


def test_corrupted_download_is_detected_and_not_kept(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    bad = f"{PREFIX}/fineweb_train_000001.bin"
    with pytest.raises(
        DataError, match=r"checksum mismatch for .*fineweb_train_000001\.bin.*run the same command again"
    ):
        download("sp1024", out, train_shards=2, source=CountingSource(fake_hub, corrupt=bad))
    assert not (out / bad).exists() and not list(out.rglob("*.part"))
    result = download("sp1024", out, train_shards=2, source=LocalSource(fake_hub))
    assert result.downloaded == [bad, *TOKENIZER]


def test_damaged_shard_without_checksum_is_detected(tmp_path: Path, fake_hub: Path) -> None:
    class NoChecksum(CountingSource):
        def sha256(self, remote_path: str) -> str | None:
            return None

    remote = f"{PREFIX}/fineweb_val_000000.bin"
    (fake_hub / remote).write_bytes((fake_hub / remote).read_bytes()[:-10])  # truncated on the "hub"
    with pytest.raises(DataError, match=r"downloaded .*fineweb_val_000000\.bin is damaged \(shard .* declares"):
        download("sp1024", tmp_path / "data", train_shards=0, source=NoChecksum(fake_hub))


def test_local_corruption_is_refetched(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    download("sp1024", out, train_shards=2, source=LocalSource(fake_hub))
    flipped, cut = out / PREFIX / "fineweb_train_000000.bin", out / PREFIX / "fineweb_val_000001.bin"
    data = bytearray(flipped.read_bytes())
    data[2000] ^= 0x01  # same size, content changed (mtime moves)
    flipped.write_bytes(bytes(data))
    os.utime(flipped, ns=(1, 1))
    cut.write_bytes(cut.read_bytes()[:-2])
    result = download("sp1024", out, train_shards=2, source=LocalSource(fake_hub))
    assert sorted(result.downloaded) == sorted([str(p.relative_to(out)) for p in (flipped, cut)])
    assert flipped.read_bytes() == (fake_hub / PREFIX / "fineweb_train_000000.bin").read_bytes()
    assert read_num_tokens(cut) == 501


def test_files_from_another_downloader_are_adopted(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    for remote in _shards(1):
        (out / remote).parent.mkdir(parents=True, exist_ok=True)
        (out / remote).write_bytes((fake_hub / remote).read_bytes())
    source = CountingSource(fake_hub)
    result = download("sp1024", out, train_shards=1, source=source)
    assert result.skipped == _shards(1) and source.fetched == ["manifest.json", *TOKENIZER]


def test_variant_errors(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(DataError, match=r"variant sp8192 is not in the manifest \(available: byte260, sp1024\).*stale"):
        download("sp8192", out, source=LocalSource(fake_hub))
    with pytest.raises(DataError, match=r"--train-shards 80 is outside 0\.\.4"):
        download("sp1024", out, train_shards=80, source=LocalSource(fake_hub))
    with pytest.raises(DataError, match=r"variant 'bpe-1' is not sp<name> or byte260"):
        download("bpe-1", out, source=LocalSource(fake_hub))
    with pytest.raises(DataError, match=r"no local manifest"):
        download("sp1024", tmp_path / "empty", skip_manifest=True, source=LocalSource(fake_hub))


def test_with_docs_fetches_source_documents(tmp_path: Path, fake_hub: Path) -> None:
    (fake_hub / "docs_selected.jsonl").write_text('{"text": "a"}\n')
    (fake_hub / "docs_selected.source_manifest.json").write_text('{"docs_val": 1}')
    lines: list[str] = []
    result = download(
        "sp1024", tmp_path / "data", train_shards=0, source=LocalSource(fake_hub), with_docs=True, log=lines.append
    )
    assert result.downloaded[-2:] == hub.DOCS_FILES
    assert (tmp_path / "data" / "docs_selected.jsonl").read_text() == '{"text": "a"}\n'
    assert len(lines) == len(result.downloaded) and lines[0].startswith("downloaded")


def test_skip_manifest_uses_local_copy(tmp_path: Path, fake_hub: Path) -> None:
    out = tmp_path / "data"
    download("sp1024", out, train_shards=0, source=LocalSource(fake_hub))
    source = CountingSource(fake_hub)
    download("sp1024", out, train_shards=0, source=source, skip_manifest=True)
    assert source.fetched == []


def test_caseops_byte_sidecars_are_fetched(tmp_path: Path, fake_hub: Path) -> None:
    manifest = json.loads((fake_hub / "manifest.json").read_text())
    manifest["datasets"][0]["val_bytes_glob"] = "fineweb_val_bytes_*.bin"
    (fake_hub / "manifest.json").write_text(json.dumps(manifest))
    for i in range(2):
        write_shard(fake_hub / PREFIX / f"fineweb_val_bytes_{i:06d}.bin", np.full(10, 3))
    result = download("sp1024", tmp_path / "data", train_shards=0, source=LocalSource(fake_hub))
    assert f"{PREFIX}/fineweb_val_bytes_000001.bin" in result.downloaded


def test_hub_source_maps_network_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(**kwargs: object) -> str:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DataError, match=r"could not download datasets/manifest\.json from .*HF_HUB_OFFLINE=1"):
        download("sp1024", tmp_path / "data", source=HubSource())


def test_hub_source_links_cached_file_and_reads_lfs_sha(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    blob = tmp_path / "cache" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(b"payload")
    calls: list[dict[str, object]] = []

    def fake_download(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(blob)

    class FakeApi:
        def get_paths_info(self, repo_id: str, paths: list[str], **kwargs: object) -> list[SimpleNamespace]:
            return [SimpleNamespace(lfs=SimpleNamespace(sha256="ab" * 32))]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    source = HubSource(repo_id="someone/repo")
    source.fetch("tokenizers/x.model", tmp_path / "x.model")
    assert (tmp_path / "x.model").read_bytes() == b"payload"
    assert calls == [
        {"repo_id": "someone/repo", "filename": "datasets/tokenizers/x.model", "repo_type": "dataset", "revision": None}
    ]
    assert source.sha256("tokenizers/x.model") == "ab" * 32
    assert hub.DEFAULT_REPO_ID == "willdepueoai/parameter-golf"


def test_cli_download_from_a_local_mirror(fake_hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pgolf.cli import main

    out = tmp_path / "data"
    argv = ["data", "download", "--from-dir", str(fake_hub), "--out", str(out), "--train-shards", "2"]
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "datasets" / "fineweb10B_sp1024").glob("fineweb_train_*.bin")) == [
        "fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("downloaded 0 files")  # resumed: all verified
    assert main([*argv[:-1], "9"]) == 2  # more train shards than the manifest lists
