"""Batched LoRA adapters for per-document TTT (TECHNIQUES §4.25.3), attached to any GPT by hooks.

Each adapter holds one (A, B) pair per document slot: `Δy = (α/r) · B_j A_j x` for the document in
slot j, A ~ U(−1/√in, 1/√in), B = 0, so a fresh adapter changes nothing. Sites (eval.ttt_lora_targets):

    q, k, v  the attention input projections (c_q, c_k, c_v) of every block
    o        a d→d adapter parallel to each attention module (input = the attention input)
    mlp      a d→d adapter parallel to each MLP
    head     a d→V adapter added to the logits (after the model's softcap: the logits function is
             the model's own, so the adapter cannot reach inside it)

Forward hooks add the adapter outputs, so the model code is unchanged and any GPT whose modules are
named like the baseline's (`….attn.c_q`, `….attn`, `….mlp`) can be adapted.

Adapters belong to virtual layers, as in the SOTA (#1855: 17 adapter slots for 11 blocks, three of them run
three times): a block that depth recurrence runs k times gets k adapters per site, and its n-th run in a
forward pass uses the n-th. The split follows `GPT.layer_order` when the set is built.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pgolf.config import LORA_TARGETS
from pgolf.errors import ConfigError
from pgolf.model.gpt import GPT

# module-name suffix of each hooked site (the head is applied by LoRASet.logits)
_SITE_SUFFIX = {"q": ".attn.c_q", "k": ".attn.c_k", "v": ".attn.c_v", "o": ".attn", "mlp": ".mlp"}
assert set(_SITE_SUFFIX) | {"head"} == set(LORA_TARGETS)


class BatchedLoRA(nn.Module):
    def __init__(self, slots: int, in_features: int, out_features: int, rank: int, alpha: float,
                 device: torch.device, generator: torch.Generator) -> None:
        super().__init__()
        self.scale = alpha / rank
        self.generator = generator
        self.A = nn.Parameter(torch.empty(slots, rank, in_features, device=device))
        self.B = nn.Parameter(torch.zeros(slots, out_features, rank, device=device))
        self.reset(keep_a=False)

    def reset(self, keep_a: bool) -> None:
        """B ← 0; A ← fresh draws from the adapter set's own generator unless `keep_a`."""
        with torch.no_grad():
            if not keep_a:
                bound = 1.0 / math.sqrt(self.A.size(-1))
                fresh = torch.rand(self.A.shape, generator=self.generator) * (2 * bound) - bound
                self.A.copy_(fresh)
            self.B.zero_()

    def forward(self, x: Tensor, rows: Tensor) -> Tensor:
        """x: (b, T, in) for the documents in slots `rows` (b of them)."""
        a, b = self.A[rows], self.B[rows]
        return self.scale * torch.bmm(torch.bmm(x.float(), a.transpose(1, 2)), b.transpose(1, 2))


class LoRASet(nn.Module):
    """All adapters of one model; `rows` selects the document slots of the current forward pass."""

    def __init__(self, model: GPT, targets: list[str], slots: int, rank: int, alpha: float, seed: int) -> None:
        super().__init__()
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(seed)  # the same adapters on every run and rank
        self.rows: Tensor | None = None  # None: adapters off (the model runs as it is)
        self.adapters = nn.ModuleDict()
        self._hooks = []
        self._calls: list[list[int]] = []  # per hooked module: its runs so far (the n-th run uses adapter n mod k)
        runs = Counter(model.layer_order)  # physical block → runs per forward pass
        for target in targets:
            if target == "head":
                continue
            matches = [(name, module) for name, module in model.named_modules() if name.endswith(_SITE_SUFFIX[target])]
            if not matches:
                raise ConfigError(f"eval.ttt_lora_targets: this model has no '{_SITE_SUFFIX[target]}' modules "
                                  f"for the '{target}' adapter: drop it from the list")
            for name, module in matches:
                in_f, out_f = _site_shape(module, target, model.cfg.model_dim)
                block = _block_index(name)
                site = [BatchedLoRA(slots, in_f, out_f, rank, alpha, device, generator)
                        for _ in range(1 if block is None else runs.get(block, 1))]
                for run, adapter in enumerate(site):
                    self.adapters[name.replace(".", "_") + (f"_run{run}" if run else "")] = adapter
                self._hooks.append(module.register_forward_hook(self._hook(site)))
        d, vocab = model.cfg.model_dim, model.cfg.vocab_size
        self.head = BatchedLoRA(slots, d, vocab, rank, alpha, device, generator) if "head" in targets else None

    def _hook(self, site: list[BatchedLoRA]) -> Callable[[nn.Module, tuple, Tensor], Tensor]:
        calls = [0]
        self._calls.append(calls)

        def add_adapter(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
            if self.rows is None:
                return output
            adapter = site[calls[0] % len(site)]
            calls[0] += 1
            return output + adapter(args[0], self.rows).to(output.dtype)

        return add_adapter

    def logits(self, model: GPT, hidden: Tensor) -> Tensor:
        logits = model.logits(hidden)
        if self.head is None or self.rows is None:
            return logits
        return logits.float() + self.head(hidden, self.rows)

    def reset(self, keep_a: bool) -> None:
        for calls in self._calls:
            calls[0] = 0
        for module in self.modules():
            if isinstance(module, BatchedLoRA):
                module.reset(keep_a)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def _block_index(name: str) -> int | None:
    """Physical block of a module named `blocks.<i>.…`; None for modules outside the blocks."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else None


def _site_shape(module: nn.Module, target: str, model_dim: int) -> tuple[int, int]:
    if target in ("o", "mlp"):
        return model_dim, model_dim
    if not isinstance(module, nn.Linear):
        raise ConfigError(f"eval.ttt_lora_targets: the '{target}' site is a {type(module).__name__}, not a linear "
                          "layer: drop it from the list")
    return module.in_features, module.out_features
