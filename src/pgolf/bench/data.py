"""`pgolf bench data`: is the data pipeline ever the bottleneck?

In one process, on the embedded FineWeb sample: SentencePiece training time, encode MB/s (one thread
and `threads`), shard write MB/s, and tokens/s of every training loader mode at the baseline's batch
shape, each compared with the fastest training tokens/s measured on this machine (the loaders must
be at least 10× faster, so that data never limits training).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pgolf.data.build import EMBEDDED_TOKENIZERS, embedded_corpus_files, embedded_dataset
from pgolf.data.corpus import Corpus
from pgolf.data.families import load_tokenizer
from pgolf.data.loader import LOADER_MODES, make_train_loader
from pgolf.data.shards import list_shards, write_shard
from pgolf.data.tokenizer import train_sentencepiece
from pgolf.utils import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
REQUIRED_LOADER_MARGIN = 10.0
TOKENIZER_TRAIN_BYTES = 4_000_000
SHARD_WRITE_TOKENS = 20_000_000
LOADER_BATCH = (524_288, 1024, 8)  # the baseline's global tokens, seq_len, grad accumulation on one process
LOADER_SECONDS = 2.0
SP_MAX_SENTENCE_BYTES = 4192  # SentencePiece's default max_sentence_length: longer documents are skipped


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def fastest_training_tokens_per_s(results_dir: Path = RESULTS_DIR) -> float | None:
    """The largest `tokens_per_s` among the committed `pgolf bench train` results."""
    best = None
    for path in sorted(results_dir.glob("train_*.json")):
        value = json.loads(path.read_text(encoding="utf-8")).get("tokens_per_s")
        if isinstance(value, (int, float)):
            best = max(best or 0.0, float(value))
    return best


def _loader_tokens_per_s(mode: str, files: list[Path]) -> float:
    global_tokens, seq_len, accum = LOADER_BATCH
    loader = make_train_loader(mode, files, 0, 1, "cpu")
    loader.next_batch(global_tokens, seq_len, accum)  # opens the first shards
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < LOADER_SECONDS:
        loader.next_batch(global_tokens, seq_len, accum)
        calls += 1
    return calls * global_tokens / accum / (time.perf_counter() - start)


def bench_data(vocab_size: int = 1024, threads: int = 1, train_tokens_per_s: float | None = None,
               out: Path | None = None) -> dict[str, Any]:
    train_files, _ = embedded_corpus_files()
    docs = list(Corpus.of(train_files, max_bytes=TOKENIZER_TRAIN_BYTES))
    sizes = [len(d.encode("utf-8")) for d in docs]
    text_mb = sum(sizes) / 1e6
    trained_mb = sum(n for n in sizes if n <= SP_MAX_SENTENCE_BYTES) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        _, train_s = _timed(lambda: train_sentencepiece(docs, vocab_size, Path(tmp) / "bench.model"))
        tok = load_tokenizer(EMBEDDED_TOKENIZERS["sp1024"])
        encoded, encode_1_s = _timed(lambda: tok.encode_batch(docs, 1))
        _, encode_n_s = _timed(lambda: tok.encode_batch(docs, threads))
        tokens = np.random.default_rng(0).integers(0, 1024, SHARD_WRITE_TOKENS, dtype=np.uint16)
        _, write_s = _timed(lambda: write_shard(Path(tmp) / "fineweb_train_000000.bin", tokens))
    files = list_shards(embedded_dataset("sp1024").dataset_dir, "train")
    loaders = {mode: _loader_tokens_per_s(mode, files) for mode in LOADER_MODES}
    train_tps = train_tokens_per_s or fastest_training_tokens_per_s()
    ratios = {mode: tps / train_tps for mode, tps in loaders.items()} if train_tps else {}
    result: dict[str, Any] = {
        "benchmark": "data", "machine": platform.machine(), "threads": threads,
        "tokenizer_train_mb": text_mb, "tokenizer_trained_on_mb": trained_mb, "tokenizer_vocab_size": vocab_size,
        "tokenizer_train_s": train_s,
        "encode_tokens": sum(len(ids) for ids in encoded),
        "encode_mb_per_s_1_thread": text_mb / encode_1_s, "encode_mb_per_s": text_mb / encode_n_s,
        "shard_write_mb_per_s": 2 * SHARD_WRITE_TOKENS / 1e6 / write_s,
        "loader_batch": {"global_tokens": LOADER_BATCH[0], "seq_len": LOADER_BATCH[1], "grad_accum": LOADER_BATCH[2]},
        "loader_tokens_per_s": loaders, "training_tokens_per_s": train_tps, "loader_vs_training": ratios,
        "loaders_fast_enough": bool(ratios) and min(ratios.values()) >= REQUIRED_LOADER_MARGIN,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    lines = [
        f"tokenizer training: {train_s:.2f} s for a {vocab_size}-piece BPE on {text_mb:.1f} MB offered "
        f"({trained_mb:.1f} MB in documents ≤ {SP_MAX_SENTENCE_BYTES} bytes, the only ones SentencePiece uses)",
        f"encode (sp1024): {result['encode_mb_per_s_1_thread']:.2f} MB/s on 1 thread, "
        f"{result['encode_mb_per_s']:.2f} MB/s on {threads}",
        f"shard write: {result['shard_write_mb_per_s']:.0f} MB/s",
    ]
    for mode, tps in loaders.items():
        ratio = f" = {ratios[mode]:,.0f}× training ({train_tps:,.0f} tokens/s)" if ratios else ""
        lines.append(f"loader {mode}: {tps:,.0f} tokens/s{ratio}")
    result["report"] = "\n".join(lines)
    if out is not None:
        atomic_write_json(out, {k: v for k, v in result.items() if k != "report"})
    return result
