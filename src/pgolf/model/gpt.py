"""The GPT of the official baseline and of the records, assembled from config.

Every technique is a part chosen here at construction (TECHNIQUES.md §4.14–4.21): input features
(BigramHash, SmearGate), attention parts (partial RoPE, XSA, gates, value embeddings, value
residual, document isolation), block kinds (serial, two parallel-residual forms), the U-Net skip
policy, depth recurrence and the final lane merge. With every technique off the model is the
official baseline: parameter names match `train_gpt.py`'s state dict (its checkpoints load with
`strict=True`), initialisation draws the same random numbers and the forward runs the same ops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.config import ModelConfig, parse_layer_list
from pgolf.model.attention import CausalSelfAttention
from pgolf.model.blocks import Block, Stage, Stages, State
from pgolf.model.context import DocumentAttention, ForwardContext
from pgolf.model.kernels.dispatch import resolve_fused, softcap_cross_entropy_reference
from pgolf.model.layers import (
    CastedLinear,
    control_parameter_names,
    declares_controls,
    restore_fp32_controls,
    rms_norm,
    row_scale,
    sublayer_norm,
)
from pgolf.model.mlp import MLP


def xsa_layers(cfg: ModelConfig) -> range:
    """Physical layers with XSA: the last `xsa_last_n` (-1 = all)."""
    count = cfg.num_layers if cfg.xsa_last_n < 0 else cfg.xsa_last_n
    return range(cfg.num_layers - count, cfg.num_layers)


def build_attention(cfg: ModelConfig, layer: int) -> CausalSelfAttention:
    attn = CausalSelfAttention(cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.rope_base, cfg.qk_gain_init,
                               rope_dims=cfg.rope_dims, rope_train_seq_len=cfg.rope_train_seq_len)
    # Technique modules are imported only when the config uses them, so a run's import set (and the
    # code it ships) is what its config reaches.
    if layer in parse_layer_list(cfg.value_embed_layers):
        from pgolf.model.values import ValueEmbeddingMix
        attn.add_value_mixer("value_embed_mix", ValueEmbeddingMix())
    if cfg.value_residual:
        from pgolf.model.values import FirstValues, ValueResidualMix, keep_first_values
        first = FirstValues() if cfg.vr_lambda_first_layer else keep_first_values
        attn.add_value_mixer("value_residual", first if layer == 0 else ValueResidualMix())
    if cfg.doc_isolated_attention:
        attn.isolate_documents()
    if layer in xsa_layers(cfg):
        from pgolf.model.xsa import xsa_transform
        attn.add_output_transform("xsa", xsa_transform)
    if cfg.attn_gate != "off":
        from pgolf.model.gates import build_attention_gate
        attn.add_output_transform("gate", build_attention_gate(
            cfg.attn_gate, cfg.num_heads, cfg.model_dim, cfg.attn_gate_window, cfg.attn_gate_scale, cfg.attn_gate_bias))
    return attn


def build_mlp(cfg: ModelConfig) -> MLP:
    return MLP(cfg.model_dim, int(cfg.mlp_mult * cfg.model_dim), cfg.activation, cfg.leaky_slope,
               fused=resolve_fused(cfg.fused_kernels, "cuda")[0])


def is_parallel_layer(cfg: ModelConfig, layer: int) -> bool:
    return cfg.parallel_residual != "off" and layer >= cfg.parallel_start


def build_block(cfg: ModelConfig, layer: int = 0) -> Block:
    attn = build_attention(cfg, layer)
    block_cls = Block
    if is_parallel_layer(cfg, layer):
        from pgolf.model.lanes import PARALLEL_BLOCKS
        block_cls = PARALLEL_BLOCKS[cfg.parallel_residual]
    return block_cls(attn, build_mlp(cfg), cfg.model_dim, sublayer_norm(layer, cfg.ln_scale))


def plain_stages(num_layers: int, unet: bool) -> Stages:
    """Every physical layer once, in order; with a U-Net the first half are encoder stages."""
    stages = [[(layer, 0)] for layer in range(num_layers)]
    half = num_layers // 2 if unet else 0
    return stages[:half], stages[half:]


def looped_stages(cfg: ModelConfig) -> Stages:
    """The stages with depth recurrence active (the plain ones when the config has none)."""
    if cfg.recur_loops == 0:
        return plain_stages(cfg.num_layers, cfg.unet_skips)
    from pgolf.model.recurrence import layer_stages
    return layer_stages(cfg.num_layers, cfg.unet_skips, cfg.recur_start, cfg.recur_end, cfg.recur_loops, cfg.recur_form)


def add_skip(x: Tensor, skip: Tensor, weight: Tensor, gate: Tensor | None) -> Tensor:
    """x + w⊙skip (baseline), or with a skip gate lerp(w⊙skip, x, σ(g)) = σ(g)⊙x + (1−σ(g))⊙w⊙skip."""
    scaled = row_scale(weight, x) * skip
    if gate is None:
        return x + scaled
    return torch.lerp(scaled, x, torch.sigmoid(row_scale(gate, x)))


def serial_skip(state: State, combine: Callable[[Tensor], Tensor], parallel_next: bool) -> State:
    """One lane: the skip joins it (two lanes: `pgolf.model.lanes.SKIP_POLICIES`)."""
    return combine(cast(Tensor, state))


def single_lane(state: State) -> Tensor:
    return cast(Tensor, state)


@dataclass
class ParamGroups:
    """The optimizer partition: Adam for token tables and the head, Muon for matrices, Adam for the rest."""

    token: list[nn.Parameter] = field(default_factory=list)  # tok_emb and the hashed/value embedding tables
    head: list[nn.Parameter] = field(default_factory=list)  # the untied lm_head
    matrix: list[nn.Parameter] = field(default_factory=list)  # 2-D weights (Muon)
    scalar: list[nn.Parameter] = field(default_factory=list)  # control tensors, gates, lambdas, skips


@declares_controls("skip_weights", "skip_gates")
class GPT(nn.Module):
    """Embedding (+ features) → U-Net of blocks over the virtual layer order → final norm → tied head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.logit_softcap = cfg.logit_softcap
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.unet = cfg.unet_skips
        self._base_stages = plain_stages(cfg.num_layers, self.unet)
        self._looped_stages = looped_stages(cfg)
        encoder, decoder = self._looped_stages
        num_skips = min(len(encoder), len(decoder))
        if self.unet:
            self.skip_weights = nn.Parameter(torch.ones(num_skips, cfg.model_dim, dtype=torch.float32))
        else:
            self.register_parameter("skip_weights", None)
        self.blocks = nn.ModuleList(build_block(cfg, i) for i in range(cfg.num_layers))
        self.lm_head = None if cfg.tie_embeddings else CastedLinear(cfg.model_dim, cfg.vocab_size, zero_init=True)
        if cfg.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=cfg.tied_embed_init_std)
        self._build_techniques(cfg, num_skips)
        self.set_recurrence_active(True)

    def _build_techniques(self, cfg: ModelConfig, num_skips: int) -> None:
        """Parts beyond the baseline, created after it so that the baseline's random draws are unchanged."""
        if cfg.skip_gates:
            self.skip_gates = nn.Parameter(torch.zeros(num_skips, cfg.model_dim, dtype=torch.float32))
        else:
            self.register_parameter("skip_gates", None)
        self._embed_features: list[nn.Module] = []  # on the raw embedding, before the first norm
        self._stream_features: list[nn.Module] = []  # on the normalised stream
        bos_id = cfg.bos_id if cfg.feature_bos_reset else -1  # embeddings.NO_BOS: features cross documents (PR #635)
        if cfg.bigram_vocab > 0:
            from pgolf.model.bigram import BigramHash
            self.bigram = BigramHash(cfg.bigram_vocab, cfg.bigram_dim, cfg.model_dim, bos_id, cfg.trigram)
            self._embed_features.append(self.bigram)
        if cfg.smear_gate == "v2":
            from pgolf.model.embeddings import SmearGateV2
            self.smear = SmearGateV2(cfg.smear_window, bos_id)
            self._embed_features.append(self.smear)
        elif cfg.smear_gate == "v1":
            from pgolf.model.embeddings import SmearGateV1
            self.smear = SmearGateV1(cfg.model_dim, bos_id)
            self._stream_features.append(self.smear)
        kv_dim = cfg.num_kv_heads * (cfg.model_dim // cfg.num_heads)
        self.value_embed = None
        if cfg.value_embed_layers:
            from pgolf.model.values import ValueEmbedding
            self.value_embed = ValueEmbedding(cfg.vocab_size, cfg.value_embed_dim, kv_dim,
                                              zero_proj=not cfg.value_embed_ortho)
        self._build_lanes(cfg)
        self.recur_mlps = nn.ModuleDict()  # untied MLPs of the repeated runs, keyed "<layer>_<pass>"
        if cfg.recur_untie_mlp:
            from pgolf.model.recurrence import repeated_runs
            for layer, run in repeated_runs(cfg.num_layers, cfg.recur_start, cfg.recur_end, cfg.recur_loops):
                self.recur_mlps[f"{layer}_{run}"] = build_mlp(cfg)
        # Kernel choices per device type, resolved once (constants for torch.compile); the fused ops
        # dispatch on the tensors' device themselves.
        self._document_attention: Callable[[Tensor, int, str], DocumentAttention] | None = None
        if cfg.doc_isolated_attention:
            from pgolf.model.documents import build_document_attention, resolve_doc_kernel
            self._document_attention = build_document_attention
            self._doc_kernels = {dev: resolve_doc_kernel(cfg.doc_attention_kernel, dev)[0] for dev in ("cpu", "cuda")}
        self._cross_entropy = softcap_cross_entropy_reference
        if resolve_fused(cfg.fused_kernels, "cuda")[0]:
            from pgolf.model.kernels.softcap_ce import softcap_cross_entropy_fused
            self._cross_entropy = softcap_cross_entropy_fused
        if cfg.ortho_init:
            from pgolf.model.init import orthogonal_init
            orthogonal_init(self)

    def _build_lanes(self, cfg: ModelConfig) -> None:
        """How skips enter the residual state and how the final state becomes one tensor."""
        if cfg.parallel_residual == "off":
            self._skip_policy, self._final_merge = serial_skip, single_lane
            return
        from pgolf.model.lanes import SKIP_POLICIES, LaneMerge, mean_of_lanes
        self._skip_policy = SKIP_POLICIES[cfg.skip_lanes]
        if cfg.parallel_residual == "proteus":
            self.lane_merge = LaneMerge(cfg.lane_merge, cfg.lane_merge_init)
            self._final_merge = self.lane_merge.forward  # a bound method: the module is registered once
        else:
            self._final_merge = mean_of_lanes

    def kernel_notes(self, device_type: str) -> list[str]:
        """One line per requested kernel that cannot run on `device_type`, naming the one used instead."""
        notes = [resolve_fused(self.cfg.fused_kernels, device_type)[1]]
        if self.cfg.doc_isolated_attention:
            from pgolf.model.documents import resolve_doc_kernel
            notes.append(resolve_doc_kernel(self.cfg.doc_attention_kernel, device_type)[1])
        return [note for note in notes if note]

    # ---- depth recurrence -----------------------------------------------------------------------
    def set_recurrence_active(self, active: bool) -> None:
        """Switch the virtual layer order between the looped and the plain one.

        The order is a plain attribute read by `hidden`: torch.compile guards on it, so switching
        recompiles (or reuses a graph primed in warm-up) instead of silently keeping the old graph.
        """
        self._encoder, self._decoder = self._looped_stages if active else self._base_stages
        self.recurrence_active = active

    @property
    def layer_order(self) -> list[int]:
        """Physical block index of every virtual layer in the current mode."""
        return [layer for stage in self._encoder + self._decoder for layer, _ in stage]

    # ---- forward --------------------------------------------------------------------------------
    def _context(self, x0: Tensor, input_ids: Tensor) -> ForwardContext:
        ctx = ForwardContext(x0=x0)
        if self._document_attention is not None:
            kernel = self._doc_kernels.get(input_ids.device.type, "dense")
            ctx.documents = self._document_attention(input_ids, self.cfg.bos_id, kernel)
        if self.value_embed is not None:
            ctx.value_embed = self.value_embed(input_ids, x0.dtype)
        return ctx

    def _skip(self, state: State, skip: Tensor, index: int, parallel_next: bool) -> State:
        gate = None if self.skip_gates is None else self.skip_gates[index]
        weight = self.skip_weights[index]
        return self._skip_policy(state, lambda x: add_skip(x, skip, weight, gate), parallel_next)

    def _run_stage(self, stage: Stage, state: State, ctx: ForwardContext) -> State:
        for layer, run in stage:
            mlp = self.recur_mlps[f"{layer}_{run}"] if run and self.cfg.recur_untie_mlp else None
            state = self.blocks[layer](state, ctx, mlp)
        return state

    def hidden(self, input_ids: Tensor) -> Tensor:
        """Final-normed hidden states (batch, seq, dim)."""
        e = self.tok_emb(input_ids)
        for feature in self._embed_features:
            e = feature(e, input_ids)
        x = rms_norm(e)
        for feature in self._stream_features:
            x = feature(x, input_ids)
        ctx = self._context(x, input_ids)
        state: State = x
        skips: list[Tensor] = []  # encoder outputs: one lane (parallel lanes start in the decoder)
        for stage in self._encoder:
            state = self._run_stage(stage, state, ctx)
            skips.append(cast(Tensor, state))
        for j, stage in enumerate(self._decoder):
            if skips:
                state = self._skip(state, skips.pop(), j, is_parallel_layer(self.cfg, stage[0][0]))
            state = self._run_stage(stage, state, ctx)
        return rms_norm(self._final_merge(state))

    def raw_logits(self, hidden: Tensor) -> Tensor:
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(hidden, weight.to(hidden.dtype))

    def logits(self, hidden: Tensor) -> Tensor:
        return self.logit_softcap * torch.tanh(self.raw_logits(hidden) / self.logit_softcap)

    def token_losses(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """Per-token cross-entropy in nats (float32, shape of `target_ids`) of the softcapped logits."""
        raw = self.raw_logits(self.hidden(input_ids))
        return self._cross_entropy(raw, target_ids, self.logit_softcap)

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """Mean cross-entropy, as the training loss."""
        raw = self.raw_logits(self.hidden(input_ids))
        return self._cross_entropy(raw, target_ids, self.logit_softcap, reduction="mean")

    # ---- optimizer partition --------------------------------------------------------------------
    def optimizer_groups(self) -> ParamGroups:
        """Block parameters first (the baseline's order), then the model-level ones."""
        groups = ParamGroups()
        named = list(self.blocks.named_parameters(prefix="blocks"))
        named += [(n, p) for n, p in self.named_parameters() if not n.startswith("blocks.")]
        head = None if self.lm_head is None else self.lm_head.weight
        controls = control_parameter_names(self)
        for name, p in named:
            if p is self.tok_emb.weight or name.endswith(".table"):
                groups.token.append(p)
            elif p is head:
                groups.head.append(p)
            elif p.ndim == 2 and name not in controls:
                groups.matrix.append(p)
            else:
                groups.scalar.append(p)
        return groups


def build_model(cfg: ModelConfig, device: torch.device, low_precision_storage: bool = False) -> GPT:
    """Create the model on `device`.

    `low_precision_storage` reproduces the baseline's GPU layout: the module is cast to bf16, then
    Linear weights and control tensors are restored to fp32 (so only the embedding tables stay bf16).
    """
    model = GPT(cfg).to(device)
    if low_precision_storage:
        model = model.bfloat16()
        restore_fp32_controls(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token: 6 × (matmul weights incl. the head) + causal attention scores.

    Attention: per layer, QKᵀ and AV each cost 2·S·d multiply-adds per token for a full window;
    causal masking halves that on average, and backward doubles forward: 3 × 2 × 2 × (S/2) × d.
    Blocks count once per virtual layer (depth recurrence active); feature projections once.
    """
    d = cfg.model_dim
    head_dim = d // cfg.num_heads
    kv_dim = cfg.num_kv_heads * head_dim
    hidden = int(cfg.mlp_mult * d)
    per_block = d * d * 2 + d * kv_dim * 2 + 2 * d * hidden
    if cfg.attn_gate != "off":
        per_block += cfg.num_heads * (d if cfg.attn_gate == "dense" else cfg.attn_gate_window)
    layers = cfg.num_layers + cfg.recur_loops * (cfg.recur_end - cfg.recur_start + 1)
    features = ((cfg.bigram_dim * d if cfg.bigram_vocab else 0)
                + (cfg.value_embed_dim * kv_dim if cfg.value_embed_layers else 0))
    matmul_params = layers * per_block + cfg.vocab_size * d + features
    attention = layers * 6 * seq_len * d
    return 6 * matmul_params + attention
