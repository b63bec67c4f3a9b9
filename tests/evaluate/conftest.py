"""Fixtures for the evaluation tests: a small model whose attention really mixes positions, real
val tokens of the small dataset (with BOS-delimited documents), and its byte table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from pgolf.config import Config, load_config
from pgolf.data.shards import load_val_tokens
from pgolf.data.tokenizer import ByteLUT, build_byte_lut, load_sentencepiece
from pgolf.evaluate.context import ScoringContext
from pgolf.model.gpt import GPT
from pgolf.train.distributed import DistContext
from testkit import SHIPPED_SP1024, mixing_model

# A 2-layer, 32-wide model; short windows and chunks so every mode has several windows, chunks,
# documents and phases inside a few hundred tokens.
EVAL_TEST_OVERRIDES = [
    "model.num_layers=2", "model.model_dim=32", "model.num_heads=2", "model.num_kv_heads=1",
    "train.train_seq_len=32", "train.train_batch_tokens=256", "train.grad_accum_steps=1", "train.dtype=fp32",
    "train.device=cpu", "eval.val_batch_size=256", "eval.stride=8", "eval.batch_seqs=4", "eval.ttt_chunk_tokens=64",
    "eval.ttt_epochs=1", "eval.ttt_batch_seqs=2", "eval.ttt_lr=0.05", "eval.ttt_lora_chunk=8", "eval.ttt_lora_docs=2",
    "eval.ttt_lora_rank=4", "eval.ttt_lora_lr=0.003", "eval.ttt_phases=2", "eval.ttt_phase_docs=4",
    "eval.ttt_phase_lr=0.05", "eval.slot_steps=3",
]


DOC_STARTS = (0, 37, 70, 101, 150, 181, 220, 251, 270)


@dataclass
class EvalFixture:
    cfg: Config
    model: GPT
    lut: ByteLUT
    tokens: torch.Tensor  # 289 val tokens → 288 targets, in 9 documents

    def scoring(self, tokens: torch.Tensor | None = None, batch_seqs: int = 4, keep_losses: bool = True,
                **kwargs) -> ScoringContext:
        ctx = DistContext(0, 1, 0, torch.device("cpu"), None)
        return ScoringContext(self.tokens if tokens is None else tokens, self.lut, ctx, None, batch_seqs,
                              keep_losses, **kwargs)


@pytest.fixture(scope="session")
def eval_fixture(small_dataset) -> EvalFixture:
    cfg = load_config(None, overrides=[f"data.dataset={small_dataset.dataset_dir}",
                                       f"data.tokenizer={small_dataset.tokenizer_path}", *EVAL_TEST_OVERRIDES], env={})
    lut = build_byte_lut(load_sentencepiece(SHIPPED_SP1024), cfg.model.vocab_size)
    tokens = load_val_tokens(small_dataset.dataset_dir, cfg.train.train_seq_len)[:289].clone()
    tokens[list(DOC_STARTS)] = 1  # real text cut into short BOS-delimited documents of uneven lengths
    return EvalFixture(cfg, mixing_model(cfg), lut, tokens)


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is many times faster than two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
