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
    parallel_residual: str = "off"  # off | record | proteus
    parallel_start: int = 0  # first physical layer with parallel lanes
    recur_start: int = 0  # depth recurrence: physical layers recur_start..recur_end (inclusive) ...
    recur_end: int = 0
    recur_loops: int = 0  # ... run this many extra times (0 = off)


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


@dataclass
class TrainConfig:
    iterations: int = 20000
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
    # When depth recurrence (model.recur_*) switches on; both 0 = from the first step. Models are built
    # with recurrence active (as evaluation needs it); the training schedule turns it off before this
    # point through GPT.set_recurrence_active.
    recur_start_step: int = 0
    recur_start_frac: float = 0.0  # fraction of the training budget (wallclock progress)


@dataclass
class QuantConfig:
    scheme: str = "int8"
    codec: str = "zlib"
    codec_level: int = -1  # -1 = the codec's default (zlib 9, as the baseline)


@dataclass
class EvalConfig:
    val_batch_size: int = 524_288
    val_max_tokens: int = 0  # score only a declared prefix of the val stream (0 = full split)


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
    "model.activation": ("relu2", "leaky_relu2"),
    "model.attn_gate": ("off", "dense", "sparse", "out"),
    "model.smear_gate": ("off", "v1", "v2"),
    "model.parallel_residual": ("off", "record", "proteus"),
    "quant.scheme": ("int8",),
    "quant.codec": ("zlib", "zstd", "lzma", "brotli", "auto"),
}


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
    _require(t.iterations > 0, "train.iterations", "must be positive")
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
    _validate_model_techniques(cfg)


def parse_layer_list(text: str) -> list[int]:
    """"9,10" → [9, 10]; "" → []. Raises ValueError on anything else."""
    return [int(part) for part in text.replace(" ", "").split(",") if part]


def _validate_model_techniques(cfg: Config) -> None:
    m, t = cfg.model, cfg.train
    head_dim = m.model_dim // m.num_heads
    _require(m.bos_id >= 0 and m.bos_id < m.vocab_size, "model.bos_id", f"must be a token id below {m.vocab_size}")
    _require(m.leaky_slope >= 0, "model.leaky_slope", "must be ≥ 0")
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
    _require(t.recur_start_step >= 0, "train.recur_start_step", "must be ≥ 0")
    _require(0.0 <= t.recur_start_frac < 1.0, "train.recur_start_frac", "must be in [0, 1)")
    _require(t.recur_start_step == 0 or t.recur_start_frac == 0.0, "train.recur_start_frac",
             "set either train.recur_start_step or train.recur_start_frac, not both")
