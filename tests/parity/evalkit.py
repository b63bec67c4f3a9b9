"""Eval-stage parity helpers: a record's own evaluation function (sliding window, score-first TTT, SLOT) run on
CPU beside pgolf's stage on the same weights and val tokens, compared per scored token.

The records' eval functions return only (val_loss, val_bpb). `record_eval` runs one with three module globals of
the record swapped for the call: `torch` (bf16 → fp32, autocast and torch.compile off, as the CPU shims of
`pgolf.interop.records`; inference_mode → no_grad, since in fp32 a rotary table cached while scoring would reach
TTT's backward unconverted), `F` (cross_entropy also hands its per-token losses to a spy) and `log` (silenced). The
positions of the spied losses come from the record's window rule (`Scored`, built per record by the tests from
the record's code), so a record that scores a target twice or not at all is visible as such.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from recordkit import assert_close, build_record, cheap_init, fp32, import_format_record, perturbed, pgolf_model
from torch import Tensor

from pgolf.config import Config
from pgolf.data.tokenizer import ByteLUT
from pgolf.evaluate.bpb import bits_per_byte
from pgolf.evaluate.ledger import LedgerResult
from pgolf.evaluate.modes import Mode, run_stages
from pgolf.model.gpt import GPT
from pgolf.train.distributed import DistContext

BPB_TOLERANCE = 1e-6  # relative, on val_bpb: the byte accounting is exact, the losses agree to ~1e-7


class _Proxy(types.ModuleType):
    """A module whose attributes are those of `module`, except `overrides`."""

    def __init__(self, module: types.ModuleType, overrides: dict[str, Any]) -> None:
        super().__init__(module.__name__)
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@dataclass
class NllSpy:
    """Per-token losses of every non-mean cross_entropy call, in call order, with the reduction asked."""

    calls: list[tuple[str, Tensor]] = field(default_factory=list)

    def cross_entropy(self, logits: Tensor, targets: Tensor, *args: Any, reduction: str = "mean",
                      **kwargs: Any) -> Tensor:
        if reduction != "mean":  # training and SLOT-fitting losses are means; scores are sums or per token
            nll = F.cross_entropy(logits, targets, *args, reduction="none", **kwargs)
            self.calls.append((reduction, nll.detach().double().cpu()))
        return F.cross_entropy(logits, targets, *args, reduction=reduction, **kwargs)


@contextlib.contextmanager
def record_eval(rec: types.ModuleType) -> Iterator[NllSpy]:
    """Run the record's eval functions on CPU in fp32, spying on the per-token losses they score."""
    spy = NllSpy()
    fp32_torch = _Proxy(torch, {"bfloat16": torch.float32, "compile": lambda fn=None, **_: fn,
                                "autocast": lambda *_, **__: contextlib.nullcontext(), "inference_mode": torch.no_grad})
    swaps: dict[str, Any] = {"torch": fp32_torch, "F": _Proxy(F, {"cross_entropy": spy.cross_entropy})}
    if hasattr(rec, "log"):
        swaps["log"] = lambda *_, **__: None
    saved = {name: getattr(rec, name) for name in swaps}
    for name, value in swaps.items():
        setattr(rec, name, value)
    try:
        yield spy
    finally:
        for name, value in saved.items():
            setattr(rec, name, value)


@dataclass(frozen=True)
class Scored:
    """One record window starting at pair `ws` of `length` inputs that scores its columns [begin, end)."""

    ws: int
    length: int
    begin: int
    end: int


def record_scores(spy: NllSpy, windows: Sequence[Scored]) -> tuple[np.ndarray, np.ndarray]:
    """(pair positions, nll) of everything the record scored, in its order (repeats kept).

    A 'sum' call scored one window's slice; a 'none' call holds whole (rows, length) batches of windows, sliced
    by the record afterwards."""
    positions, losses, queue = [], [], list(windows)
    for reduction, nll in spy.calls:
        rows = [queue.pop(0)] if reduction == "sum" else [queue.pop(0) for _ in range(nll.numel() // queue[0].length)]
        table = nll.view(len(rows), -1)
        for row, w in zip(table, rows, strict=True):
            positions.append(np.arange(w.ws + w.begin, w.ws + w.end))
            losses.append((row if reduction == "sum" else row[w.begin : w.end]).numpy())
    assert not queue, f"{len(queue)} record windows were never scored"
    return np.concatenate(positions), np.concatenate(losses)


def bpb_of(positions: np.ndarray, nll: np.ndarray, tokens: Tensor, lut: ByteLUT) -> float:
    """val_bpb of the given scores by pgolf's accounting (repeated positions count each time)."""
    index = torch.from_numpy(positions)
    num_bytes = lut.token_bytes(tokens[index], tokens[index + 1]).double().sum().item()
    return bits_per_byte(float(nll.sum()), float(nll.size), num_bytes)[1]


def synthetic_lut(vocab_size: int, seed: int = 0) -> tuple[ByteLUT, tuple[Tensor, Tensor, Tensor]]:
    """A byte table with every case (multi-byte pieces, leading spaces, boundary ids), for pgolf and in the
    records' (base_bytes, has_leading_space, is_boundary_token) form."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 6, (vocab_size,), generator=gen, dtype=torch.int16)
    lead = torch.rand(vocab_size, generator=gen) < 0.4
    boundary = torch.zeros(vocab_size, dtype=torch.bool)
    boundary[:3] = True
    base[:3] = 0
    lead[:3] = False
    return ByteLUT(base, lead, boundary), (base, lead, boundary)


def val_tokens(vocab_size: int, n_targets: int, seed: int = 0) -> Tensor:
    """A val prefix of `n_targets` + 1 random tokens with BOS (id 1) at uneven document starts."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, vocab_size, (n_targets + 1,), generator=gen)
    tokens[torch.randint(0, n_targets, (max(1, n_targets // 300),), generator=gen)] = 1
    tokens[0] = 1
    return tokens


def pgolf_stage(model: GPT, cfg: Config, mode: Mode, tokens: Tensor, lut: ByteLUT) -> LedgerResult:
    """pgolf's eval stage `mode` on CPU in fp32, keeping every per-token loss."""
    ctx = DistContext(0, 1, 0, torch.device("cpu"), None)
    return run_stages(model, [mode], cfg, tokens, lut, ctx, None, keep_losses=True)[0][1]


def run_record(rec: types.ModuleType, call: Callable[[], tuple[float, float]]) -> tuple[float, NllSpy]:
    """The record's val_bpb from `call` (one of its eval functions), and what it scored."""
    with record_eval(rec) as spy:
        _, val_bpb = call()
    return val_bpb, spy


def first_scores(positions: np.ndarray, nll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct positions and each one's first score."""
    first, index = np.unique(positions, return_index=True)
    return first, nll[index]


def assert_stage_parity(record_bpb: float, spy: NllSpy, windows: Sequence[Scored], ours: LedgerResult,
                        tokens: Tensor, lut: ByteLUT) -> tuple[np.ndarray, np.ndarray]:
    """Per-token losses equal at every position the record scored (its first score of a repeated one), and its
    val_bpb equal to pgolf's accounting of what it scored. Returns the record's (positions, nll), in its order."""
    positions, nll = record_scores(spy, windows)
    assert ours.losses is not None and ours.coverage is not None and ours.coverage.complete
    first, first_nll = first_scores(positions, nll)
    assert_close(torch.from_numpy(ours.losses[first]), torch.from_numpy(first_nll), "per-token nll")
    mine = bpb_of(positions, nll, tokens, lut)
    assert abs(mine - record_bpb) <= BPB_TOLERANCE * record_bpb, f"val_bpb: record {record_bpb} vs {mine}"
    return positions, nll


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """Run with `count` intra-op threads (0 = as set)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(count or saved)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@dataclass(frozen=True)
class Shape:
    """A model shape of a record (its env vars, and the matching pgolf overrides) and the val prefix scored."""

    env: dict[str, str]
    overrides: list[str]
    n_targets: int  # a multiple of the stride past one window: the records' truncated val split has no short window
    batch_seqs: int = 32  # windows per scoring batch (the records' keyword argument or TTT_BATCH_SEQS)
    threads: int = 0  # intra-op threads (0 = leave): one is fastest for a small model on a shared machine


@dataclass
class Setup:
    """A record imported at `shape`, its model and pgolf's on the same weights, a val prefix and byte table."""

    rec: types.ModuleType
    cfg: Config
    record: torch.nn.Module
    ours: GPT
    state: dict[str, Tensor]  # the record's weights, to reload after an adapting eval
    tokens: Tensor
    lut: ByteLUT
    record_luts: tuple[Tensor, Tensor, Tensor]
    shape: Shape

    def reset(self) -> None:
        self.record.load_state_dict(self.state, strict=True)


def make_setup(preset: str, shape: Shape, seed: int) -> Iterator[Setup]:
    """A module fixture's body: the setup (the record imported under its run's environment updated by the
    shape's), with the shape's thread count held while it is in use."""
    from pgolf.config import load_config
    from pgolf.interop import to_pgolf

    rec = import_format_record(preset, shape.env)
    cfg = load_config(preset, env={}, overrides=shape.overrides)
    with threads(shape.threads):
        torch.manual_seed(seed)
        with cheap_init():
            record = fp32(build_record(preset, rec))
        state = perturbed(record, seed)
        record.load_state_dict(state, strict=True)
        ours = pgolf_model(cfg, to_pgolf(state, preset, cfg.model))
        lut, record_luts = synthetic_lut(cfg.model.vocab_size, seed)
        yield Setup(rec, cfg, record, ours, state, val_tokens(cfg.model.vocab_size, shape.n_targets, seed), lut,
                    record_luts, shape)


def fixed_rule_windows(n_targets: int, seq_len: int, stride: int) -> list[Scored]:
    """Windows of the records that keep start `ws` iff ws + seq_len − stride < n (TECHNIQUES §2.7 P5, fixed),
    the first scoring all its columns and every later one its last `stride` (fewer at the end)."""
    context = seq_len - stride
    return [Scored(ws, seq_len, 0 if ws == 0 else context, min(ws + seq_len, n_targets) - ws)
            for ws in range(0, n_targets, stride) if ws + context < n_targets]
