"""The schema of pgolf's one typed configuration: a `Config` made of dataclass sections.

Every field carries its documentation as the comment on its line (or the comment block right above
it): `pgolf.config.introspect.field_docs` reads them for the CLI help and `pgolf config show --doc`.
Fields with a fixed set of values are `Literal` types; `pgolf.config.introspect.CHOICES` derives the
allowed values from them. The defaults are the official baseline. Loading (preset < file < env <
--set) is `pgolf.config.loader`, checking is `pgolf.config.validate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import tomli_w


@dataclass
class DataConfig:
    """Where tokens come from. `embedded:<variant>` is the corpus shipped inside the package."""

    # folder of fineweb_{train,val}_*.bin shards, or embedded:<variant> (the sample in the package)
    dataset: str = "./data/datasets/fineweb10B_sp1024"
    # tokenizer of the dataset: .model, byte260, tiktoken:<enc> or .json (auto: an embedded dataset's own)
    tokenizer: str = "./data/tokenizers/fineweb_1024_bpe.model"
    train_shards: int = 0  # use only the first N train shards (0 = all)
    expected_train_shards: int = 80  # warn when a run uses fewer train shards (the official download: 80; 0 = no check)
    # stream (the baseline) | doc_aligned | coprime (see pgolf.data.loader)
    loader: Literal["stream", "doc_aligned", "coprime"] = "stream"


@dataclass
class ModelConfig:
    vocab_size: int = 1024  # tokens of the vocabulary; must match the tokenizer
    num_layers: int = 9  # transformer blocks (physical layers)
    model_dim: int = 512  # width of the residual stream
    num_heads: int = 8  # query heads; the head dim is model_dim / num_heads
    num_kv_heads: int = 4  # key/value heads (grouped-query attention; divides num_heads)
    mlp_mult: float = 2.0  # MLP hidden width = mlp_mult × model_dim
    activation: Literal["relu2", "leaky_relu2"] = "relu2"  # MLP nonlinearity: relu(x)² | leaky_relu(x)²
    tie_embeddings: bool = True  # the output head reuses the token embedding
    rope_base: float = 10000.0  # RoPE frequency base
    logit_softcap: float = 30.0  # logits are softcapped to ±logit_softcap (tanh)
    qk_gain_init: float = 1.5  # initial per-head gain on the normalized queries
    tied_embed_init_std: float = 0.005  # init std of the tied embedding
    bos_id: int = 1  # document separator: token-mixing features never cross it
    # Techniques of the records (TECHNIQUES.md §4.14–4.21). The defaults are the official baseline.
    leaky_slope: float = 0.5  # negative slope of activation = "leaky_relu2"
    rope_dims: int = 0  # partial RoPE: rotate only the first N dims of each head (0 = the whole head)
    ln_scale: bool = False  # scale the sublayer inputs of physical layer i by 1/sqrt(i+1)
    xsa_last_n: int = 0  # exclusive self attention on the last N layers (-1 = all, 0 = off)
    # off | dense | sparse | out: per-head gate on the attention output
    attn_gate: Literal["off", "dense", "sparse", "out"] = "off"
    attn_gate_window: int = 12  # input channels of the sparse/out gates
    attn_gate_scale: float = 1.0  # α of the sparse gate σ(α·W·x[:window])
    doc_isolated_attention: bool = False  # tokens attend only inside their own BOS-delimited document
    # Triton softcapped CE and LeakyReLU² on CUDA (auto: when Triton imports)
    fused_kernels: Literal["auto", "on", "off"] = "auto"
    # document-isolation kernel (auto: FA3 varlen, else flex on CUDA; dense on CPU)
    doc_attention_kernel: Literal["auto", "dense", "flex", "varlen"] = "auto"
    smear_gate: Literal["off", "v1", "v2"] = "off"  # off | v1 | v2 (always masked at BOS)
    smear_window: int = 12  # input channels of the v2 gate
    bigram_vocab: int = 0  # BigramHash buckets (0 = off)
    bigram_dim: int = 128  # width of the BigramHash embedding (projected to model_dim)
    trigram: bool = False  # add a trigram hash looked up in the bigram table
    value_embed_layers: str = ""  # comma-separated physical layers that add value embeddings ("" = off)
    value_embed_dim: int = 128  # width of the value embeddings (projected to the kv width)
    value_residual: bool = False  # v ← λ0·v_first + λ1·v from the second layer on
    unet_skips: bool = True  # encoder → decoder skip connections (U-Net), as the baseline
    skip_gates: bool = False  # decoder input = lerp(w⊙skip, x, σ(g)) instead of x + w⊙skip
    ortho_init: bool = False  # orthogonal init of Linear weights with both dims ≥ 64
    # off | record (#1529/SOTA) | proteus (#1289/#1425) | pr1204 (sequential lane writes)
    parallel_residual: Literal["off", "record", "proteus", "pr1204"] = "off"
    # U-Net skips into parallel lanes: attn (lane 0 only: #1425, SOTA) | both (#1289, #1204)
    skip_lanes: Literal["attn", "both"] = "attn"
    # proteus final merge μ·x_attn + (1−μ)·x_mlp: μ = σ(θ) (sigmoid, #1425) | θ (linear, #1289)
    lane_merge: Literal["sigmoid", "linear"] = "sigmoid"
    lane_merge_init: float = 0.5  # θ₀ of the proteus lane merge (both records: 0.5)
    parallel_start: int = 0  # first physical layer with parallel lanes
    recur_start: int = 0  # depth recurrence: physical layers recur_start..recur_end (inclusive) ...
    recur_end: int = 0  # last physical layer of the recurrence range (inclusive)
    recur_loops: int = 0  # ... run this many extra times (0 = off)
    # segment: the range repeats as a block (#1204, SOTA) | inplace: each layer repeats in place (#1289)
    recur_form: Literal["segment", "inplace"] = "segment"
    recur_untie_mlp: bool = False  # every repeated run has its own MLP weights (#1289; #1204 REPEAT_UNTIE_MLP=full)
    # Record-parity options (docs/records.md): the defaults keep pgolf's forms, the record presets set the records'
    rope_train_seq_len: int = 0  # NTK RoPE: longer sequences use base·(L/this)^(d/(d−2)) (0 = off; PR #635 1024)
    attn_gate_bias: bool = False  # dense gate as PR #635's Linear with bias: weight 0, bias 4 (g ≈ 0.98 at init)
    feature_bos_reset: bool = True  # SmearGate/BigramHash restart at BOS; False = PR #635's, which cross documents
    value_embed_ortho: bool = False  # value-embedding projection initialised orthogonal, not zero (PR #1218/#1291)
    vr_lambda_first_layer: bool = False  # layer 0 also holds its (unused) vr_lambda, as PR #635 (parameter parity)


@dataclass
class OptimConfig:
    embed_lr: float = 0.6  # Adam LR of the untied token embedding
    head_lr: float = 0.008  # Adam LR of the untied output head
    tied_embed_lr: float = 0.05  # Adam LR of the tied embedding
    matrix_lr: float = 0.04  # Muon LR of the 2-D block matrices
    scalar_lr: float = 0.04  # Adam LR of the control / scalar tensors
    muon_momentum: float = 0.95  # Muon momentum after warm-up
    muon_backend_steps: int = 5  # Newton–Schulz iterations per Muon update
    muon_momentum_warmup_start: float = 0.85  # Muon momentum at step 0, raised linearly to muon_momentum
    muon_momentum_warmup_steps: int = 500  # steps of the Muon momentum warm-up
    # auto: the compute dtype (bf16 as the baseline; fp32 in fp32 runs)
    muon_ns_dtype: Literal["auto", "bf16", "fp32"] = "auto"
    beta1: float = 0.9  # Adam β1
    beta2: float = 0.95  # Adam β2
    adam_eps: float = 1e-8  # Adam ε
    grad_clip_norm: float = 0.0  # clip the global gradient norm to this (0 = no clipping)
    # Muon variants of the records (defaults = the baseline's Muon)

    # round_robin (baseline, behind DDP) | parallel (banks, no DDP)
    muon_impl: Literal["round_robin", "parallel"] = "round_robin"
    # dtype of Parallel Muon's reduce-scatter/all-gather (bf16: half the bytes)
    muon_comm_dtype: Literal["fp32", "bf16"] = "fp32"
    # with Parallel Muon, clip the averaged gradient or each rank's own (the records)
    muon_clip: Literal["global", "local"] = "global"
    # classic quintic | polar_express (per-iteration coefficients, ≤ 5 steps)
    muon_ns_variant: Literal["classic", "polar_express"] = "classic"
    muon_nesterov: bool = True  # Nesterov momentum in Muon
    muon_row_normalize: bool = False  # MuonEq-R: each row of the direction to unit norm before Newton–Schulz
    muon_weight_decay: float = 0.0  # decoupled: W ← W·(1 − lr_t·wd) before each Muon update
    wd_taper_start_frac: float = 1.0  # Muon WD ×1 until this progress, then linear to wd_taper_final_mult
    wd_taper_final_mult: float = 1.0  # Muon WD multiplier reached at the end of the taper
    embed_weight_decay: float = 0.0  # decoupled Adam decay of the embedding / untied head
    adam_weight_decay: float = 0.0  # decoupled Adam decay of the control / scalar tensors
    # Parallel Muon's momentum (PR #635: bf16, gradient cast first)
    muon_momentum_dtype: Literal["fp32", "bf16"] = "fp32"
    bigram_proj_adam: bool = False  # train bigram.proj with the scalar Adam (PR #635), not Muon
    ve_proj_adam: bool = False  # train value_embed.proj with the scalar Adam (PR #1289), not Muon
    # AdamW updates per step of each PROTEUS lane_route from one gradient (PR #1289: 2, `route` listed twice)
    route_adam_updates: int = 1


@dataclass
class TrainConfig:
    iterations: int = 20000  # 0 = no step cap (the wallclock cap ends the run)
    warmdown_iters: int = 1200  # linear LR warmdown over the last N steps (or the wallclock-equivalent under a cap)
    warmup_steps: int = 20  # compile-priming steps whose effects are rolled back
    train_batch_tokens: int = 524_288  # tokens per optimizer step over all ranks
    train_seq_len: int = 1024  # training sequence length
    max_wallclock_seconds: float = 600.0  # 0 disables the cap
    grad_accum_steps: int = 0  # 0 = the baseline's rule, 8 // world_size
    val_loss_every: int = 1000  # score the val split every N steps (0 = only at the end)
    train_log_every: int = 200  # log the training loss every N steps
    checkpoint_every: int = 0  # 0 = no periodic checkpoints
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto | cpu | cuda
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # auto | bf16 | fp32: the autocast compute dtype
    compile: Literal["auto", "on", "off"] = "auto"  # auto | on | off
    threads: int = 0  # CPU intra-op threads (0 = torch default)
    # Proxy mode: emulate a run on this many GPUs with fewer (0 = off). Keeps the global batch through
    # gradient accumulation and scales the wallclock cap by proxy_world_size / world_size.
    proxy_world_size: int = 0
    # schedules: progress = elapsed / wallclock cap, or step / iterations without a cap
    warmdown_frac: float = 0.0  # > 0: linear warmdown over this final fraction of the run (replaces warmdown_iters)
    min_lr_scale: float = 0.0  # floor of the LR multiplier during warmdown (the records' MIN_LR)
    late_qat_threshold: float = 0.0  # fake-quantize Muon matrices while the LR multiplier is below this (0 = off)
    qat_bits: int = 6  # int-k of late QAT (per-row symmetric)
    # what late QAT fake-quantizes: muon (every Muon matrix at its stored width) | projections (PR #635, #1289: only
    # the records' CastedLinear weights, the bigram / value-embedding projections, at int-qat_bits; docs/training.md)
    late_qat_scope: Literal["muon", "projections"] = "muon"
    # what switches late QAT on: lr_scale (the LR multiplier below late_qat_threshold) | progress (the last
    # late_qat_threshold of the run: of the wallclock cap, else of the steps; PR #635's QAT_TIME_FRAC)
    late_qat_trigger: Literal["lr_scale", "progress"] = "lr_scale"
    # QAT grid: row_max (step = row max |w| / R) | floored (step ≥ 1/R, codes ±R: PR #635's CastedLinear QAT) |
    # floored_asym (step ≥ 1/R, codes in [−R − 1, R]: PR #1289's)
    qat_grid: Literal["row_max", "floored", "floored_asym"] = "row_max"
    recurrence_start_step: int = 0  # switch the model's depth recurrence on at this step (0 = not by step)
    recurrence_start_frac: float = 0.0  # ... or at this progress (0 = not by progress)
    # weight averaging; the averaged weights are evaluated, then packed (EMA if on, else SWA)
    ema_decay: float = 0.0  # 0 = off; records 0.997 / 0.9965
    ema_start_step: int = 0  # before this step the EMA just copies the weights
    swa_every: int = 0  # snapshot every N steps while the LR multiplier is below swa_max_lr_scale (0 = off)
    swa_max_lr_scale: float = 0.5  # SWA snapshots are taken while the LR multiplier is below this
    swa_source: Literal["raw", "ema"] = "raw"  # what SWA snapshots: the live weights, or the EMA's (PR #635)
    # weights kept: average (EMA if on, else SWA) | live | best_val (lowest sliding val_bpb of live, EMA, SWA: #635)
    final_weights: Literal["average", "live", "best_val"] = "average"
    # inductor | aot_eager | eager (the last two: debugging, tests)
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    max_recompiles: int = 8  # graphs compiled after warm-up before the run stops


# GPTQ / fit calibration sources and their legality under the challenge rules (TECHNIQUES §4.5.2);
# recorded in every artifact that used one. Validation data is never a source.
CALIBRATION_SOURCES: dict[str, str] = {
    "ar": "legal: the trained model's own samples; no training or validation data is read after training",
    "train": "legal only inside the training time budget: the calibration pass reads training shards and "
             "must finish within train.max_wallclock_seconds (reserve the time), never after it",
    "loader": "legal only inside the training time budget: the calibration pass re-reads the run's first training "
              "batches and must finish within train.max_wallclock_seconds (reserve the time), never after it",
}
FORBIDDEN_CALIBRATION: dict[str, str] = {
    "val": "validation data may never be used for calibration (it is the test set)",
    "validation": "validation data may never be used for calibration (it is the test set)",
}


@dataclass
class QuantConfig:
    # int8: the baseline's exact export | policy: quant.policy | fit: policy + bits fitted to the budget
    scheme: Literal["int8", "policy", "fit"] = "int8"
    policy: str = "int6"  # a shipped policy (pgolf/quant/policies) or a .toml path; used by schemes policy and fit
    gptq: bool = False  # full-Hessian GPTQ for every int-k matrix with a Hessian (else round-to-nearest)
    gptq_block_size: int = 128  # columns quantized per GPTQ block
    gptq_damp: float = 0.01  # fraction of mean(diag H) added to the diagonal
    # GPTQ / fit calibration tokens: ar (self-generated) | train (the start of the training stream) | loader (rank 0's
    # share of the first batches of a fresh data.loader: the run's first training batches); see CALIBRATION_SOURCES
    calibration: Literal["ar", "train", "loader"] = "ar"
    calibration_seqs: int = 64  # calibration sequences for GPTQ / fit
    calibration_seq_len: int = 0  # 0 = train.train_seq_len
    calibration_temperature: float = 0.8  # sampling temperature of `ar`
    calibration_seed: int = 1337  # seed of the `ar` calibration samples
    # calibration = train under a wallclock cap: training stops this much earlier, so that the calibration pass
    # (reading training shards, collecting Hessians) runs inside train.max_wallclock_seconds
    calibration_reserve_seconds: float = 0.0
    prune_fraction: float = 0.0  # zero this fraction of smallest-|w| entries of each int-k matrix first
    fit_bits: str = "5,6,7,8"  # candidate widths of scheme fit
    # payload compressor: zlib (the baseline) | zstd | lzma | brotli | lrzip (ZPAQ via the lrzip tool) | auto (smallest
    # of the installed ones)
    codec: Literal["zlib", "zstd", "lzma", "brotli", "lrzip", "auto"] = "zlib"
    codec_level: int = -1  # -1 = the codec's default (zlib 9, as the baseline)
    # payload transform before the codec: none | byteplane | bitpack | bykind | grouped | auto; bykind (codes first,
    # floats in byte planes) packs the records' tensors below their own torch.save files
    transform: Literal["none", "byteplane", "bitpack", "bykind", "grouped", "auto"] = "bykind"
    budget_bytes: int = 16_000_000  # the cap: code + artifact bytes
    budget_margin: int = 0  # scheme fit aims at budget_bytes − budget_margin
    # LQER: rank of the low-rank correction of the worst-quantized int-k matrices (0 = off; record: 4)
    lqer_rank: int = 0
    lqer_top_k: int = 3  # LQER: how many matrices (largest ‖W − W_q‖) get a correction
    lqer_group: int = 64  # LQER asymmetric form (int2 A, int4 B in groups of this size); 0 = symmetric only
    lqer_factor_bits: int = 4  # LQER symmetric form: per-row int bits of both factors
    # counted/shipped train_gpt.py: plain | minified | compressed (minified, smallest wrapper, which may be a latin-1
    # file) | compressed_ascii (minified, smallest base85 wrapper: an ASCII file, as the records ship)
    code_form: Literal["plain", "minified", "compressed", "compressed_ascii"] = "compressed"


@dataclass
class EvalConfig:
    """Scoring stages. Defaults keep the baseline: one plain pass at train_seq_len, nothing else.

    Stages run in order, each from the same weights: plain → sliding (stride > 0) → + TTT
    (ttt != off) → + SLOT (slot != off). Record values are the defaults of the technique knobs.
    """

    val_batch_size: int = 524_288  # tokens per plain-eval batch over all ranks
    val_max_tokens: int = 0  # score only a declared prefix of the val stream (0 = full split)
    context: int = 0  # window length for sliding/TTT/SLOT scoring (0 = train.train_seq_len)
    stride: int = 0  # sliding-window stride (0 = no sliding stage; the records use 64)
    batch_seqs: int = 32  # windows per forward pass and rank
    max_eval_seconds: float = 0.0  # per stage: stop cleanly after this long and report the scored part (0 = no cap)
    # score-first test-time training (TECHNIQUES §4.25.1-4.25.4)
    ttt: Literal["off", "full", "lora", "phased"] = "off"  # off | full | lora | phased
    ttt_chunk_tokens: int = 32_768  # full TTT and phased global SGD: tokens per score-then-train chunk
    ttt_lr: float = 0.005  # full TTT: SGD learning rate
    ttt_momentum: float = 0.9  # full TTT: SGD momentum
    ttt_epochs: int = 3  # full TTT: training epochs over each scored chunk
    ttt_batch_seqs: int = 32  # training sequences per step and rank
    ttt_grad_clip: float = 1.0  # 0 disables clipping
    ttt_freeze_blocks: int = 0  # first N blocks stay frozen (num_layers freezes every block)
    # TTT's SGD steps (full TTT, phased passes): comma-separated parameters whose training forward is fake-quantized
    # per row (STE, step ≥ 1/qmax: the records' CastedLinear QAT, which PR #635 leaves switched on through its TTT)
    ttt_qat_params: str = ""
    # bit width of the ttt_qat_params fake quantization
    ttt_qat_bits: int = 6
    ttt_lora_rank: int = 80  # LoRA TTT: adapter rank
    ttt_lora_alpha: float = 144.0  # LoRA TTT: adapter scale α (the update is α/rank · B·A)
    ttt_lora_targets: str = "q,k,v,o,mlp,head"  # LoRA TTT: comma-separated sites among q,k,v,o,mlp,head
    ttt_lora_chunk: int = 48  # predictions per score-then-step chunk inside a document
    ttt_lora_docs: int = 64  # documents adapted in parallel (one adapter set each)
    ttt_lora_lr: float = 1e-4  # LoRA TTT: Adam learning rate
    ttt_lora_beta2: float = 0.99  # LoRA TTT: Adam β2
    ttt_lora_weight_decay: float = 0.5  # LoRA TTT: decoupled weight decay
    ttt_lora_warm_a: bool = True  # keep A (not B) across document batches
    ttt_bos_id: int = 1  # document delimiter for LoRA/phased TTT
    ttt_phases: int = 3  # phased TTT: global SGD passes over the scored document prefix
    ttt_phase_docs: int = 2_500  # phased TTT: documents in the prefix the phases cover
    ttt_phase_lr: float = 0.001  # phased TTT: SGD learning rate of the global passes
    # SLOT (TECHNIQUES §4.25.5): a delta on the last hidden state fitted per batch with AdamW

    # off | context (fits only already-scored context: compliant) | published (PR #1176: not)
    slot: Literal["off", "context", "published"] = "off"
    slot_steps: int = 8  # SLOT: AdamW steps per batch
    slot_lr: float = 0.005  # SLOT: AdamW learning rate
    slot_weight_decay: float = 1e-8  # SLOT: AdamW weight decay
    slot_eps: float = 1e-5  # SLOT: AdamW ε


@dataclass
class RunConfig:
    run_id: str = ""  # empty: a fresh id is generated
    seed: int = 1337  # seed of init, data order and sampling
    out_dir: str = "runs"  # runs are written to out_dir/run_id/
    preset: str = ""  # the preset the config was resolved from (set by --preset)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


# Where LoRA TTT can attach adapters (pgolf.evaluate.lora maps each to model modules).
LORA_TARGETS: tuple[str, ...] = ("q", "k", "v", "o", "mlp", "head")
