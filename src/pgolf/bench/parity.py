"""`pgolf bench parity`: each record preset against its record's own `train_gpt.py`, on CPU in fp32.

Per preset with a record format (`pgolf.interop`): the record script's model is built at full shape from its
own hyperparameters (under its run's environment), its weights perturbed away from the init (so zero-initialised
parts count), converted to pgolf and loaded into the preset's model. Reported: the parameter-count delta against
the record's parameters that a forward reads (`record_unused_params`, e.g. #1855's λ rows of serial layers, are
neither held by pgolf nor counted; they are reset to the record's init, as an export writes them), whether the
names map 1:1, the max relative difference (`max|a − b| / max|b|`) of the logits (or of the loss, for a record
script without a logits method) on a 1×128 batch with document boundaries, and of the weights after a record →
pgolf → record round trip. Quantizer payloads are not measured here (null): see docs/records.md for their status.
The tests in tests/parity check more (gradients, one optimizer step) at the same tolerance.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

from pgolf.config import load_config
from pgolf.interop import formats, from_pgolf, get_format, to_pgolf
from pgolf.interop.convert import unheld_elements, unheld_rows_at_init
from pgolf.interop.records import (
    cheap_init,
    import_record,
    max_rel_diff,
    perturbed,
    records_dir,
)
from pgolf.model.gpt import GPT
from pgolf.utils import atomic_write_json

SEED = 2026
SEQ_LEN = 128


def _tokens(vocab_size: int, bos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(0, vocab_size, (1, SEQ_LEN + 1), generator=gen)
    tokens[:, :: SEQ_LEN // 3] = bos_id
    return tokens[:, :-1], tokens[:, 1:]


def _outputs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, logits: bool,
             extra: dict[str, Any]) -> torch.Tensor:
    """pgolf's or the record's logits (or loss); `extra` are the record's further forward arguments."""
    with torch.no_grad():
        if isinstance(model, GPT):
            return model.logits(model.hidden(x)) if logits else model(x, y)
        if logits:  # a record's reference module
            forward_logits = cast("Callable[..., torch.Tensor]", model.forward_logits)
            return forward_logits(x, **extra)
        return model(x, y, **extra)


def parity_row(preset: str, root: Path) -> dict[str, Any]:
    fmt = get_format(preset)
    assert fmt.build_record is not None, f"record format {preset} has no build_record"
    start = time.perf_counter()
    rec = import_record(fmt.record, fmt.env, root=root, script=fmt.script)
    cfg = load_config(preset, env={})
    torch.manual_seed(SEED)
    with cheap_init():
        record = fmt.build_record(rec).float().eval()
        ours = GPT(cfg.model).float().eval()
    links = fmt.links(cfg.model)
    state = unheld_rows_at_init(perturbed(record, SEED), links)
    record.load_state_dict(state, strict=True)
    ours.load_state_dict(to_pgolf(state, preset, cfg.model), strict=True)
    back = from_pgolf(ours.state_dict(), preset, cfg.model)
    x, y = _tokens(cfg.model.vocab_size, cfg.model.bos_id)
    has_logits = hasattr(record, "forward_logits")
    extra = fmt.record_inputs(rec, x) if fmt.record_inputs is not None else {}
    compared = max_rel_diff(_outputs(ours, x, y, has_logits, {}), _outputs(record, x, y, has_logits, extra))
    record_params = sum(p.numel() for p in record.parameters())
    unused = unheld_elements(links)
    return {
        "preset": preset, "record": fmt.record,
        "param_delta": sum(p.numel() for p in ours.parameters()) - (record_params - unused),
        "record_params": record_params, "record_unused_params": unused,
        "names_map_1to1": sorted(back) == sorted(state),
        "compared": "logits" if has_logits else "loss",
        "max_rel_logits": compared,
        "max_rel_weights": max(max_rel_diff(back[k], state[k]) for k in state),
        "max_rel_payload": None,
        "seconds": round(time.perf_counter() - start, 1),
    }


def bench_parity(presets: list[str] | None = None, records: Path | None = None,
                 out: Path | None = None) -> dict[str, Any]:
    root = records_dir(records)
    names = presets or [fmt.preset for fmt in formats()]
    result = {"bench": "parity", "device": "cpu", "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "seq_len": SEQ_LEN, "rows": [parity_row(name, root) for name in names]}
    if out is not None:
        atomic_write_json(out, result)
    return result
