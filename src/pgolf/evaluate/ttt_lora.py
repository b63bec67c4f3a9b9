"""Per-document LoRA TTT (TECHNIQUES §4.25.3) and phased TTT on top of it (§4.25.4).

Documents run from a BOS to the next BOS inclusive (the next document's BOS is the last target),
so the documents partition the stream's targets. Each document's predictions are cut into chunks
of `chunk` targets; chunk i is scored with a window of up to `context` inputs *of the same document*
ending at the chunk end, with the document's current adapters — then, if the document has a later
chunk, one AdamW step (β₁ = 0) on the mean loss of the chunk just scored. Documents are adapted
`docs_per_batch` at a time, each with its own adapters (slot); B and the optimizer state are reset
per batch, A is kept when `warm_a` (it only ever saw already-scored documents).

Documents are processed in stream order (the records sort by length, longest first; that lets a
later document influence an earlier one's score, which the perturbation test rejects). Under
torchrun, round r gives batch r·W + k to rank k.

Phased TTT: when the number of scored documents reaches a phase boundary (P·(k+1)//K for k < K),
the base weights take one SGD pass (cosine lr over `chunk_tokens` chunks) over the tokens of the
first `boundary` documents — released by the ledger, so already scored — and fresh adapters start.
Attention is not restricted to document boundaries in that pass (the model has no varlen path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pgolf.evaluate.context import ScoringContext
from pgolf.evaluate.ledger import LedgerResult, ScoreLedger, token_nll
from pgolf.evaluate.lora import LoRASet
from pgolf.evaluate.ttt import SGDSettings, cosine_lr, sgd_on_tokens, trainable_copy
from pgolf.evaluate.windows import Window, batched, gather_batch
from pgolf.model.gpt import GPT


@dataclass(frozen=True)
class LoRATTTSettings:
    context: int
    chunk: int
    docs_per_batch: int
    targets: tuple[str, ...]
    rank: int
    alpha: float
    lr: float
    beta2: float
    weight_decay: float
    warm_a: bool
    bos_id: int
    freeze_blocks: int
    phases: int  # 0 = plain LoRA TTT
    phase_docs: int
    phase_lr: float
    phase_chunk_tokens: int
    phase_sgd: SGDSettings
    seed: int


def document_spans(tokens: Tensor, n_targets: int, bos_id: int) -> list[tuple[int, int]]:
    """Pair ranges [start, end) of the documents: each starts at a BOS (or at 0) and ends at the next BOS."""
    starts = (tokens[:n_targets] == bos_id).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return list(zip(starts, starts[1:] + [n_targets], strict=True))


def chunk_window(span: tuple[int, int], index: int, chunk: int, context: int) -> Window:
    """Window scoring chunk `index` of a document with up to `context` inputs of that document.

    The window starts where a full chunk's window would (`chunk_start + chunk − context`), also for
    a document's short last chunk (the records start it `context` before the *actual* end): where
    the document ends is future information, so it must not move the context of earlier targets.
    """
    start, end = span
    chunk_start = start + index * chunk
    chunk_end = min(chunk_start + chunk, end)
    window_start = max(start, chunk_start + chunk - context)
    return Window(window_start, chunk_end - window_start, chunk_start - window_start)


def phase_boundaries(settings: LoRATTTSettings) -> list[int]:
    """Document counts after which a global phase runs: P·(k+1)//K, from the configured P alone (a
    boundary derived from the stream's document count would leak how many documents are still to come)."""
    if settings.phases == 0:
        return []
    return sorted({settings.phase_docs * (k + 1) // settings.phases for k in range(settings.phases)} - {0})


class _DocumentAdapter:
    """Scores a batch of documents chunk by chunk, stepping each document's adapters after each chunk."""

    def __init__(self, model: GPT, settings: LoRATTTSettings, scoring: ScoringContext, ledger: ScoreLedger) -> None:
        self.model, self.settings, self.scoring, self.ledger = model, settings, scoring, ledger
        self.lora = LoRASet(model, list(settings.targets), settings.docs_per_batch, settings.rank, settings.alpha,
                            settings.seed)
        self.optimizer = self._new_optimizer()

    def _new_optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        return torch.optim.AdamW(self.lora.parameters(), lr=s.lr, betas=(0.0, s.beta2), eps=1e-10,
                                 weight_decay=s.weight_decay)

    def restart(self, keep_a: bool) -> None:
        self.lora.reset(keep_a)
        self.optimizer = self._new_optimizer()

    def run(self, docs: list[tuple[int, int]]) -> None:
        s = self.settings
        chunks = [math.ceil((end - start) / s.chunk) for start, end in docs]
        for index in range(max(chunks)):
            active = [j for j, count in enumerate(chunks) if count > index]
            windows = [chunk_window(docs[j], index, s.chunk, s.context) for j in active]
            batch = gather_batch(self.scoring.tokens, windows, self.scoring.device)
            self.lora.rows = torch.tensor(active, device=self.scoring.device)
            with self.scoring.autocast():
                logits = self.lora.logits(self.model, self.model.hidden(batch.x))
            nll = token_nll(logits, batch.y)
            self.ledger.record(batch, nll, logits)  # the scores are fixed before the step below
            learning = torch.tensor([chunks[j] > index + 1 for j in active], device=nll.device)
            if bool(learning.any()):
                weights = batch.scored.float() * learning[:, None]
                loss = ((nll * weights).sum(1) / batch.scored.sum(1).clamp_min(1)).sum()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        self.lora.rows = None


def _set_trainable(params: list[nn.Parameter], flag: bool) -> None:
    for param in params:
        param.requires_grad_(flag)


def _global_phase(model: GPT, params: list[nn.Parameter], end: int, settings: LoRATTTSettings,
                  scoring: ScoringContext, ledger: ScoreLedger) -> None:
    """One SGD pass of the base weights over the (already scored) pairs [0, end)."""
    _set_trainable(params, True)
    optimizer = torch.optim.SGD(params, lr=settings.phase_lr, momentum=settings.phase_sgd.momentum)
    n_chunks = math.ceil(end / settings.phase_chunk_tokens)
    for index in range(n_chunks):
        begin = index * settings.phase_chunk_tokens
        segment = ledger.released(scoring.tokens, begin, min(begin + settings.phase_chunk_tokens, end))
        sgd_on_tokens(model, optimizer, params, segment, cosine_lr(settings.phase_lr, index, n_chunks),
                      settings.phase_sgd, scoring)
    _set_trainable(params, False)


def evaluate_ttt_lora(model: GPT, scoring: ScoringContext, settings: LoRATTTSettings) -> LedgerResult:
    """Per-document LoRA TTT, with global SGD phases if `settings.phases > 0`."""
    ctx = scoring.dist_ctx
    adapted, params = trainable_copy(model, settings.freeze_blocks)
    adapted.eval()
    _set_trainable(params, False)
    ledger, deadline = scoring.new_ledger(), scoring.new_deadline()
    docs = document_spans(scoring.tokens, scoring.n_targets, settings.bos_id)
    doc_batches = list(batched(docs, settings.docs_per_batch))
    boundaries = phase_boundaries(settings)
    adapter = _DocumentAdapter(adapted, settings, scoring, ledger)
    for round_index in range(math.ceil(len(doc_batches) / ctx.world_size)):
        if round_index > 0 and deadline.expired(agree=True):
            break
        mine = round_index * ctx.world_size + ctx.rank
        if mine < len(doc_batches):
            adapter.restart(keep_a=settings.warm_a)
            with torch.enable_grad():
                adapter.run(list(doc_batches[mine]))
        done = min((round_index + 1) * ctx.world_size * settings.docs_per_batch, len(docs))
        while boundaries and done >= boundaries[0] and boundaries[0] <= len(docs):
            with torch.enable_grad():
                _global_phase(adapted, params, docs[boundaries.pop(0) - 1][1], settings, scoring, ledger)
            adapter.restart(keep_a=False)
    adapter.lora.remove()
    return ledger.finish()
