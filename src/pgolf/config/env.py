"""Environment variables → config fields.

The official `train_gpt.py` reads its hyperparameters from the environment; so do the record scripts,
under more names. Every such name that means a pgolf field maps onto it here, so a record's launch line
(`XSA_LAST_N=4 ROPE_DIMS=16 ...`) configures the same run. Record names with no pgolf field are listed
too: setting one warns, naming it, instead of being silently ignored. This module is the only place in
pgolf that reads config from the environment.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

# The official baseline's environment variables and the field each one sets.
OFFICIAL_ENV_VARS: dict[str, str] = {
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

# Names of the record scripts (records/*/train_gpt.py) that mean a pgolf field.
RECORD_ENV_VARS: dict[str, str] = {
    "XSA_LAST_N": "model.xsa_last_n",
    "ROPE_DIMS": "model.rope_dims",
    "LN_SCALE": "model.ln_scale",
    "NEGATIVE_SLOPE": "model.leaky_slope",
    "ACTIVATION_NEG_SLOPE": "model.leaky_slope",
    "GATE_WINDOW": "model.attn_gate_window",
    "SPARSE_ATTN_GATE_SCALE": "model.attn_gate_scale",
    "BIGRAM_VOCAB_SIZE": "model.bigram_vocab",
    "BIGRAM_DIM": "model.bigram_dim",
    "VE_LAYERS": "model.value_embed_layers",
    "VE_DIM": "model.value_embed_dim",
    "VALUE_RESIDUAL": "model.value_residual",
    "USE_VALUE_RESIDUAL": "model.value_residual",
    "SKIP_GATES_ENABLED": "model.skip_gates",
    "PARALLEL_START_LAYER": "model.parallel_start",
    "LOOP_START": "model.recur_start",
    "LOOP_END": "model.recur_end",
    "NUM_LOOPS": "model.recur_loops",
    "MUON_WD": "optim.muon_weight_decay",
    "EMBED_WD": "optim.embed_weight_decay",
    "ADAM_WD": "optim.adam_weight_decay",
    "MUON_ROW_NORMALIZE": "optim.muon_row_normalize",
    "WARMDOWN_FRAC": "train.warmdown_frac",
    "MIN_LR": "train.min_lr_scale",
    "LATE_QAT_THRESHOLD": "train.late_qat_threshold",
    "EMA_DECAY": "train.ema_decay",
    "SWA_EVERY": "train.swa_every",
    "RECUR_START_STEP": "train.recurrence_start_step",
    "ENABLE_LOOPING_AT": "train.recurrence_start_frac",
    "USE_GPTQ": "quant.gptq",
    "GPTQ_ENABLED": "quant.gptq",
    "GPTQ_CALIB_SAMPLES": "quant.calibration_seqs",
    "GPTQ_TEMPERATURE": "quant.calibration_temperature",
    "GPTQ_RESERVE_SECONDS": "quant.calibration_reserve_seconds",
    "COMPRESSOR": "quant.codec",
    "EVAL_SEQ_LEN": "eval.context",
    "EVAL_STRIDE": "eval.stride",
    "VAL_TOKENS_LIMIT": "eval.val_max_tokens",
    "TTT_CHUNK_TOKENS": "eval.ttt_chunk_tokens",
    "TTT_LR": "eval.ttt_lr",
    "TTT_MOMENTUM": "eval.ttt_momentum",
    "TTT_EPOCHS": "eval.ttt_epochs",
    "TTT_BATCH_SEQS": "eval.ttt_batch_seqs",
    "TTT_GRAD_CLIP": "eval.ttt_grad_clip",
    "TTT_FREEZE_BLOCKS": "eval.ttt_freeze_blocks",
    "TTT_LORA_RANK": "eval.ttt_lora_rank",
    "TTT_LORA_ALPHA": "eval.ttt_lora_alpha",
    "TTT_LORA_LR": "eval.ttt_lora_lr",
    "TTT_CHUNK_SIZE": "eval.ttt_lora_chunk",
    "TTT_BETA2": "eval.ttt_lora_beta2",
    "TTT_WEIGHT_DECAY": "eval.ttt_lora_weight_decay",
    "TTT_WARM_START_A": "eval.ttt_lora_warm_a",
    "PHASED_TTT_NUM_PHASES": "eval.ttt_phases",
    "PHASED_TTT_PREFIX_DOCS": "eval.ttt_phase_docs",
    "GLOBAL_TTT_LR": "eval.ttt_phase_lr",
    "SLOT_STEPS": "eval.slot_steps",
    "SLOT_LR": "eval.slot_lr",
}

ENV_VARS: dict[str, str] = {**OFFICIAL_ENV_VARS, **RECORD_ENV_VARS}

# Launcher variables (torchrun) read by pgolf.train.distributed, not config.
RUNTIME_ENV_VARS: tuple[str, ...] = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

# Names the record scripts read that have no pgolf field (techniques pgolf lacks, or flags whose effect a
# pgolf field expresses differently, e.g. SWA_ENABLED → train.swa_every > 0).
UNMAPPED_RECORD_ENV_VARS: tuple[str, ...] = (
    "ACTIVATION_MODE", "ARTIFACT_DIR", "ASYMMETRIC_SQUARE_INIT", "ATTN_CLIP_SIGMAS", "ATTN_OUT_GATE_ENABLED",
    "ATTN_OUT_GATE_SRC", "BANK_SPLIT", "CANON_AC_LAYERS", "CASEOPS_ENABLED", "COMPLEMENT_ALPHA",
    "COMPLEMENT_ENABLED", "CONTROL_TENSOR_NAME_PATTERNS", "DATA_DIR", "DISABLE_LAYER0_ATTN", "DTG_ENABLED",
    "EMBEDDING_DIM", "EMBED_BITS", "EMBED_CLIP_SIGMAS", "FUSED_CE_ENABLED", "GATED_ATTENTION", "GATED_ATTN_ENABLED",
    "GATED_ATTN_INIT_STD", "GATED_ATTN_QUANT_GATE", "GATED_SQUARE_BETA_INIT", "GLOBAL_TTT_BATCH_SEQS",
    "GLOBAL_TTT_CHUNK_TOKENS", "GLOBAL_TTT_EPOCHS", "GLOBAL_TTT_GRAD_CLIP", "GLOBAL_TTT_MOMENTUM",
    "GLOBAL_TTT_RESPECT_DOC_BOUNDARIES", "GLOBAL_TTT_WARMUP_CHUNKS", "GLOBAL_TTT_WARMUP_START_LR",
    "GPTQ_AR_SELFGEN", "GPTQ_BATCH_SIZE", "GPTQ_CALIBRATION_BATCHES", "GPTQ_RESERVE_MS",
    "INT8_KEEP_FLOAT_FP32_NAME_PATTERNS", "LAWA_ENABLED", "LAWA_FREQ", "LAWA_K", "LQER_ASYM_ENABLED",
    "LQER_ASYM_GROUP", "LQER_ENABLED", "LQER_FACTOR_BITS", "LQER_RANK", "LQER_TOP_K", "MATRIX_BITS",
    "MATRIX_CLIP_SIGMAS", "MATRIX_LR_EARLY", "MATRIX_LR_LATE", "MIXED_QUANT", "MLP_CLIP_SIGMAS", "MTP_LOSS_WEIGHT",
    "MTP_NUM_HEADS", "MUON_BETA2", "NGRAM_ALPHA_MAX", "NGRAM_ALPHA_MIN", "NGRAM_CHUNK_SIZE", "NGRAM_ENABLED",
    "NGRAM_ENTROPY_CENTER", "NGRAM_ENTROPY_SCALE", "NGRAM_LEAVE_ONE_OUT", "NGRAM_MAX_ORDER", "NGRAM_MIN_COUNT",
    "NGRAM_MIN_ORDER", "NGRAM_NUM_BUCKETS", "N_INT6_LAYERS", "PARALLEL_FINAL_LANE", "PARALLEL_RESIDUAL",
    "PARALLEL_START_LAYER_IS_PHYSICAL", "POST_GPTQ_EVAL_ONLY", "PREQUANT_ONLY", "QAT_ENABLED", "QAT_TIME_FRAC",
    "QUANT_CLIP_RANGE", "RECUR_LAYERS", "RECUR_UNTIE_MLP", "REPEAT_UNTIE_MLP", "REPEAT_UNTIE_MLP_LAYERS",
    "ROPE_TRAIN_SEQ_LEN", "ROPE_YARN", "SLIDING_WINDOW_ENABLED", "SLOT_ENABLED", "SMEAR_GATE_ENABLED",
    "SPARSE_ATTN_GATE_ENABLED", "SPARSE_ATTN_GATE_INIT_STD", "SWA_ENABLED", "TOKENIZER_META_PATH",
    "TOKENIZER_META_VALIDATE", "TTT_BATCH_SIZE", "TTT_BETA1", "TTT_ENABLED", "TTT_EVAL_BATCHES", "TTT_EVAL_ONLY",
    "TTT_EVAL_SEQ_LEN", "TTT_GRAD_STEPS", "TTT_K_LORA", "TTT_MLP_LORA", "TTT_OPTIMIZER", "TTT_O_LORA",
    "USE_BIGRAMHASH", "USE_EMA", "USE_GATED_ATTENTION", "USE_LATE_QAT", "USE_SMEARGATE", "USE_TTT",
    "VAL_BATCH_TOKENS", "VAL_DOC_FRACTION", "VE_ENABLED"
)


class UnmappedEnvWarning(UserWarning):
    """A record script's environment variable is set, but pgolf has no field for it."""


def env_assignments(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(section.key, raw value, origin) for every mapped variable that is set, in table order."""
    return [(dotted, environ[name], f"environment {name}") for name, dotted in ENV_VARS.items() if name in environ]


def warn_unmapped(environ: Mapping[str, str]) -> list[str]:
    """Warn once per load about set record variables that pgolf ignores; return their names."""
    ignored = [name for name in UNMAPPED_RECORD_ENV_VARS if name in environ]
    if ignored:
        warnings.warn(f"environment {', '.join(ignored)} set but ignored: these record-script variables have no "
                      "pgolf config field (see `pgolf config show --doc` for the fields; unset them to silence this)",
                      UnmappedEnvWarning, stacklevel=3)
    return ignored
