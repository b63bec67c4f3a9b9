"""The record presets: their numbers match the sources, and their CPU variants keep every technique on."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from pgolf.config import ModelConfig, load_config, preset_names
from pgolf.model.gpt import GPT, build_model, count_parameters
from pgolf.pipeline import run_train

RECORD_PRESETS = ["pr635", "pr1291", "proteus_v16", "proteus_ablation", "sota"]
CPU_EVAL_SIZES = ("val_batch_size", "val_max_tokens", "calibration_seqs")  # how much is scored or calibrated
SIZE_KEYS = {"vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "rope_dims",
             "xsa_last_n", "bigram_vocab", "bigram_dim", "value_embed_layers", "value_embed_dim", "parallel_start",
             "recur_start", "recur_end", "tied_embed_init_std", "smear_window", "attn_gate_window",
             "rope_train_seq_len"}


def params(preset: str, **model_changes: object) -> int:
    """Parameter count of a full-size preset, built on the meta device (no memory, no init work)."""
    cfg = dataclasses.replace(load_config(preset, env={}).model, ortho_init=False, **model_changes)
    with torch.device("meta"):
        return count_parameters(GPT(cfg))


def test_every_record_preset_and_its_cpu_variant_ships() -> None:
    names = set(preset_names())
    assert {*RECORD_PRESETS, *(f"{p}_cpu" for p in RECORD_PRESETS)} <= names


@pytest.mark.parametrize("preset, expected", [
    ("pr1291", 34_401_371),  # records/2026-04-01 (PR #1218) and PR #1291: "34.4M", exactly
    ("sota", 35_945_671 - 8 * 6),  # the record also allocates parallel lambdas for its 8 serial layers
])
def test_parameter_counts_match_the_records(preset: str, expected: int) -> None:
    assert params(preset) == expected


def test_proteus_ablation_parallel_blocks_add_5141_parameters() -> None:
    assert params("proteus_ablation") - params("proteus_ablation", parallel_residual="off") == 5_141  # PR #1425


def _switched_on(m: ModelConfig) -> dict[str, object]:
    """The technique switches that differ from the baseline (sizes aside)."""
    default = ModelConfig()
    return {f.name: getattr(m, f.name) for f in dataclasses.fields(m)
            if f.name not in SIZE_KEYS and getattr(m, f.name) != getattr(default, f.name)}


def _without(section: Any, *keys: str) -> dict[str, object]:
    return {k: v for k, v in dataclasses.asdict(section).items() if k not in keys}


def _technique_switches(cfg) -> dict[str, object]:
    """Optimizer and training-dynamics techniques (step counts and learning rates aside)."""
    o, t = cfg.optim, cfg.train
    return {"muon_impl": o.muon_impl, "ns": o.muon_ns_variant, "row_norm": o.muon_row_normalize,
            "muon_wd": o.muon_weight_decay, "embed_wd": o.embed_weight_decay, "adam_wd": o.adam_weight_decay,
            "ema": t.ema_decay > 0, "swa": t.swa_every > 0, "late_qat": t.late_qat_threshold, "qat_bits": t.qat_bits,
            "warmdown_frac": t.warmdown_frac, "min_lr": t.min_lr_scale}


@pytest.mark.parametrize("preset", RECORD_PRESETS)
def test_cpu_variant_keeps_every_technique(preset: str) -> None:
    full, cpu = load_config(preset, env={}), load_config(f"{preset}_cpu", env={})
    assert _switched_on(cpu.model) == _switched_on(full.model)
    for key in ("bigram_vocab", "value_embed_layers", "xsa_last_n", "recur_loops"):  # sized switches stay on
        assert bool(getattr(cpu.model, key)) == bool(getattr(full.model, key)), key
    assert (cpu.train.recurrence_start_step > 0) == (full.train.recurrence_start_step > 0)
    for section in ("quant", "eval"):  # quantization and scoring exactly as the source, except how much is scored
        assert _without(getattr(cpu, section), *CPU_EVAL_SIZES) == _without(getattr(full, section), *CPU_EVAL_SIZES)
    assert cpu.data.loader == full.data.loader
    assert _technique_switches(cpu) == _technique_switches(full)
    assert (cpu.train.recurrence_start_frac > 0) == (full.train.recurrence_start_frac > 0)
    assert cpu.data.dataset.startswith("embedded:") and 0 < cpu.train.max_wallclock_seconds <= 180


@pytest.mark.parametrize("preset", ["sota_cpu", "proteus_v16_cpu"])
def test_cpu_preset_trains_packs_and_scores(preset: str, small_dataset, tmp_path: Path) -> None:
    overrides = {
        "data.dataset": small_dataset.dataset_dir, "data.tokenizer": small_dataset.tokenizer_path,
        "model.model_dim": 64, "train.train_seq_len": 64, "train.train_batch_tokens": 512, "train.iterations": 3,
        "train.max_wallclock_seconds": 0, "train.dtype": "fp32", "train.device": "cpu", "train.train_log_every": 0,
        "eval.val_batch_size": 4096, "eval.val_max_tokens": 4096, "run.out_dir": tmp_path, "run.run_id": preset,
        "eval.ttt_lora_rank": 8, "eval.ttt_lora_docs": 8,  # LoRA TTT's cost on CPU is in these sizes
    }
    cfg = load_config(preset, env={}, overrides=[f"{k}={v}" for k, v in overrides.items()])
    summary = run_train(cfg)
    assert summary["steps"] == 3 and math.isfinite(summary["val_bpb"])
    assert abs(summary["quant_gap_bpb"]) < 0.05  # the int8 artifact reloads into the same network
    assert summary["params"] == count_parameters(build_model(cfg.model, torch.device("cpu")))
