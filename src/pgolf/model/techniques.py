"""The catalog of model techniques: each one is a set of `model.*` config values.

The tests build every entry on a tiny model (forward/backward, causality, document isolation), and
`pgolf bench ablate-cpu` trains each one alone and all of them together. A new technique added
here gets both for free. Settings are functions of the base model config so that sizes (layer
ranges, windows, head-dim fractions) fit whatever model they are applied to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgolf.config import ModelConfig

Settings = Callable[[ModelConfig], dict[str, Any]]


@dataclass(frozen=True)
class Technique:
    name: str
    summary: str
    source: str  # where the records introduced it (TECHNIQUES.md section / PR)
    settings: Settings
    in_combination: bool = True  # False for alternatives of another entry (one of them goes into ALL)

    def overrides(self, base: ModelConfig) -> dict[str, Any]:
        """`model.key` → value, ready for `--set`."""
        return {f"model.{key}": value for key, value in self.settings(base).items()}


def _head_dim(m: ModelConfig) -> int:
    return m.model_dim // m.num_heads


def _window(m: ModelConfig) -> int:
    return min(12, m.model_dim)


def _parallel_start(m: ModelConfig) -> int:
    """The last three layers as in the SOTA (8 of 11), never before the decoder half."""
    return max(m.num_layers // 2, m.num_layers - 3)


def _recurrence(m: ModelConfig) -> dict[str, Any]:
    """Loop the last encoder layer once more: before any parallel layer, as the SOTA's 3–5 before 8."""
    middle = max(0, m.num_layers // 2 - 1)
    return {"recur_start": middle, "recur_end": middle, "recur_loops": 1}


def _hash_dim(m: ModelConfig) -> int:
    return max(8, m.model_dim // 4)


TECHNIQUES: tuple[Technique, ...] = (
    Technique("leaky_relu2", "MLP activation LeakyReLU(0.5)²", "§4.14, PR #493",
              lambda m: {"activation": "leaky_relu2", "leaky_slope": 0.5}),
    Technique("partial_rope", "RoPE on the first quarter of each head", "§4.17.3, PR #315",
              lambda m: {"rope_dims": max(2, _head_dim(m) // 4 // 2 * 2)}),
    Technique("ln_scale", "sublayer inputs of layer i scaled by 1/sqrt(i+1)", "§4.18, PR #315",
              lambda m: {"ln_scale": True}),
    Technique("qk_gain_5", "query gain initialised at 5.0 instead of 1.5", "§4.17.2, PR #1217",
              lambda m: {"qk_gain_init": 5.0}),
    Technique("xsa_all", "exclusive self attention on every layer", "§4.17.1, PR #478",
              lambda m: {"xsa_last_n": -1}),
    Technique("attn_gate_dense", "dense per-head attention output gate σ(W·x)", "§4.17.4, PR #1736",
              lambda m: {"attn_gate": "dense"}, in_combination=False),
    Technique("attn_gate_out", "AttnOutGate 2σ(W·x[:12]), identity at init", "§4.17.5, PR #1667",
              lambda m: {"attn_gate": "out", "attn_gate_window": _window(m)}, in_combination=False),
    Technique("attn_gate_sparse", "SparseAttnGate σ(0.5·W·x[:12])", "§4.17.6, PR #1787",
              lambda m: {"attn_gate": "sparse", "attn_gate_window": _window(m), "attn_gate_scale": 0.5}),
    Technique("doc_isolated_attention", "attention never crosses a BOS document boundary", "§4.17.7, PR #1530",
              lambda m: {"doc_isolated_attention": True}),
    Technique("smear_v1", "SmearGate v1 on the normalised stream (BOS-masked)", "§4.15.1",
              lambda m: {"smear_gate": "v1"}, in_combination=False),
    Technique("smear_v2", "SmearGate v2 on raw embeddings, BOS fix", "§4.15.2, PR #1667/#1851",
              lambda m: {"smear_gate": "v2", "smear_window": _window(m)}),
    Technique("bigram_hash", "BigramHash embedding (2048 buckets)", "§4.15.3",
              lambda m: {"bigram_vocab": 2048, "bigram_dim": _hash_dim(m)}, in_combination=False),
    Technique("trigram_hash", "BigramHash + TrigramHash in one table", "§4.15.4",
              lambda m: {"bigram_vocab": 2048, "bigram_dim": _hash_dim(m), "trigram": True}),
    Technique("value_embed", "value embeddings on the last two layers", "§4.16, PR #374",
              lambda m: {"value_embed_layers": ",".join(str(i) for i in range(max(0, m.num_layers - 2), m.num_layers)),
                         "value_embed_dim": _hash_dim(m)}),
    Technique("value_residual", "values mixed with the first layer's values", "§4.16",
              lambda m: {"value_residual": True}),
    Technique("skip_gates", "gated U-Net skips lerp(w·skip, x, σ(g))", "§4.18, PR #1089",
              lambda m: {"skip_gates": True}),
    Technique("ortho_init", "orthogonal init of the large matrices", "§4.19",
              lambda m: {"ortho_init": True}),
    Technique("untied_embeddings", "separate output head", "§3.2",
              lambda m: {"tie_embeddings": False}, in_combination=False),
    Technique("parallel_record", "parallel residual lanes, record form (E), last 3 layers", "§4.20, PR #1529",
              lambda m: {"parallel_residual": "record", "parallel_start": _parallel_start(m)}),
    Technique("parallel_proteus", "parallel residual lanes, PROTEUS form (B), last 3 layers", "§4.20, PR #1289",
              lambda m: {"parallel_residual": "proteus", "parallel_start": _parallel_start(m)}, in_combination=False),
    Technique("recurrence", "depth recurrence: the last encoder layer runs twice", "§4.21",
              _recurrence),
)

TECHNIQUES_BY_NAME: dict[str, Technique] = {t.name: t for t in TECHNIQUES}


def combined_overrides(base: ModelConfig) -> dict[str, Any]:
    """Every technique at once (one of each set of alternatives: the SOTA's choices)."""
    merged: dict[str, Any] = {}
    for technique in TECHNIQUES:
        if technique.in_combination:
            merged.update(technique.overrides(base))
    return merged
