"""Every check of a resolved config, collected: one pass reports all problems at once.

Each check group reads the config and records `ConfigIssue`s on an `Issues` collector (key, origin,
fix). A group that trips over a value an earlier check already rejected (a zero divisor, say) stops
there; its root cause is already reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection

from pgolf.config.introspect import choices, schema_fields, section_types
from pgolf.config.issues import Issues
from pgolf.config.parsing import eval_context, parse_fit_bits, parse_layer_list, resolve_grad_accum
from pgolf.config.schema import FORBIDDEN_CALIBRATION, LORA_TARGETS, Config

Check = Callable[[Config, int, Issues], None]


def _check_choices(cfg: Config, world_size: int, v: Issues) -> None:
    """Literal fields hold one of their values; calibration never names validation data."""
    source = cfg.quant.calibration
    v.require(source not in FORBIDDEN_CALIBRATION, "quant.calibration", FORBIDDEN_CALIBRATION.get(source, ""))
    for dotted, allowed in choices().items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if dotted not in v.reported_keys():
            v.require(value in allowed, dotted, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _check_model_shape(cfg: Config, world_size: int, v: Issues) -> None:
    m = cfg.model
    for key in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads"):
        v.require(getattr(m, key) > 0, f"model.{key}", "must be positive")
    v.require(m.vocab_size <= 65536, "model.vocab_size", "must be ≤ 65,536 (tokens are stored as uint16)")
    v.require(m.model_dim % m.num_heads == 0, "model.model_dim",
              f"{m.model_dim} is not divisible by model.num_heads={m.num_heads}")
    v.require(m.num_heads % m.num_kv_heads == 0, "model.num_heads",
              f"{m.num_heads} is not a multiple of model.num_kv_heads={m.num_kv_heads}")
    v.require((m.model_dim // m.num_heads) % 2 == 0, "model.model_dim",
              "head dim (model_dim / num_heads) must be even for RoPE")
    v.require(m.mlp_mult > 0 and float(m.mlp_mult * m.model_dim).is_integer(), "model.mlp_mult",
              "must be positive and make mlp_mult × model_dim an integer")
    v.require(m.logit_softcap > 0, "model.logit_softcap", "must be > 0")
    v.require(m.tied_embed_init_std > 0, "model.tied_embed_init_std", "must be > 0")


def _check_optim(cfg: Config, world_size: int, v: Issues) -> None:
    o = cfg.optim
    for key in ("embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr"):
        value = getattr(o, key)
        v.require(math.isfinite(value) and value > 0, f"optim.{key}", f"must be a positive learning rate, got {value}")
    v.require(0 <= o.muon_momentum < 1, "optim.muon_momentum", "must be in [0, 1)")
    v.require(0 <= o.muon_momentum_warmup_start < 1, "optim.muon_momentum_warmup_start", "must be in [0, 1)")
    v.require(o.muon_backend_steps > 0, "optim.muon_backend_steps", "must be positive")
    v.require(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "optim.beta1", "Adam betas must be in [0, 1)")
    v.require(o.adam_eps > 0, "optim.adam_eps", "must be > 0")
    v.require(o.grad_clip_norm >= 0, "optim.grad_clip_norm", "must be ≥ 0 (0 disables clipping)")


def _check_train(cfg: Config, world_size: int, v: Issues) -> None:
    t = cfg.train
    v.require(t.iterations >= 0, "train.iterations", "must be ≥ 0 (0 = no step cap; needs a wallclock cap)")
    v.require(t.max_wallclock_seconds >= 0, "train.max_wallclock_seconds", "must be ≥ 0 (0 disables the cap)")
    v.require(t.train_seq_len > 0, "train.train_seq_len", "must be positive")
    v.require(t.warmup_steps >= 0 and t.warmdown_iters >= 0, "train.warmup_steps", "warmup/warmdown must be ≥ 0")
    v.require(t.checkpoint_every >= 0, "train.checkpoint_every", "must be ≥ 0")
    v.require(cfg.eval.val_max_tokens >= 0, "eval.val_max_tokens", "must be ≥ 0 (0 = full split)")
    v.require(cfg.data.train_shards >= 0, "data.train_shards", "must be ≥ 0 (0 = all)")
    accum = v.call("train.grad_accum_steps", resolve_grad_accum, cfg, world_size)
    if accum is None:
        return
    per_step = t.train_seq_len * world_size * accum
    v.require(t.train_batch_tokens > 0 and t.train_batch_tokens % per_step == 0, "train.train_batch_tokens",
              f"{t.train_batch_tokens} is not divisible by train_seq_len × world_size × grad_accum_steps = "
              f"{t.train_seq_len} × {world_size} × {accum} = {per_step}")
    v.require(cfg.eval.val_batch_size >= t.train_seq_len * world_size, "eval.val_batch_size",
              f"must hold at least one sequence per rank (≥ {t.train_seq_len * world_size})")


def _check_data(cfg: Config, world_size: int, v: Issues) -> None:
    d = cfg.data
    v.require(d.expected_train_shards >= 0, "data.expected_train_shards", "must be ≥ 0 (0 = no check)")


def _check_eval(cfg: Config, world_size: int, v: Issues) -> None:
    e = cfg.eval
    v.require(e.context >= 0, "eval.context", "must be ≥ 0 (0 = train.train_seq_len)")
    context = eval_context(cfg)
    v.require(0 <= e.stride <= context, "eval.stride",
              f"must be between 0 (no sliding stage) and the window length eval.context={context}, got {e.stride}")
    v.require(e.batch_seqs > 0, "eval.batch_seqs", "must be positive")
    v.require(e.max_eval_seconds >= 0, "eval.max_eval_seconds", "must be ≥ 0 (0 = no cap)")
    v.require(e.ttt_chunk_tokens > 0, "eval.ttt_chunk_tokens", f"must be positive, got {e.ttt_chunk_tokens}")
    for key in ("ttt_lr", "ttt_lora_lr", "ttt_phase_lr", "slot_lr"):
        value = getattr(e, key)
        v.require(math.isfinite(value) and value > 0, f"eval.{key}", f"must be a positive learning rate, got {value}")
    v.require(0 <= e.ttt_momentum < 1, "eval.ttt_momentum", "must be in [0, 1)")
    v.require(0 <= e.ttt_lora_beta2 < 1, "eval.ttt_lora_beta2", "must be in [0, 1)")
    for key in ("ttt_epochs", "ttt_batch_seqs", "ttt_lora_rank", "ttt_lora_chunk", "ttt_lora_docs", "ttt_phases",
                "ttt_phase_docs", "slot_steps"):
        v.require(getattr(e, key) > 0, f"eval.{key}", f"must be positive, got {getattr(e, key)}")
    for key in ("ttt_grad_clip", "ttt_lora_weight_decay", "slot_weight_decay"):
        v.require(getattr(e, key) >= 0, f"eval.{key}", "must be ≥ 0")
    v.require(e.ttt_lora_alpha > 0, "eval.ttt_lora_alpha", "must be > 0")
    v.require(e.slot_eps > 0, "eval.slot_eps", "must be > 0")
    v.require(2 <= e.ttt_qat_bits <= 8, "eval.ttt_qat_bits",
              f"per-row int-k fake quantization supports 2..8 bits, got {e.ttt_qat_bits}")
    v.require(0 <= e.ttt_freeze_blocks <= cfg.model.num_layers, "eval.ttt_freeze_blocks",
              f"must be between 0 and model.num_layers={cfg.model.num_layers}")
    v.require(e.ttt_lora_chunk <= context, "eval.ttt_lora_chunk",
              f"must be ≤ the window length eval.context={context}, got {e.ttt_lora_chunk}")
    v.require(0 <= e.ttt_bos_id < cfg.model.vocab_size, "eval.ttt_bos_id", "must be a token id of the vocabulary")
    targets = [t.strip() for t in e.ttt_lora_targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in LORA_TARGETS]
    v.require(bool(targets) and not unknown, "eval.ttt_lora_targets",
              f"must be a comma-separated subset of {','.join(LORA_TARGETS)}, got {e.ttt_lora_targets!r}")
    v.require(e.slot == "off" or e.ttt in ("off", "full"), "eval.slot",
              f"SLOT composes with sliding windows and full TTT only, not with eval.ttt={e.ttt!r}")


def _check_proxy(cfg: Config, world_size: int, v: Issues) -> None:
    target = cfg.train.proxy_world_size
    if target == 0:
        return
    v.require(target > 0, "train.proxy_world_size", "must be ≥ 0 (0 = off)")
    v.require(target % world_size == 0, "train.proxy_world_size",
              f"{target} is not a multiple of the world size {world_size}: emulate a GPU count this run divides")
    v.call("train.grad_accum_steps", resolve_grad_accum, cfg, target)  # the emulated run's own must be defined


def _check_quant(cfg: Config, world_size: int, v: Issues) -> None:
    q = cfg.quant
    v.require(q.calibration_seqs > 0, "quant.calibration_seqs", "must be positive")
    v.require(q.calibration_seq_len >= 0, "quant.calibration_seq_len", "must be ≥ 0 (0 = train.train_seq_len)")
    v.require(q.calibration_temperature > 0, "quant.calibration_temperature", "must be > 0")
    cap = cfg.train.max_wallclock_seconds
    v.require(q.calibration_reserve_seconds >= 0 and (cap <= 0 or q.calibration_reserve_seconds < cap),
              "quant.calibration_reserve_seconds",
              f"must be ≥ 0 and below train.max_wallclock_seconds={cap}, got {q.calibration_reserve_seconds}")
    v.require(q.gptq_block_size > 0, "quant.gptq_block_size", "must be positive")
    v.require(0 < q.gptq_damp < 1, "quant.gptq_damp", "must be in (0, 1)")
    v.require(0 <= q.prune_fraction < 1, "quant.prune_fraction", "must be in [0, 1)")
    v.require(q.budget_bytes > 0, "quant.budget_bytes", "must be positive")
    v.require(0 <= q.budget_margin < q.budget_bytes, "quant.budget_margin", "must be in [0, quant.budget_bytes)")
    v.require(q.lqer_rank >= 0 and q.lqer_top_k >= 0 and q.lqer_group >= 0, "quant.lqer_rank",
              "quant.lqer_rank, lqer_top_k and lqer_group must be ≥ 0")
    v.require(2 <= q.lqer_factor_bits <= 8, "quant.lqer_factor_bits", "must be in 2..8")
    v.require(q.lqer_rank == 0 or q.scheme != "int8", "quant.lqer_rank",
              "LQER corrects int-k policy matrices: set quant.scheme=policy (or fit), or lqer_rank=0")
    v.call("quant.fit_bits", parse_fit_bits, q.fit_bits)
    v.require(q.scheme != "int8" or not q.gptq, "quant.gptq",
              "applies to int-k policies: set quant.scheme=policy (or fit) to use GPTQ")
    if q.scheme != "int8":
        from pgolf.quant.policy import load_policy  # lazy: config stays import-light

        v.call("quant.policy", load_policy, q.policy)


def _in_unit(value: float, low_open: bool = False, high_open: bool = False) -> bool:
    above = value > 0 if low_open else value >= 0
    below = value < 1 if high_open else value <= 1
    return math.isfinite(value) and above and below


def _check_training_dynamics(cfg: Config, world_size: int, v: Issues) -> None:
    """Muon variants, schedules, averaging, late QAT and compile limits (issue 4)."""
    t, o = cfg.train, cfg.optim
    v.require(t.iterations > 0 or t.max_wallclock_seconds > 0, "train.iterations",
              "the schedule can never end: set train.iterations or train.max_wallclock_seconds")
    v.require(o.muon_ns_variant != "polar_express" or o.muon_backend_steps <= 5, "optim.muon_backend_steps",
              f"polar_express defines 5 Newton–Schulz iterations, got {o.muon_backend_steps}")
    for key in ("muon_weight_decay", "embed_weight_decay", "adam_weight_decay"):
        value = getattr(o, key)
        v.require(math.isfinite(value) and value >= 0, f"optim.{key}", f"must be ≥ 0 (0 = no decay), got {value}")
    v.require(o.route_adam_updates >= 1, "optim.route_adam_updates", f"must be ≥ 1, got {o.route_adam_updates}")
    v.require(o.muon_momentum_dtype == "fp32" or o.muon_impl == "parallel", "optim.muon_momentum_dtype",
              "bf16 momentum is an option of optim.muon_impl = \"parallel\"")
    v.require(_in_unit(o.wd_taper_start_frac), "optim.wd_taper_start_frac", "must be in [0, 1] (1 = no taper)")
    v.require(_in_unit(o.wd_taper_final_mult), "optim.wd_taper_final_mult", "must be in [0, 1]")
    v.require(_in_unit(t.warmdown_frac), "train.warmdown_frac", "must be in [0, 1] (0 = use train.warmdown_iters)")
    v.require(_in_unit(t.min_lr_scale, high_open=True), "train.min_lr_scale", "must be in [0, 1)")
    v.require(_in_unit(t.late_qat_threshold), "train.late_qat_threshold", "must be in [0, 1] (0 = off)")
    v.require(t.late_qat_threshold == 0 or t.late_qat_trigger == "progress" or t.min_lr_scale < t.late_qat_threshold,
              "train.late_qat_threshold",
              "late QAT would never switch on: the LR multiplier never falls below "
              f"train.min_lr_scale={t.min_lr_scale}")
    v.require(t.late_qat_scope == "muon" or cfg.model.bigram_vocab > 0 or cfg.model.value_embed_layers != "",
              "train.late_qat_scope", "projections fake-quantizes the bigram / value-embedding projections: the "
              "model has neither")
    v.require(2 <= t.qat_bits <= 8, "train.qat_bits",
              f"per-row int-k fake quantization supports 2..8 bits, got {t.qat_bits}")
    v.require(t.ema_decay == 0 or 0 < t.ema_decay < 1, "train.ema_decay",
              f"must be in (0, 1) (0 = EMA off), got {t.ema_decay}")
    v.require(t.ema_start_step >= 0, "train.ema_start_step", "must be ≥ 0")
    v.require(t.swa_every >= 0, "train.swa_every", "must be ≥ 0 (0 = SWA off)")
    v.require(_in_unit(t.swa_max_lr_scale, low_open=True), "train.swa_max_lr_scale", "must be in (0, 1]")
    v.require(t.swa_source == "raw" or t.swa_every == 0 or t.ema_decay > 0, "train.swa_source",
              "ema averages the EMA's weights: set train.ema_decay > 0, or swa_source = \"raw\"")
    v.require(t.final_weights != "best_val" or cfg.eval.stride > 0, "train.final_weights",
              "best_val scores each candidate by sliding windows: set eval.stride > 0")
    v.require(t.recurrence_start_step >= 0, "train.recurrence_start_step", "must be ≥ 0 (0 = not by step)")
    v.require(_in_unit(t.recurrence_start_frac, high_open=True), "train.recurrence_start_frac",
              "must be in [0, 1) (0 = not by progress)")
    v.require(t.max_recompiles >= 0, "train.max_recompiles", "must be ≥ 0")


def _check_model_techniques(cfg: Config, world_size: int, v: Issues) -> None:
    m, t = cfg.model, cfg.train
    head_dim = m.model_dim // m.num_heads
    v.require(m.bos_id >= 0 and m.bos_id < m.vocab_size, "model.bos_id", f"must be a token id below {m.vocab_size}")
    v.require(m.leaky_slope >= 0, "model.leaky_slope", "must be ≥ 0")
    v.require(m.rope_train_seq_len >= 0, "model.rope_train_seq_len", "must be ≥ 0 (0 = plain RoPE)")
    v.require((m.rope_dims or m.model_dim // m.num_heads) > 2 or m.rope_train_seq_len == 0, "model.rope_train_seq_len",
              "NTK rescaling needs more than 2 rotated dims")
    v.require(not m.attn_gate_bias or m.attn_gate == "dense", "model.attn_gate_bias",
              "needs model.attn_gate = \"dense\"")
    v.require(not m.vr_lambda_first_layer or m.value_residual, "model.vr_lambda_first_layer",
              "needs model.value_residual = true")
    v.require(not m.recur_untie_mlp or m.recur_loops > 0, "model.recur_untie_mlp",
              "needs depth recurrence (model.recur_loops > 0)")
    v.require(math.isfinite(m.lane_merge_init), "model.lane_merge_init", "must be a finite number")
    v.require(m.rope_dims >= 0 and m.rope_dims % 2 == 0 and m.rope_dims <= head_dim, "model.rope_dims",
              f"must be even and ≤ the head dim {head_dim} (0 = the whole head), got {m.rope_dims}")
    v.require(-1 <= m.xsa_last_n <= m.num_layers, "model.xsa_last_n",
              f"must be -1 (all), 0 (off) or at most model.num_layers={m.num_layers}, got {m.xsa_last_n}")
    if m.attn_gate in ("sparse", "out"):
        v.require(0 < m.attn_gate_window <= m.model_dim, "model.attn_gate_window",
                  f"must be in 1..model_dim={m.model_dim}")
    if m.smear_gate == "v2":
        v.require(0 < m.smear_window <= m.model_dim, "model.smear_window", f"must be in 1..model_dim={m.model_dim}")
    v.require(m.bigram_vocab == 0 or m.bigram_vocab >= 2, "model.bigram_vocab",
              "must be 0 (off) or ≥ 2 (one bucket is reserved for positions without a predecessor)")
    v.require(m.bigram_dim > 0, "model.bigram_dim", "must be positive")
    v.require(not m.trigram or m.bigram_vocab > 0, "model.trigram", "needs model.bigram_vocab > 0 (shared table)")
    try:
        ve_layers = parse_layer_list(m.value_embed_layers)
    except ValueError:
        v.add("model.value_embed_layers", f"must be comma-separated layer indices like \"9,10\", "
              f"got {m.value_embed_layers!r}")
        ve_layers = []
    v.require(all(0 <= i < m.num_layers for i in ve_layers) and len(set(ve_layers)) == len(ve_layers),
              "model.value_embed_layers", f"layers must be distinct and in 0..{m.num_layers - 1}, got {ve_layers}")
    v.require(m.value_embed_dim > 0, "model.value_embed_dim", "must be positive")
    v.require(not m.skip_gates or m.unet_skips, "model.skip_gates", "needs model.unet_skips = true")
    v.require(m.recur_loops >= 0, "model.recur_loops", "must be ≥ 0 (0 = off)")
    if m.recur_loops > 0:
        v.require(0 <= m.recur_start <= m.recur_end < m.num_layers, "model.recur_start",
                  f"recurrence range {m.recur_start}..{m.recur_end} must lie in 0..{m.num_layers - 1} "
                  "with recur_start ≤ recur_end")
    if m.parallel_residual != "off":
        v.require(m.num_layers // 2 <= m.parallel_start < m.num_layers, "model.parallel_start",
                  f"must be in {m.num_layers // 2}..{m.num_layers - 1}: parallel lanes start in the decoder half "
                  f"and at or before the last layer, got {m.parallel_start}")
        v.require(m.recur_loops == 0 or m.parallel_start > m.recur_end, "model.parallel_start",
                  f"must be after the recurrence range (> model.recur_end={m.recur_end})")
    v.require(t.recurrence_start_step == 0 or t.recurrence_start_frac == 0.0, "train.recurrence_start_frac",
              "set either train.recurrence_start_step or train.recurrence_start_frac, not both")


CHECKS: tuple[Check, ...] = (_check_model_shape, _check_optim, _check_train, _check_data, _check_eval,
                             _check_proxy, _check_quant, _check_training_dynamics, _check_model_techniques)


def _with_defaults_for(cfg: Config, rejected: Collection[str]) -> Config:
    """A copy of `cfg` whose rejected choice fields hold their defaults, so one bad value is reported once."""
    copy = dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s)) for s in section_types()})
    for dotted in rejected:
        section, key = dotted.split(".")
        setattr(getattr(copy, section), key, schema_fields()[dotted].default)
    return copy


def _run(check: Check, cfg: Config, world_size: int, found: Issues) -> None:
    try:
        check(cfg, world_size, found)
    except (ArithmeticError, ValueError, TypeError):
        if not found:  # not a consequence of a value already rejected: a real bug
            raise


def validate_into(cfg: Config, world_size: int, issues: Issues, skip: Collection[str] = ()) -> None:
    """Record every failed check on `issues`, except for keys in `skip` (already rejected while loading)."""
    found = Issues(issues.origins)
    _check_choices(cfg, world_size, found)
    checked = _with_defaults_for(cfg, found.reported_keys() & choices().keys())
    for check in CHECKS:
        _run(check, checked, world_size, found)
    for issue in found.items:
        if issue.key not in skip:
            issues.add(issue.key, issue.message, issue.origin)


def validate(cfg: Config, world_size: int = 1) -> None:
    """Reject impossible combinations, naming every key to change (one `ConfigIssues` for all)."""
    found = Issues()
    validate_into(cfg, world_size, found)
    found.raise_if_any()
