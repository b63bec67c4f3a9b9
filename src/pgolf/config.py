"""The one typed configuration of pgolf.

A run is described by a `Config` made of dataclass sections. It is resolved in one direction,
each layer overriding the one before:

    dataclass defaults (the official baseline) < preset TOML < --config TOML < environment < --set

This module is the only place in pgolf that reads the environment: the official baseline's
environment variables (DATA_PATH, NUM_LAYERS, MATRIX_LR, ...) map onto fields below, so a user
of the official `train_gpt.py` keeps their habits. Unknown keys, wrong types and impossible
combinations raise `ConfigError` naming the key, before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from pgolf.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


@dataclass
class DataConfig:
    """Where tokens come from. `embedded:<variant>` is the corpus shipped inside the package."""

    dataset: str = "./data/datasets/fineweb10B_sp1024"
    tokenizer: str = "./data/tokenizers/fineweb_1024_bpe.model"
    train_shards: int = 0  # use only the first N train shards (0 = all)
    expected_train_shards: int = 80  # warn when a run uses fewer train shards (the official download: 80; 0 = no check)
    loader: str = "stream"  # stream (the baseline) | doc_aligned | coprime (see pgolf.data.loader)


@dataclass
class ModelConfig:
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: float = 2.0
    activation: str = "relu2"
    tie_embeddings: bool = True
    rope_base: float = 10000.0
    logit_softcap: float = 30.0
    qk_gain_init: float = 1.5
    tied_embed_init_std: float = 0.005
    bos_id: int = 1  # document separator: token-mixing features never cross it
    # Techniques of the records (TECHNIQUES.md §4.14–4.21). The defaults are the official baseline.
    leaky_slope: float = 0.5  # negative slope of activation = "leaky_relu2"
    rope_dims: int = 0  # partial RoPE: rotate only the first N dims of each head (0 = the whole head)
    ln_scale: bool = False  # scale the sublayer inputs of physical layer i by 1/sqrt(i+1)
    xsa_last_n: int = 0  # exclusive self attention on the last N layers (-1 = all, 0 = off)
    attn_gate: str = "off"  # off | dense | sparse | out: per-head gate on the attention output
    attn_gate_window: int = 12  # input channels of the sparse/out gates
    attn_gate_scale: float = 1.0  # α of the sparse gate σ(α·W·x[:window])
    doc_isolated_attention: bool = False  # tokens attend only inside their own BOS-delimited document
    smear_gate: str = "off"  # off | v1 | v2 (always masked at BOS)
    smear_window: int = 12  # input channels of the v2 gate
    bigram_vocab: int = 0  # BigramHash buckets (0 = off)
    bigram_dim: int = 128
    trigram: bool = False  # add a trigram hash looked up in the bigram table
    value_embed_layers: str = ""  # comma-separated physical layers that add value embeddings ("" = off)
    value_embed_dim: int = 128
    value_residual: bool = False  # v ← λ0·v_first + λ1·v from the second layer on
    unet_skips: bool = True
    skip_gates: bool = False  # decoder input = lerp(w⊙skip, x, σ(g)) instead of x + w⊙skip
    ortho_init: bool = False
    parallel_residual: str = "off"  # off | record (#1529/SOTA) | proteus (#1289/#1425) | pr1204 (sequential lane writes)
    parallel_start: int = 0  # first physical layer with parallel lanes
    skip_lanes: str = "attn"  # U-Net skips into parallel lanes: attn (lane 0 only: #1425, SOTA) | both (#1289, #1204)
    lane_merge: str = "sigmoid"  # proteus final merge μ·x_attn + (1−μ)·x_mlp: μ = σ(θ) (sigmoid, #1425) | θ (linear, #1289)
    lane_merge_init: float = 0.5  # θ₀ of the proteus lane merge (both records: 0.5)
    recur_start: int = 0  # depth recurrence: physical layers recur_start..recur_end (inclusive) ...
    recur_end: int = 0
    recur_loops: int = 0  # ... run this many extra times (0 = off)
    recur_form: str = "segment"  # segment: the range repeats as a block (#1204, SOTA) | inplace: each layer repeats in place (#1289)
    recur_untie_mlp: bool = False  # every repeated run has its own MLP weights (#1289; #1204 REPEAT_UNTIE_MLP=full)
    # Record-parity options (docs/records.md): the defaults keep pgolf's forms, the record presets set the records'
    rope_train_seq_len: int = 0  # NTK RoPE: longer sequences use base·(L/this)^(d/(d−2)) (0 = off; PR #635 1024)
    attn_gate_bias: bool = False  # dense gate as PR #635's Linear with bias: weight 0, bias 4 (g ≈ 0.98 at init)
    feature_bos_reset: bool = True  # SmearGate/BigramHash restart at BOS; False = PR #635's, which cross documents
    vr_lambda_first_layer: bool = False  # layer 0 also holds its (unused) vr_lambda, as PR #635 (parameter parity)


@dataclass
class OptimConfig:
    embed_lr: float = 0.6
    head_lr: float = 0.008
    tied_embed_lr: float = 0.05
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    muon_ns_dtype: str = "auto"  # auto: the compute dtype (bf16 as the baseline; fp32 in fp32 runs)
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip_norm: float = 0.0
    # Muon variants of the records (defaults = the baseline's Muon)
    muon_impl: str = "round_robin"  # round_robin (baseline, behind DDP) | parallel (banks, no DDP)
    muon_ns_variant: str = "classic"  # classic quintic | polar_express (per-iteration coefficients, ≤ 5 steps)
    muon_nesterov: bool = True
    muon_row_normalize: bool = False  # MuonEq-R: each row of the direction to unit norm before Newton–Schulz
    muon_weight_decay: float = 0.0  # decoupled: W ← W·(1 − lr_t·wd) before each Muon update
    wd_taper_start_frac: float = 1.0  # Muon WD ×1 until this progress, then linear to wd_taper_final_mult
    wd_taper_final_mult: float = 1.0
    embed_weight_decay: float = 0.0  # decoupled Adam decay of the embedding / untied head
    adam_weight_decay: float = 0.0  # decoupled Adam decay of the control / scalar tensors
    bigram_proj_adam: bool = False  # train bigram.proj with the scalar Adam (PR #635), not Muon
    ve_proj_adam: bool = False  # train value_embed.proj with the scalar Adam (PR #1289), not Muon


@dataclass
class TrainConfig:
    iterations: int = 20000  # 0 = no step cap (the wallclock cap ends the run)
    warmdown_iters: int = 1200
    warmup_steps: int = 20  # compile-priming steps whose effects are rolled back
    train_batch_tokens: int = 524_288
    train_seq_len: int = 1024
    max_wallclock_seconds: float = 600.0  # 0 disables the cap
    grad_accum_steps: int = 0  # 0 = the baseline's rule, 8 // world_size
    val_loss_every: int = 1000
    train_log_every: int = 200
    checkpoint_every: int = 0  # 0 = no periodic checkpoints
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto | bf16 | fp32: the autocast compute dtype
    compile: str = "auto"  # auto | on | off
    threads: int = 0  # CPU intra-op threads (0 = torch default)
    # Proxy mode: emulate a run on this many GPUs with fewer (0 = off). Keeps the global batch through
    # gradient accumulation and scales the wallclock cap by proxy_world_size / world_size.
    proxy_world_size: int = 0
    # schedules: progress = elapsed / wallclock cap, or step / iterations without a cap
    warmdown_frac: float = 0.0  # > 0: linear warmdown over this final fraction of the run (replaces warmdown_iters)
    min_lr_scale: float = 0.0  # floor of the LR multiplier during warmdown (the records' MIN_LR)
    late_qat_threshold: float = 0.0  # fake-quantize Muon matrices while the LR multiplier is below this (0 = off)
    qat_bits: int = 6  # int-k of late QAT (per-row symmetric)
    recurrence_start_step: int = 0  # switch the model's depth recurrence on at this step (0 = not by step)
    recurrence_start_frac: float = 0.0  # ... or at this progress (0 = not by progress)
    # weight averaging; the averaged weights are evaluated, then packed (EMA if on, else SWA)
    ema_decay: float = 0.0  # 0 = off; records 0.997 / 0.9965
    ema_start_step: int = 0
    swa_every: int = 0  # snapshot every N steps while the LR multiplier is below swa_max_lr_scale (0 = off)
    swa_max_lr_scale: float = 0.5
    compile_backend: str = "inductor"  # inductor | aot_eager | eager (the last two: debugging, tests)
    max_recompiles: int = 8  # graphs compiled after warm-up before the run stops


# GPTQ / fit calibration sources and their legality under the challenge rules (TECHNIQUES §4.5.2);
# recorded in every artifact that used one. Validation data is never a source.
CALIBRATION_SOURCES: dict[str, str] = {
    "ar": "legal: the trained model's own samples; no training or validation data is read after training",
    "train": "legal only inside the training time budget: the calibration pass reads training shards and "
             "must finish within train.max_wallclock_seconds (reserve the time), never after it",
}
FORBIDDEN_CALIBRATION: dict[str, str] = {
    "val": "validation data may never be used for calibration (it is the test set)",
    "validation": "validation data may never be used for calibration (it is the test set)",
}


@dataclass
class QuantConfig:
    scheme: str = "int8"  # int8: the baseline's exact export | policy: quant.policy | fit: policy + bits fitted to the budget
    policy: str = "int6"  # a shipped policy (pgolf/quant/policies) or a .toml path; used by schemes policy and fit
    gptq: bool = False  # full-Hessian GPTQ for every int-k matrix with a Hessian (else round-to-nearest)
    gptq_block_size: int = 128
    gptq_damp: float = 0.01  # fraction of mean(diag H) added to the diagonal
    calibration: str = "ar"  # GPTQ / fit calibration tokens: ar (self-generated) | train; see CALIBRATION_SOURCES
    calibration_seqs: int = 64
    calibration_seq_len: int = 0  # 0 = train.train_seq_len
    calibration_temperature: float = 0.8  # sampling temperature of `ar`
    calibration_seed: int = 1337
    # calibration = train under a wallclock cap: training stops this much earlier, so that the calibration pass
    # (reading training shards, collecting Hessians) runs inside train.max_wallclock_seconds
    calibration_reserve_seconds: float = 0.0
    prune_fraction: float = 0.0  # zero this fraction of smallest-|w| entries of each int-k matrix first
    fit_bits: str = "5,6,7,8"  # candidate widths of scheme fit
    codec: str = "zlib"
    codec_level: int = -1  # -1 = the codec's default (zlib 9, as the baseline)
    transform: str = "none"  # payload transform before the codec: none | byteplane | bitpack | auto
    budget_bytes: int = 16_000_000  # the cap: code + artifact bytes
    budget_margin: int = 0  # scheme fit aims at budget_bytes − budget_margin


@dataclass
class EvalConfig:
    """Scoring stages. Defaults keep the baseline: one plain pass at train_seq_len, nothing else.

    Stages run in order, each from the same weights: plain → sliding (stride > 0) → + TTT
    (ttt != off) → + SLOT (slot != off). Record values are the defaults of the technique knobs.
    """

    val_batch_size: int = 524_288
    val_max_tokens: int = 0  # score only a declared prefix of the val stream (0 = full split)
    context: int = 0  # window length for sliding/TTT/SLOT scoring (0 = train.train_seq_len)
    stride: int = 0  # sliding-window stride (0 = no sliding stage; the records use 64)
    batch_seqs: int = 32  # windows per forward pass and rank
    max_eval_seconds: float = 0.0  # per stage: stop cleanly after this long and report the scored part (0 = no cap)
    # score-first test-time training (TECHNIQUES §4.25.1-4.25.4)
    ttt: str = "off"  # off | full | lora | phased
    ttt_chunk_tokens: int = 32_768  # full TTT and phased global SGD: tokens per score-then-train chunk
    ttt_lr: float = 0.005
    ttt_momentum: float = 0.9
    ttt_epochs: int = 3
    ttt_batch_seqs: int = 32  # training sequences per step and rank
    ttt_grad_clip: float = 1.0  # 0 disables clipping
    ttt_freeze_blocks: int = 0  # first N blocks stay frozen (num_layers freezes every block)
    ttt_lora_rank: int = 80
    ttt_lora_alpha: float = 144.0
    ttt_lora_targets: str = "q,k,v,o,mlp,head"
    ttt_lora_chunk: int = 48  # predictions per score-then-step chunk inside a document
    ttt_lora_docs: int = 64  # documents adapted in parallel (one adapter set each)
    ttt_lora_lr: float = 1e-4
    ttt_lora_beta2: float = 0.99
    ttt_lora_weight_decay: float = 0.5
    ttt_lora_warm_a: bool = True  # keep A (not B) across document batches
    ttt_bos_id: int = 1  # document delimiter for LoRA/phased TTT
    ttt_phases: int = 3  # phased TTT: global SGD passes over the scored document prefix
    ttt_phase_docs: int = 2_500  # phased TTT: documents in the prefix the phases cover
    ttt_phase_lr: float = 0.001
    # SLOT (TECHNIQUES §4.25.5): a delta on the last hidden state fitted per batch with AdamW
    slot: str = "off"  # off | context (fits only already-scored context: compliant) | published (PR #1176: not)
    slot_steps: int = 8
    slot_lr: float = 0.005
    slot_weight_decay: float = 1e-8
    slot_eps: float = 1e-5


@dataclass
class RunConfig:
    run_id: str = ""  # empty: a fresh id is generated
    seed: int = 1337
    out_dir: str = "runs"
    preset: str = ""


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


# The official train_gpt.py environment variables and the field each one sets.
ENV_VARS: dict[str, str] = {
    "DATA_PATH": "data.dataset",
    "TOKENIZER_PATH": "data.tokenizer",
    "RUN_ID": "run.run_id",
    "SEED": "run.seed",
    "VAL_BATCH_SIZE": "eval.val_batch_size",
    "VAL_LOSS_EVERY": "train.val_loss_every",
    "TRAIN_LOG_EVERY": "train.train_log_every",
    "ITERATIONS": "train.iterations",
    "WARMDOWN_ITERS": "train.warmdown_iters",
    "WARMUP_STEPS": "train.warmup_steps",
    "TRAIN_BATCH_TOKENS": "train.train_batch_tokens",
    "TRAIN_SEQ_LEN": "train.train_seq_len",
    "MAX_WALLCLOCK_SECONDS": "train.max_wallclock_seconds",
    "QK_GAIN_INIT": "model.qk_gain_init",
    "VOCAB_SIZE": "model.vocab_size",
    "NUM_LAYERS": "model.num_layers",
    "NUM_KV_HEADS": "model.num_kv_heads",
    "MODEL_DIM": "model.model_dim",
    "NUM_HEADS": "model.num_heads",
    "MLP_MULT": "model.mlp_mult",
    "TIE_EMBEDDINGS": "model.tie_embeddings",
    "ROPE_BASE": "model.rope_base",
    "LOGIT_SOFTCAP": "model.logit_softcap",
    "EMBED_LR": "optim.embed_lr",
    "HEAD_LR": "optim.head_lr",
    "TIED_EMBED_LR": "optim.tied_embed_lr",
    "TIED_EMBED_INIT_STD": "model.tied_embed_init_std",
    "MATRIX_LR": "optim.matrix_lr",
    "SCALAR_LR": "optim.scalar_lr",
    "MUON_MOMENTUM": "optim.muon_momentum",
    "MUON_BACKEND_STEPS": "optim.muon_backend_steps",
    "MUON_MOMENTUM_WARMUP_START": "optim.muon_momentum_warmup_start",
    "MUON_MOMENTUM_WARMUP_STEPS": "optim.muon_momentum_warmup_steps",
    "BETA1": "optim.beta1",
    "BETA2": "optim.beta2",
    "ADAM_EPS": "optim.adam_eps",
    "GRAD_CLIP_NORM": "optim.grad_clip_norm",
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "train.device": ("auto", "cpu", "cuda"),
    "train.dtype": ("auto", "bf16", "fp32"),
    "train.compile": ("auto", "on", "off"),
    "optim.muon_ns_dtype": ("auto", "bf16", "fp32"),
    "optim.muon_impl": ("round_robin", "parallel"),
    "optim.muon_ns_variant": ("classic", "polar_express"),
    "train.compile_backend": ("inductor", "aot_eager", "eager"),
    "quant.scheme": ("int8", "policy", "fit"),
    "model.activation": ("relu2", "leaky_relu2"),
    "model.attn_gate": ("off", "dense", "sparse", "out"),
    "model.smear_gate": ("off", "v1", "v2"),
    "model.parallel_residual": ("off", "record", "proteus", "pr1204"),
    "model.skip_lanes": ("attn", "both"),
    "model.lane_merge": ("sigmoid", "linear"),
    "model.recur_form": ("segment", "inplace"),
    "quant.codec": ("zlib", "zstd", "lzma", "brotli", "auto"),
    "data.loader": ("stream", "doc_aligned", "coprime"),
    "eval.ttt": ("off", "full", "lora", "phased"),
    "eval.slot": ("off", "context", "published"),
    "quant.transform": ("none", "byteplane", "bitpack", "auto"),
}


# Where LoRA TTT can attach adapters (pgolf.evaluate.lora maps each to model modules).
LORA_TARGETS: tuple[str, ...] = ("q", "k", "v", "o", "mlp", "head")


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _field_type(section: str, key: str) -> type:
    cls = _section_types()[section]
    return get_type_hints(cls)[key]


def _split_key(dotted: str, origin: str) -> tuple[str, str]:
    section, _, key = dotted.partition(".")
    sections = _section_types()
    if section not in sections or not key:
        raise ConfigError(
            f"unknown config key '{dotted}' ({origin}): keys look like section.key with section one of "
            f"{', '.join(sections)}"
        )
    known = {f.name for f in fields(sections[section])}
    if key not in known:
        raise ConfigError(f"unknown config key '{dotted}' ({origin}): valid keys in [{section}] are {', '.join(sorted(known))}")
    return section, key


def _coerce(value: Any, typ: type, dotted: str, origin: str) -> Any:
    """Check a TOML value, or parse a string from the environment / --set, against the field type."""
    if isinstance(value, str) and typ is not str:
        return _parse_string(value, typ, dotted, origin)
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key '{dotted}' ({origin}) must be {typ.__name__}, got {value!r}")


def _parse_string(text: str, typ: type, dotted: str, origin: str) -> Any:
    raw = text.strip()
    try:
        if typ is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ is int:
            number = float(raw)
            if not number.is_integer():
                raise ValueError(raw)
            return int(number)
        if typ is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"config key '{dotted}' ({origin}) must be {typ.__name__}, got {text!r}") from None
    raise ConfigError(f"config key '{dotted}' ({origin}) has unsupported type {typ}")


def _apply(cfg: Config, dotted: str, value: Any, origin: str) -> None:
    section, key = _split_key(dotted, origin)
    typed = _coerce(value, _field_type(section, key), dotted, origin)
    setattr(getattr(cfg, section), key, typed)


def _apply_table(cfg: Config, table: Mapping[str, Any], origin: str) -> None:
    for section, entries in table.items():
        if not isinstance(entries, Mapping):
            raise ConfigError(f"config key '{section}' ({origin}) must be a [section] table, got {entries!r}")
        for key, value in entries.items():
            _apply(cfg, f"{section}.{key}", value, origin)


def preset_names() -> list[str]:
    folder = resources.files("pgolf") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_preset(name: str) -> dict[str, Any]:
    path = resources.files("pgolf") / "presets" / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}': available presets are {', '.join(preset_names())}")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def read_toml_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist: pass an existing TOML file to --config")
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} is not valid TOML ({exc}): fix the syntax") from None


def load_config(
    preset: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    world_size: int = 1,
    base: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve a config: defaults < preset < base < file < environment < overrides, then validate it.

    `base` is a saved config (an artifact's or a run's) that evaluation starts from.
    """
    cfg = Config()
    if preset:
        _apply_table(cfg, read_preset(preset), f"preset {preset}")
        cfg.run.preset = preset
    if base is not None:
        _apply_table(cfg, base, "saved config")
    if config_file is not None:
        _apply_table(cfg, read_toml_file(config_file), f"file {config_file}")
    environ = os.environ if env is None else env
    for name, dotted in ENV_VARS.items():
        if name in environ:
            _apply(cfg, dotted, environ[name], f"environment {name}")
    for item in overrides:
        dotted, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        _apply(cfg, dotted.strip(), value, "--set")
    validate(cfg, world_size=world_size)
    return cfg


def config_from_dict(table: Mapping[str, Any], origin: str = "saved config") -> Config:
    """Rebuild a config saved by a run (its config.toml), validating every key."""
    cfg = Config()
    _apply_table(cfg, table, origin)
    validate(cfg)
    return cfg


def resolve_grad_accum(cfg: Config, world_size: int) -> int:
    """The baseline splits 8 micro-batches over the ranks; an explicit value wins."""
    if cfg.train.grad_accum_steps > 0:
        return cfg.train.grad_accum_steps
    if 8 % world_size != 0:
        raise ConfigError(
            f"train.grad_accum_steps=0 means 8 // world_size, but world size {world_size} does not divide 8: "
            "set train.grad_accum_steps explicitly"
        )
    return 8 // world_size


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: Config, world_size: int = 1) -> None:
    """Reject impossible combinations, naming the key to change."""
    m, t, o = cfg.model, cfg.train, cfg.optim
    for dotted, choices in _CHOICES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        _require(value in choices, dotted, f"must be one of {', '.join(choices)}, got {value!r}")
    for key in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads"):
        _require(getattr(m, key) > 0, f"model.{key}", "must be positive")
    _require(m.vocab_size <= 65536, "model.vocab_size", "must be ≤ 65,536 (tokens are stored as uint16)")
    _require(m.model_dim % m.num_heads == 0, "model.model_dim",
             f"{m.model_dim} is not divisible by model.num_heads={m.num_heads}")
    _require(m.num_heads % m.num_kv_heads == 0, "model.num_heads",
             f"{m.num_heads} is not a multiple of model.num_kv_heads={m.num_kv_heads}")
    _require((m.model_dim // m.num_heads) % 2 == 0, "model.model_dim",
             "head dim (model_dim / num_heads) must be even for RoPE")
    _require(m.mlp_mult > 0 and float(m.mlp_mult * m.model_dim).is_integer(), "model.mlp_mult",
             "must be positive and make mlp_mult × model_dim an integer")
    _require(m.logit_softcap > 0, "model.logit_softcap", "must be > 0")
    _require(m.tied_embed_init_std > 0, "model.tied_embed_init_std", "must be > 0")
    for key in ("embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr"):
        value = getattr(o, key)
        _require(math.isfinite(value) and value > 0, f"optim.{key}", f"must be a positive learning rate, got {value}")
    _require(0 <= o.muon_momentum < 1, "optim.muon_momentum", "must be in [0, 1)")
    _require(0 <= o.muon_momentum_warmup_start < 1, "optim.muon_momentum_warmup_start", "must be in [0, 1)")
    _require(o.muon_backend_steps > 0, "optim.muon_backend_steps", "must be positive")
    _require(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "optim.beta1", "Adam betas must be in [0, 1)")
    _require(o.adam_eps > 0, "optim.adam_eps", "must be > 0")
    _require(o.grad_clip_norm >= 0, "optim.grad_clip_norm", "must be ≥ 0 (0 disables clipping)")
    _require(t.iterations >= 0, "train.iterations", "must be ≥ 0 (0 = no step cap; needs a wallclock cap)")
    _require(t.max_wallclock_seconds >= 0, "train.max_wallclock_seconds", "must be ≥ 0 (0 disables the cap)")
    _require(t.train_seq_len > 0, "train.train_seq_len", "must be positive")
    _require(t.warmup_steps >= 0 and t.warmdown_iters >= 0, "train.warmup_steps", "warmup/warmdown must be ≥ 0")
    _require(t.checkpoint_every >= 0, "train.checkpoint_every", "must be ≥ 0")
    accum = resolve_grad_accum(cfg, world_size)
    per_step = t.train_seq_len * world_size * accum
    _require(t.train_batch_tokens > 0 and t.train_batch_tokens % per_step == 0, "train.train_batch_tokens",
             f"{t.train_batch_tokens} is not divisible by train_seq_len × world_size × grad_accum_steps = "
             f"{t.train_seq_len} × {world_size} × {accum} = {per_step}")
    _require(cfg.eval.val_batch_size >= t.train_seq_len * world_size, "eval.val_batch_size",
             f"must hold at least one sequence per rank (≥ {t.train_seq_len * world_size})")
    _require(cfg.eval.val_max_tokens >= 0, "eval.val_max_tokens", "must be ≥ 0 (0 = full split)")
    _require(cfg.data.train_shards >= 0, "data.train_shards", "must be ≥ 0 (0 = all)")
    _validate_data(cfg)
    _validate_eval(cfg)
    _validate_proxy(cfg, world_size)
    _validate_quant(cfg)
    _validate_training_dynamics(cfg)
    _validate_model_techniques(cfg)


def _validate_data(cfg: Config) -> None:
    d = cfg.data
    _require(d.expected_train_shards >= 0, "data.expected_train_shards", "must be ≥ 0 (0 = no check)")


def eval_context(cfg: Config) -> int:
    """Window length of sliding/TTT/SLOT scoring."""
    return cfg.eval.context or cfg.train.train_seq_len


def _validate_eval(cfg: Config) -> None:
    e = cfg.eval
    _require(e.context >= 0, "eval.context", "must be ≥ 0 (0 = train.train_seq_len)")
    context = eval_context(cfg)
    _require(0 <= e.stride <= context, "eval.stride",
             f"must be between 0 (no sliding stage) and the window length eval.context={context}, got {e.stride}")
    _require(e.batch_seqs > 0, "eval.batch_seqs", "must be positive")
    _require(e.max_eval_seconds >= 0, "eval.max_eval_seconds", "must be ≥ 0 (0 = no cap)")
    _require(e.ttt_chunk_tokens > 0, "eval.ttt_chunk_tokens", f"must be positive, got {e.ttt_chunk_tokens}")
    for key in ("ttt_lr", "ttt_lora_lr", "ttt_phase_lr", "slot_lr"):
        value = getattr(e, key)
        _require(math.isfinite(value) and value > 0, f"eval.{key}", f"must be a positive learning rate, got {value}")
    _require(0 <= e.ttt_momentum < 1, "eval.ttt_momentum", "must be in [0, 1)")
    _require(0 <= e.ttt_lora_beta2 < 1, "eval.ttt_lora_beta2", "must be in [0, 1)")
    for key in ("ttt_epochs", "ttt_batch_seqs", "ttt_lora_rank", "ttt_lora_chunk", "ttt_lora_docs", "ttt_phases",
                "ttt_phase_docs", "slot_steps"):
        _require(getattr(e, key) > 0, f"eval.{key}", f"must be positive, got {getattr(e, key)}")
    for key in ("ttt_grad_clip", "ttt_lora_weight_decay", "slot_weight_decay"):
        _require(getattr(e, key) >= 0, f"eval.{key}", "must be ≥ 0")
    _require(e.ttt_lora_alpha > 0, "eval.ttt_lora_alpha", "must be > 0")
    _require(e.slot_eps > 0, "eval.slot_eps", "must be > 0")
    _require(0 <= e.ttt_freeze_blocks <= cfg.model.num_layers, "eval.ttt_freeze_blocks",
             f"must be between 0 and model.num_layers={cfg.model.num_layers}")
    _require(e.ttt_lora_chunk <= context, "eval.ttt_lora_chunk",
             f"must be ≤ the window length eval.context={context}, got {e.ttt_lora_chunk}")
    _require(0 <= e.ttt_bos_id < cfg.model.vocab_size, "eval.ttt_bos_id", "must be a token id of the vocabulary")
    targets = [t.strip() for t in e.ttt_lora_targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in LORA_TARGETS]
    _require(bool(targets) and not unknown, "eval.ttt_lora_targets",
             f"must be a comma-separated subset of {','.join(LORA_TARGETS)}, got {e.ttt_lora_targets!r}")
    _require(e.slot == "off" or e.ttt in ("off", "full"), "eval.slot",
             f"SLOT composes with sliding windows and full TTT only, not with eval.ttt={e.ttt!r}")


def _validate_proxy(cfg: Config, world_size: int) -> None:
    target = cfg.train.proxy_world_size
    if target == 0:
        return
    _require(target > 0, "train.proxy_world_size", "must be ≥ 0 (0 = off)")
    _require(target % world_size == 0, "train.proxy_world_size",
             f"{target} is not a multiple of the world size {world_size}: emulate a GPU count this run divides")
    resolve_grad_accum(cfg, target)  # the emulated run's own accumulation must be defined


def reads_train_calibration(cfg: Config) -> bool:
    """Whether packing reads training data (GPTQ or fit calibrated on training shards)."""
    return cfg.quant.calibration == "train" and (cfg.quant.gptq or cfg.quant.scheme == "fit")


def parse_fit_bits(text: str) -> tuple[int, ...]:
    """'5,6,7,8' → (8, 7, 6, 5); ConfigError unless every entry is an integer in 4..8."""
    try:
        bits = tuple(sorted({int(part) for part in text.split(",") if part.strip()}, reverse=True))
    except ValueError:
        bits = ()
    _require(bool(bits) and all(4 <= b <= 8 for b in bits), "quant.fit_bits",
             f"must be comma-separated bit widths in 4..8 (e.g. 5,6,7,8), got {text!r}")
    return bits


def _validate_quant(cfg: Config) -> None:
    q = cfg.quant
    source = q.calibration
    _require(source not in FORBIDDEN_CALIBRATION, "quant.calibration", FORBIDDEN_CALIBRATION.get(source, ""))
    _require(source in CALIBRATION_SOURCES, "quant.calibration",
             f"must be one of {', '.join(CALIBRATION_SOURCES)} (never validation data), got {source!r}")
    _require(q.calibration_seqs > 0, "quant.calibration_seqs", "must be positive")
    _require(q.calibration_seq_len >= 0, "quant.calibration_seq_len", "must be ≥ 0 (0 = train.train_seq_len)")
    _require(q.calibration_temperature > 0, "quant.calibration_temperature", "must be > 0")
    cap = cfg.train.max_wallclock_seconds
    _require(q.calibration_reserve_seconds >= 0 and (cap <= 0 or q.calibration_reserve_seconds < cap),
             "quant.calibration_reserve_seconds",
             f"must be ≥ 0 and below train.max_wallclock_seconds={cap}, got {q.calibration_reserve_seconds}")
    _require(q.gptq_block_size > 0, "quant.gptq_block_size", "must be positive")
    _require(0 < q.gptq_damp < 1, "quant.gptq_damp", "must be in (0, 1)")
    _require(0 <= q.prune_fraction < 1, "quant.prune_fraction", "must be in [0, 1)")
    _require(q.budget_bytes > 0, "quant.budget_bytes", "must be positive")
    _require(0 <= q.budget_margin < q.budget_bytes, "quant.budget_margin", "must be in [0, quant.budget_bytes)")
    parse_fit_bits(q.fit_bits)
    _require(q.scheme != "int8" or not q.gptq, "quant.gptq",
             "applies to int-k policies: set quant.scheme=policy (or fit) to use GPTQ")
    if q.scheme != "int8":
        from pgolf.quant.policy import load_policy  # lazy: config stays import-light

        load_policy(q.policy)


def _in_unit(value: float, low_open: bool = False, high_open: bool = False) -> bool:
    above = value > 0 if low_open else value >= 0
    below = value < 1 if high_open else value <= 1
    return math.isfinite(value) and above and below


def _validate_training_dynamics(cfg: Config) -> None:
    """Muon variants, schedules, averaging, late QAT and compile limits (issue 4)."""
    t, o = cfg.train, cfg.optim
    _require(t.iterations > 0 or t.max_wallclock_seconds > 0, "train.iterations",
             "the schedule can never end: set train.iterations or train.max_wallclock_seconds")
    _require(o.muon_ns_variant != "polar_express" or o.muon_backend_steps <= 5, "optim.muon_backend_steps",
             f"polar_express defines 5 Newton–Schulz iterations, got {o.muon_backend_steps}")
    for key in ("muon_weight_decay", "embed_weight_decay", "adam_weight_decay"):
        value = getattr(o, key)
        _require(math.isfinite(value) and value >= 0, f"optim.{key}", f"must be ≥ 0 (0 = no decay), got {value}")
    _require(_in_unit(o.wd_taper_start_frac), "optim.wd_taper_start_frac", "must be in [0, 1] (1 = no taper)")
    _require(_in_unit(o.wd_taper_final_mult), "optim.wd_taper_final_mult", "must be in [0, 1]")
    _require(_in_unit(t.warmdown_frac), "train.warmdown_frac", "must be in [0, 1] (0 = use train.warmdown_iters)")
    _require(_in_unit(t.min_lr_scale, high_open=True), "train.min_lr_scale", "must be in [0, 1)")
    _require(_in_unit(t.late_qat_threshold), "train.late_qat_threshold", "must be in [0, 1] (0 = off)")
    _require(t.late_qat_threshold == 0 or t.min_lr_scale < t.late_qat_threshold, "train.late_qat_threshold",
             f"late QAT would never switch on: the LR multiplier never falls below train.min_lr_scale={t.min_lr_scale}")
    _require(2 <= t.qat_bits <= 8, "train.qat_bits",
             f"per-row int-k fake quantization supports 2..8 bits, got {t.qat_bits}")
    _require(t.ema_decay == 0 or 0 < t.ema_decay < 1, "train.ema_decay",
             f"must be in (0, 1) (0 = EMA off), got {t.ema_decay}")
    _require(t.ema_start_step >= 0, "train.ema_start_step", "must be ≥ 0")
    _require(t.swa_every >= 0, "train.swa_every", "must be ≥ 0 (0 = SWA off)")
    _require(_in_unit(t.swa_max_lr_scale, low_open=True), "train.swa_max_lr_scale", "must be in (0, 1]")
    _require(t.recurrence_start_step >= 0, "train.recurrence_start_step", "must be ≥ 0 (0 = not by step)")
    _require(_in_unit(t.recurrence_start_frac, high_open=True), "train.recurrence_start_frac",
             "must be in [0, 1) (0 = not by progress)")
    _require(t.max_recompiles >= 0, "train.max_recompiles", "must be ≥ 0")


def parse_layer_list(text: str) -> list[int]:
    """"9,10" → [9, 10]; "" → []. Raises ValueError on anything else."""
    return [int(part) for part in text.replace(" ", "").split(",") if part]


def _validate_model_techniques(cfg: Config) -> None:
    m, t = cfg.model, cfg.train
    head_dim = m.model_dim // m.num_heads
    _require(m.bos_id >= 0 and m.bos_id < m.vocab_size, "model.bos_id", f"must be a token id below {m.vocab_size}")
    _require(m.leaky_slope >= 0, "model.leaky_slope", "must be ≥ 0")
    _require(m.rope_train_seq_len >= 0, "model.rope_train_seq_len", "must be ≥ 0 (0 = plain RoPE)")
    _require((m.rope_dims or head_dim) > 2 or m.rope_train_seq_len == 0, "model.rope_train_seq_len",
             "NTK rescaling needs more than 2 rotated dims")
    _require(not m.attn_gate_bias or m.attn_gate == "dense", "model.attn_gate_bias", "needs model.attn_gate = \"dense\"")
    _require(not m.vr_lambda_first_layer or m.value_residual, "model.vr_lambda_first_layer",
             "needs model.value_residual = true")
    _require(m.rope_dims >= 0 and m.rope_dims % 2 == 0 and m.rope_dims <= head_dim, "model.rope_dims",
             f"must be even and ≤ the head dim {head_dim} (0 = the whole head), got {m.rope_dims}")
    _require(-1 <= m.xsa_last_n <= m.num_layers, "model.xsa_last_n",
             f"must be -1 (all), 0 (off) or at most model.num_layers={m.num_layers}, got {m.xsa_last_n}")
    if m.attn_gate in ("sparse", "out"):
        _require(0 < m.attn_gate_window <= m.model_dim, "model.attn_gate_window",
                 f"must be in 1..model_dim={m.model_dim}")
    if m.smear_gate == "v2":
        _require(0 < m.smear_window <= m.model_dim, "model.smear_window", f"must be in 1..model_dim={m.model_dim}")
    _require(m.bigram_vocab == 0 or m.bigram_vocab >= 2, "model.bigram_vocab",
             "must be 0 (off) or ≥ 2 (one bucket is reserved for positions without a predecessor)")
    _require(m.bigram_dim > 0, "model.bigram_dim", "must be positive")
    _require(not m.trigram or m.bigram_vocab > 0, "model.trigram", "needs model.bigram_vocab > 0 (shared table)")
    try:
        ve_layers = parse_layer_list(m.value_embed_layers)
    except ValueError:
        raise ConfigError(f"model.value_embed_layers: must be comma-separated layer indices like \"9,10\", "
                          f"got {m.value_embed_layers!r}") from None
    _require(all(0 <= i < m.num_layers for i in ve_layers) and len(set(ve_layers)) == len(ve_layers),
             "model.value_embed_layers", f"layers must be distinct and in 0..{m.num_layers - 1}, got {ve_layers}")
    _require(m.value_embed_dim > 0, "model.value_embed_dim", "must be positive")
    _require(not m.skip_gates or m.unet_skips, "model.skip_gates", "needs model.unet_skips = true")
    _require(m.recur_loops >= 0, "model.recur_loops", "must be ≥ 0 (0 = off)")
    _require(not m.recur_untie_mlp or m.recur_loops > 0, "model.recur_untie_mlp",
             "needs depth recurrence (model.recur_loops > 0)")
    _require(math.isfinite(m.lane_merge_init), "model.lane_merge_init", "must be a finite number")
    if m.recur_loops > 0:
        _require(0 <= m.recur_start <= m.recur_end < m.num_layers, "model.recur_start",
                 f"recurrence range {m.recur_start}..{m.recur_end} must lie in 0..{m.num_layers - 1} "
                 "with recur_start ≤ recur_end")
    if m.parallel_residual != "off":
        _require(m.num_layers // 2 <= m.parallel_start < m.num_layers, "model.parallel_start",
                 f"must be in {m.num_layers // 2}..{m.num_layers - 1}: parallel lanes start in the decoder half "
                 f"and at or before the last layer, got {m.parallel_start}")
        _require(m.recur_loops == 0 or m.parallel_start > m.recur_end, "model.parallel_start",
                 f"must be after the recurrence range (> model.recur_end={m.recur_end})")
    _require(t.recurrence_start_step == 0 or t.recurrence_start_frac == 0.0, "train.recurrence_start_frac",
             "set either train.recurrence_start_step or train.recurrence_start_frac, not both")
