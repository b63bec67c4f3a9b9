"""The GPT of the official baseline, assembled from config.

Parameter names match the official `train_gpt.py` state dict exactly, so its checkpoints load
with `strict=True`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.config import ModelConfig
from pgolf.model.attention import CausalSelfAttention
from pgolf.model.blocks import Block
from pgolf.model.layers import CastedLinear, restore_fp32_controls, rms_norm, row_scale
from pgolf.model.mlp import MLP


def build_block(cfg: ModelConfig) -> Block:
    attn = CausalSelfAttention(cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.rope_base, cfg.qk_gain_init)
    mlp = MLP(cfg.model_dim, int(cfg.mlp_mult * cfg.model_dim), cfg.activation)
    return Block(attn, mlp, cfg.model_dim)


class GPT(nn.Module):
    """Embedding → U-Net of blocks (encoder half pushes skips, decoder half pops them) → tied head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.logit_softcap = cfg.logit_softcap
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.num_encoder_layers = cfg.num_layers // 2
        self.num_decoder_layers = cfg.num_layers - self.num_encoder_layers
        num_skips = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, cfg.model_dim, dtype=torch.float32))
        self.blocks = nn.ModuleList(build_block(cfg) for _ in range(cfg.num_layers))
        self.lm_head = None if cfg.tie_embeddings else CastedLinear(cfg.model_dim, cfg.vocab_size, zero_init=True)
        if cfg.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=cfg.tied_embed_init_std)

    def hidden(self, input_ids: Tensor) -> Tensor:
        """Final-normed hidden states (batch, seq, dim)."""
        x = rms_norm(self.tok_emb(input_ids))
        x0 = x
        skips: list[Tensor] = []
        for block in self.blocks[: self.num_encoder_layers]:
            x = block(x, x0)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.num_encoder_layers :]):
            if skips:
                x = x + row_scale(self.skip_weights[i], x) * skips.pop()
            x = block(x, x0)
        return rms_norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        raw = F.linear(hidden, weight.to(hidden.dtype))
        return self.logit_softcap * torch.tanh(raw / self.logit_softcap)

    def token_losses(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """Per-token cross-entropy in nats (float32, shape of `target_ids`), on fp32 logits."""
        logits = self.logits(self.hidden(input_ids)).float()
        losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="none")
        return losses.view_as(target_ids)

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """Mean cross-entropy, as the training loss."""
        logits = self.logits(self.hidden(input_ids)).float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1))


def build_model(cfg: ModelConfig, device: torch.device, low_precision_storage: bool = False) -> GPT:
    """Create the model on `device`.

    `low_precision_storage` reproduces the baseline's GPU layout: the module is cast to bf16, then
    Linear weights and control tensors are restored to fp32 (so only the embedding stays bf16).
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
    """
    d = cfg.model_dim
    head_dim = d // cfg.num_heads
    kv_dim = cfg.num_kv_heads * head_dim
    hidden = int(cfg.mlp_mult * d)
    per_block = d * d * 2 + d * kv_dim * 2 + 2 * d * hidden
    matmul_params = cfg.num_layers * per_block + cfg.vocab_size * d
    attention = cfg.num_layers * 6 * seq_len * d
    return 6 * matmul_params + attention
