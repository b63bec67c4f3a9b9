"""The dataset a config names: its folder, tokenizer, training shards and validation tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from pgolf.config import Config
from pgolf.data.families import Tokenizer, load_tokenizer
from pgolf.data.manifest import DatasetPaths, has_val_sidecar
from pgolf.data.shards import list_shards, load_val_tokens
from pgolf.data.tokenizer import ByteCounter, check_vocab_size
from pgolf.errors import ConfigError, DataError, UserError

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class EvalData:
    tokens: Tensor
    lut: ByteCounter  # the tokenizer's LUT, or the dataset's val byte sidecar
    tokenizer_path: Path


def resolve_dataset(cfg: Config) -> DatasetPaths:
    """Dataset folder and tokenizer named by the config (`embedded:<variant>` builds the shipped corpus)."""
    dataset, tokenizer = cfg.data.dataset, cfg.data.tokenizer
    if dataset.startswith(EMBEDDED_PREFIX):
        from pgolf.data.build import embedded_dataset  # dataset building ships only with runs that build

        paths = embedded_dataset(dataset[len(EMBEDDED_PREFIX):])
        dataset_dir, default_tokenizer = paths.dataset_dir, paths.tokenizer_path
    else:
        dataset_dir, default_tokenizer = Path(dataset), None
    if not dataset_dir.is_dir():
        raise UserError(f"dataset folder {dataset_dir} does not exist (data.dataset / DATA_PATH): "
                        "build one with `pgolf data build` or fetch one with `pgolf data download`")
    if tokenizer in ("", "auto") or (tokenizer.startswith(EMBEDDED_PREFIX) and default_tokenizer is not None):
        if default_tokenizer is None:
            raise ConfigError("data.tokenizer: set the tokenizer .model of this dataset (TOKENIZER_PATH)")
        tokenizer_path = default_tokenizer
    else:
        tokenizer_path = Path(tokenizer)
    tok = load_tokenizer(tokenizer_path)
    check_vocab_size(tok.vocab_size, cfg.model.vocab_size, name="model.vocab_size")
    return DatasetPaths(dataset_dir, tokenizer_path, tok.vocab_size)


def train_files(cfg: Config, paths: DatasetPaths) -> list[Path]:
    """The training shards, the first `data.train_shards` of them when that is set."""
    files = list_shards(paths.dataset_dir, "train")
    return files[: cfg.data.train_shards] if cfg.data.train_shards > 0 else files


def may_have_val_sidecar(cfg: Config) -> bool:
    """Whether a run of `cfg` can read a val byte sidecar: its dataset has one, or is not readable here."""
    dataset = Path(cfg.data.dataset)
    return not dataset.is_dir() or has_val_sidecar(dataset)


def load_eval_data(cfg: Config, paths: DatasetPaths, seq_len: int) -> EvalData:
    tokens = load_val_tokens(paths.dataset_dir, seq_len, cfg.eval.val_max_tokens)
    counter = eval_byte_counter(paths.dataset_dir, load_tokenizer(paths.tokenizer_path), cfg.model.vocab_size,
                                tokens.numel())
    return EvalData(tokens, counter, paths.tokenizer_path)


def eval_byte_counter(dataset_dir: Path, tok: Tokenizer, vocab_size: int, num_tokens: int) -> ByteCounter:
    """The sidecar when the dataset has (or promises) one, else the tokenizer's LUT."""
    if has_val_sidecar(dataset_dir):
        from pgolf.data.sidecar import load_val_sidecar
        return load_val_sidecar(dataset_dir, num_tokens)
    if tok.needs_sidecar:
        raise DataError(
            f"tokenizer {tok.name} needs a val byte sidecar but {dataset_dir} has none: rebuild the dataset "
            "with `pgolf data build --caseops` (or retokenize it with this tokenizer)"
        )
    return tok.byte_lut(vocab_size)

