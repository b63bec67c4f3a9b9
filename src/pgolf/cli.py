"""`pgolf` command line: parse, resolve the config, call one stage function.

Every subcommand is one `Command` row (name, handler, help, options) of the tables below; options that
only set a config key (`--stride`, `--ttt`, `--codec`, ...) are generated from the config schema
(`pgolf.config.options`), so their type, choices and help are the field's.

Exit codes: 0 success, 2 user error (bad input or config), 1 internal failure, 3 a check that ran
and failed (`pgolf verify` found a mode that breaks the legality policy, `pgolf preflight` red,
`pgolf reproduce` mismatch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgolf.config.introspect import choices
from pgolf.config.options import add_field_option
from pgolf.errors import UserError

if TYPE_CHECKING:
    from pgolf.config import Config

Handler = Callable[[argparse.Namespace], int]
VERIFY_FAILED = 3  # `pgolf verify`: a mode broke a condition of the legality policy


def _load(args: argparse.Namespace, base: dict | None = None, world_size: int | None = None) -> Config:
    from pgolf.config import load_config

    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return load_config(args.preset, args.config, args.overrides, world_size=world_size, base=base)


# ---- commands ---------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from pgolf.pipeline import load_run_config, run_train

    if args.resume is not None:
        run_dir = Path(args.resume)
        if not (run_dir / "config.toml").is_file():
            raise UserError(f"{run_dir} is not a run directory (no config.toml): pass runs/<run_id> to --resume")
        cfg = load_run_config(run_dir)
    else:
        cfg = _load(args)
    summary = run_train(cfg, resume_dir=Path(args.resume) if args.resume else None)
    if summary:
        _print_result(summary, args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pgolf.config import load_config
    from pgolf.pipeline import run_train

    cfg = load_config("tiny", overrides=args.overrides, env={})
    print("pgolf demo: training the `tiny` preset on the embedded FineWeb sample (CPU-sized)...", flush=True)
    summary = run_train(cfg)
    _print_result(summary, as_json=False)
    return 0


def _print_result(summary: dict, as_json: bool) -> None:
    if as_json:
        keys = ("val_loss", "val_bpb", "eval_stage", "val_tokens", "val_bytes", "pre_quant_val_bpb",
                "post_quant_val_bpb", "artifact_bytes", "code_bytes", "model_bytes", "params", "steps",
                "weights_sha256", "run_id")
        print(json.dumps({k: summary[k] for k in keys if k in summary}))
        return
    out_dir = summary.get("manifest", {}).get("config", {}).get("run", {}).get("out_dir", "runs")
    print(f"run:            {Path(out_dir) / summary['run_id']}" if "run_id" in summary else "")
    scheme = summary.get("quant", {}).get("policy") or "int8"
    print(f"val_bpb:        {summary['post_quant_val_bpb']:.8f} (after {scheme}+{summary.get('codec', 'zlib')} "
          f"roundtrip; before quantization {summary['pre_quant_val_bpb']:.8f})")
    if summary.get("eval_stages"):
        from pgolf.evaluate.modes import stage_line

        for stage in summary["eval_stages"]:
            print(f"  {stage_line(stage)}")
    print(f"val_loss:       {summary['val_loss']:.8f} nats/token over {summary['val_tokens']:,} tokens, "
          f"{summary['val_bytes']:,} bytes")
    print(f"artifact bytes: {summary['artifact_bytes']:,} = model {summary['model_bytes']:,} + code "
          f"{summary['code_bytes']:,} (limit 16,000,000)")


def cmd_eval(args: argparse.Namespace) -> int:
    from pgolf.evaluate.modes import stage_line
    from pgolf.targets import evaluate_target

    result = evaluate_target(Path(args.target), args, _load)
    if args.json:
        print(json.dumps(result))
        return 0
    for stage in result["stages"]:
        print(stage_line(stage))
    print(f"val_loss:{result['val_loss']:.8f} val_bpb:{result['val_bpb']:.8f} "
          f"val_tokens:{result['val_tokens']} val_bytes:{result['val_bytes']} source:{result['source']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pgolf.targets import verify_target

    reports = verify_target(Path(args.target), args, _load)
    if args.json:
        print(json.dumps({"passed": all(r["passed"] for r in reports), "modes": reports}))
    else:
        for report in reports:
            print(f"{report['mode']}: {report['verdict']} under {report['policy']} "
                  f"({report['tokens']:,} tokens, val_bpb {report['val_bpb']:.6f})")
            for check in report["checks"]:
                print(f"  {'pass' if check['passed'] else 'FAIL'}  {check['condition']}")
            if not report["ruling"]["compliant"]:
                print(f"  ruling: {report['ruling']['reason']}")
    return 0 if all(r["passed"] for r in reports) else VERIFY_FAILED


def cmd_pack(args: argparse.Namespace) -> int:
    from pgolf.quant.report import format_rows
    from pgolf.targets import pack_target

    report = pack_target(Path(args.target), args, _load)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "budget_report"}))
        return 0
    if report.get("tensor_rows"):
        print(format_rows(report["tensor_rows"]))
    print(report["budget_report"])
    print(f"artifact: {report['artifact']} (codec {report['codec']}, transform {report.get('transform', 'none')})")
    if report.get("tensor_report"):
        print(f"per-tensor report: {report['tensor_report']}")
    return 0


def cmd_export_weights(args: argparse.Namespace) -> int:
    from pgolf.targets import export_record_weights

    report = export_record_weights(Path(args.target), args, _load)
    print(json.dumps(report) if args.json else
          f"wrote {report['out']}: {report['tensors']} tensors, {report['parameters']:,} parameters in the layout of "
          f"records/{report['record']} (preset {report['preset']})")
    return 0


def cmd_bench_parity(args: argparse.Namespace) -> int:
    from pgolf.bench.parity import bench_parity

    result = bench_parity(presets=args.presets.split(",") if args.presets else None, records=args.records,
                          out=args.out)
    print(json.dumps(result) if args.json else "\n".join(
        f"{row['preset']}: logits {row['max_rel_logits']:.3g} weights {row['max_rel_weights']:.3g} "
        f"payload {row['max_rel_payload']} params Δ{row['param_delta']}" for row in result["rows"]))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from pgolf.inspect_model import format_inspection, inspect_config

    info = inspect_config(_load(args))
    print(json.dumps(info) if args.json else format_inspection(info))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from pgolf.config.docs import documented_toml

    cfg = _load(args)
    sys.stdout.write(documented_toml(cfg) if args.doc else cfg.to_toml())
    return 0


def cmd_config_presets(args: argparse.Namespace) -> int:
    from pgolf.config import preset_names

    print("\n".join(preset_names()))
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from pgolf.data.build import BuildOptions, build_dataset

    options = BuildOptions(model_type=args.model_type, caseops=args.caseops, byte_sidecar=args.byte_sidecar,
                           max_docs=args.max_docs, max_bytes=args.max_bytes,
                           tokenizer_train_docs=args.tokenizer_train_docs, replace_invalid=args.replace_invalid,
                           threads=args.workers, force=args.force)
    paths = build_dataset(args.input, Path(args.out), name=args.name, tokenizer=args.tokenizer,
                          vocab_size=args.vocab_size, val_inputs=args.val_input or None,
                          val_fraction=args.val_fraction, shard_tokens=args.shard_tokens, options=options)
    print(f"dataset:   {paths.dataset_dir}\ntokenizer: {paths.tokenizer_path}\nvocab:     {paths.vocab_size}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from pgolf.data.hub import HubSource, LocalSource, default_repo_id, download

    source = (LocalSource(Path(args.from_dir)) if args.from_dir
              else HubSource(repo_id=args.repo_id or default_repo_id(args.variant), remote_root=args.remote_root))
    result = download(args.variant, Path(args.out), train_shards=args.train_shards, source=source,
                      skip_manifest=args.skip_manifest, with_docs=args.with_docs, log=print)
    print(f"dataset:   {result.paths.dataset_dir}\ntokenizer: {result.paths.tokenizer_path}\n"
          f"vocab:     {result.paths.vocab_size}\n"
          f"downloaded {len(result.downloaded)} files, {len(result.skipped)} already present and verified")
    return 0


def cmd_data_retokenize(args: argparse.Namespace) -> int:
    from pgolf.data.retokenize import retokenize_dataset

    result = retokenize_dataset(args.source, args.tokenizer, Path(args.out), name=args.name,
                                source_tokenizer=args.source_tokenizer, shard_tokens=args.shard_tokens,
                                threads=args.workers, force=args.force)
    trip = result.roundtrip
    print(f"dataset:   {result.paths.dataset_dir}\ntokenizer: {result.paths.tokenizer_path}\n"
          f"documents: {result.docs['val']:,} val, {result.docs['train']:,} train\n"
          f"roundtrip: {trip.checked - trip.failed:,} of {trip.checked:,} documents byte-exact")
    for example in trip.examples:
        print(f"  not byte-exact: {example}")
    return 0


def cmd_data_audit(args: argparse.Namespace) -> int:
    from pgolf.data.audit import audit_tokenizer, load_lut_file
    from pgolf.data.corpus import Corpus
    from pgolf.data.families import load_tokenizer
    from pgolf.errors import DataError

    tok = load_tokenizer(args.tokenizer) if args.lut is None else load_lut_file(args.tokenizer, args.lut)
    docs = Corpus.of(args.corpus, max_docs=args.max_docs, replace_invalid=args.replace_invalid) if args.corpus else ()
    report = audit_tokenizer(tok, docs, threads=args.workers)
    print(json.dumps(report.to_dict()) if args.json else report.text())
    if not report.ok:
        counts = ", ".join(f"{k}: {n}" for k, n in sorted(report.counts().items()))
        raise DataError(f"tokenizer {tok.name} fails the byte-accounting audit ({counts}): its val_bpb would be wrong")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from pgolf.doctor import run_doctor

    return run_doctor(as_json=args.json)


def cmd_bench_train(args: argparse.Namespace) -> int:
    from pgolf.bench.train import bench_train

    cfg = _load(args)
    result = bench_train(cfg, steps=args.steps, out=args.out)
    print(result["report"])
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "report"}))
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    from pgolf.bench.data import bench_data

    result = bench_data(vocab_size=args.vocab_size, threads=args.workers, train_tokens_per_s=args.train_tokens_per_s,
                        out=args.out)
    print(result["report"])
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "report"}))
    return 0


def cmd_bench_optim(args: argparse.Namespace) -> int:
    from pgolf.bench.optim import bench_optim

    cfg = _load(args)
    result = bench_optim(cfg, world_size=args.world_size, repeats=args.repeats, ns_batch=args.ns_batch,
                         qat_steps=args.qat_steps, qat_threshold=args.qat_threshold, skip_qat=args.skip_qat,
                         out=args.out)
    print(result["report"])
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "report"}))
    return 0


DEFAULT_BENCH_POLICIES = ("int8", "int6", "int6:gptq", "int5mlp", "int5mlp:gptq", "proteus", "sdclip:gptq")


def cmd_bench_quant(args: argparse.Namespace) -> int:
    from pgolf.bench.quant import bench_quant

    result = bench_quant(Path(args.run), args.overrides, policies=args.policies.split(","),
                         codecs=args.codecs.split(","), pack_params=args.pack_params, out=args.out)
    print(result["report"])
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "report"}))
    return 0


def cmd_bench_eval(args: argparse.Namespace) -> int:
    from pgolf.bench.eval import bench_eval, fresh_target
    from pgolf.targets import _args_overrides, load_target
    from pgolf.train.distributed import shutdown

    args.overrides = [*args.overrides, f"eval.val_max_tokens={args.tokens}"]
    if args.target:
        loaded = load_target(Path(args.target), args, _load)
    else:
        args.overrides = _args_overrides(args)
        loaded = fresh_target(_load(args))
    try:
        result = bench_eval(loaded, out=args.out)
    finally:
        shutdown(loaded.ctx)
    print(result["report"])
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "report"}))
    return 0


def cmd_bench_ablate(args: argparse.Namespace) -> int:
    from pgolf.bench.ablate import bench_ablate

    result = bench_ablate(args.file, folder=args.folder, out=args.out, jobs=args.jobs)
    print(result["table"])
    print(f"wallclock {result['wallclock_s']:.0f} s for {result['runs']} runs on {result['machine']} "
          f"(load average {result['load_average_before']:.1f} → {result['load_average_after']:.1f})")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from pgolf.experiments.ablate import run_ablation
    from pgolf.experiments.spec import example_files

    if args.list:
        print("\n".join(str(path) for path in example_files()))
        return 0
    if args.file is None:
        raise UserError("pgolf ablate needs FILE.toml (or --list for the shipped examples)")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else []
    run_ablation(args.file, out=args.out, jobs=args.jobs, devices=devices, plan_only=args.plan)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from pgolf.experiments.stats import compare, load_sample, render

    candidate = load_sample("candidate", args.runs)
    reference = load_sample("reference", args.against) if args.against else None
    comparison = compare(candidate, reference, target_delta_bpb=args.delta, power=args.power)
    print(render(comparison))
    if args.json:
        print(json.dumps(comparison.to_dict()))
    return 0


CHECK_FAILED = 3


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pgolf.experiments.reproduce import reproduce

    outcome = reproduce(Path(args.summary), out_dir=args.out_dir, tolerance=args.tolerance)
    print(outcome.report())
    return 0 if outcome.reproduced else CHECK_FAILED


def cmd_submit(args: argparse.Namespace) -> int:
    from pgolf.experiments.submit import describe, submit

    folder = submit([Path(r) for r in args.runs], name=args.name, author=args.author, github_id=args.github_id,
                    out=args.out, blurb=args.blurb, track=args.track, form=args.form)
    print(describe(folder))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pgolf.experiments.results import load_run
    from pgolf.export import write_export
    from pgolf.pipeline import load_run_config

    result = load_run(Path(args.run))
    cfg = load_run_config(result.run_dir)
    out = args.out or result.run_dir / "train_gpt.py"
    info = write_export(out, cfg, f"pgolf run {result.run_id}", result.run_id,
                        result.summary["manifest"]["code_sha256"], args.form or cfg.quant.code_form)
    print(f"{info.path}: {info.bytes:,} bytes ({info.form}, {len(info.modules)} modules); these are the code bytes")
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from pgolf.experiments.preflight import (
        BASELINE_TFLOPS_PER_GPU,
        render,
        run_preflight,
    )

    checks = run_preflight(lambda: _load(args), gpus=args.gpus, tflops=args.tflops or BASELINE_TFLOPS_PER_GPU)
    print(render(checks))
    return 0 if all(c.ok for c in checks) else CHECK_FAILED


def cmd_bench_bytes(args: argparse.Namespace) -> int:
    from pgolf.bench.bytes import bench_bytes, report

    def names(text: str) -> tuple[str, ...]:
        return tuple(name for name in text.split(",") if name)

    result = bench_bytes(args.records, steps=args.steps, projection=names(args.projection), codecs=names(args.codecs),
                         out=args.out)
    print(report(result))
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_bench_code_floor(args: argparse.Namespace) -> int:
    from pgolf.bench.code_floor import bench_code_floor, report

    result = bench_code_floor(args.preset, args.records, trace=args.trace, seconds=args.seconds, out=args.out)
    print(report(result))
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_bench_ablate_cpu(args: argparse.Namespace) -> int:
    from pgolf.bench.ablate_cpu import bench_ablate_cpu, markdown_table

    if args.seeds < 1 or args.seconds <= 0 or args.steps < 0:
        raise UserError("--seeds must be ≥ 1, --seconds > 0 and --steps ≥ 0")
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else []
    result = bench_ablate_cpu(args.preset, seconds=args.seconds, seeds=[1337 + i for i in range(args.seeds)],
                              val_tokens=args.val_tokens, threads=args.threads, jobs=args.jobs, only=only, out=args.out,
                              progress=lambda line: print(line, flush=True), steps=args.steps)
    print(markdown_table(result))
    if args.json:
        print(json.dumps(result))
    return 0


# ---- parser: every subcommand is one row of COMMANDS --------------------------------------------
Arg = Callable[[argparse.ArgumentParser], object]


@dataclass(frozen=True)
class Command:
    name: str  # "train", or "<group> <name>" for the commands of a group (GROUPS)
    func: Handler
    help: str
    args: tuple[Arg, ...] = ()
    description: str | None = None


GROUPS: dict[str, str] = {
    "config": "inspect configuration",
    "data": "build, download, retokenize or audit datasets and tokenizers",
    "bench": "benchmarks (results as JSON)",
}


def opt(*flags: str, **kwargs: Any) -> Arg:
    return lambda parser: parser.add_argument(*flags, **kwargs)


def sets(help: str | None = None) -> Arg:
    return opt("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
               help=help or "override one field (repeatable); wins over the environment")


def config_opts(preset_default: str | None = None) -> tuple[Arg, ...]:
    return (opt("--preset", default=preset_default, help="preset name (see `pgolf config presets`)"),
            opt("--config", type=Path, help="TOML file overriding the preset"), sets())


def fields(**flags: str) -> Arg:
    """Options generated from the schema: fields(max_eval_seconds="eval.max_eval_seconds") adds --max-eval-seconds."""

    def add(parser: argparse.ArgumentParser) -> None:
        for name, dotted in flags.items():
            add_field_option(parser, "--" + name.replace("_", "-"), dotted)
    return add


def json_opt(help: str = "print one JSON object as the last line") -> Arg:
    return opt("--json", action="store_true", help=help)


def workers(default: int | None = None, help: str = "encoding threads") -> Arg:
    return opt("--workers", type=int, default=default or os.cpu_count() or 1, help=help)


CODE_FORMS = choices()["quant.code_form"]
OUT_JSON = opt("--out", type=Path, help="also write the JSON result to this file")
TARGET_HELP = "artifact.pgolf, runs/<id>, final_model.pt or final_model.int8.ptz"
DATASET = fields(data="data.dataset", tokenizer="data.tokenizer")
WINDOWS = fields(context="eval.context", stride="eval.stride")
ADAPTATION = fields(ttt="eval.ttt", slot="eval.slot")
POLICY_HELP = ("mixed-precision policy: a shipped name (int6, int5mlp, proteus, sdclip, int4) or a .toml file; "
              "sets quant.scheme=policy")

RUN_COMMANDS: tuple[Command, ...] = (
    Command("train", cmd_train, "train a model, pack its artifact, score it", (
        *config_opts(), opt("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint"),
        json_opt("print the summary as one JSON line"))),
    Command("demo", cmd_demo, "train the tiny preset on the embedded corpus, pack and score it", (sets(),)),
    Command("eval", cmd_eval, "score an artifact, a run directory, or an official final_model.pt/.int8.ptz", (
        opt("target", help=TARGET_HELP), *config_opts(), DATASET, WINDOWS, ADAPTATION,
        fields(max_eval_seconds="eval.max_eval_seconds"),
        opt("--dump-losses", type=Path, metavar="FILE.npy", help="write the per-token losses (float64 nats, stream "
            "order) of the last stage; earlier stages go beside it as FILE.<stage>.npy"), json_opt())),
    Command("verify", cmd_verify, "test eval modes against the legality policy (causal, normalized, score-first, "
            "single pass)", (
        opt("target", help=TARGET_HELP), *config_opts(), DATASET, WINDOWS, ADAPTATION,
        opt("--mode", nargs="+", metavar="MODE", help="plain, sliding, ttt-full, ttt-lora, ttt-phased, slot-context, "
            "slot-published or all (default: the stages `pgolf eval` runs with the same options)"),
        opt("--tokens", type=int, default=4096, help="val tokens the checks run on (default 4096)"),
        opt("--positions", type=int, default=3, help="positions p of the perturbation test (default 3)"),
        opt("--seed", type=int, default=0, help="seed of the random replacement tokens"), json_opt()),
        description="Runs each mode on a prefix of the val stream: a future-perturbation test, a normalization check "
        f"and a single-pass check. Exit code 0 if every mode passes, {VERIFY_FAILED} if one breaks a condition."),
    Command("pack", cmd_pack, "quantize and pack a run (or an official export) into a pgolf artifact", (
        opt("target", help="runs/<id>, final_model.pt or final_model.int8.ptz"), *config_opts(),
        opt("--policy", metavar="P", help=POLICY_HELP),
        opt("--fit", action="store_true", help="choose bit widths per tensor to fit quant.budget_bytes − "
            "quant.budget_margin with the least measured loss increase (quant.scheme=fit)"),
        fields(gptq="quant.gptq", codec="quant.codec", transform="quant.transform"),
        opt("--out", type=Path, help="artifact path (default: artifact.pgolf beside the input)"),
        json_opt("print the report as one JSON object"))),
    Command("inspect", cmd_inspect, "parameters per module, FLOPs/token and projected artifact bytes, no training",
            (*config_opts("baseline"), json_opt("print one JSON object"))),
    Command("config show", cmd_config_show, "print the resolved config as TOML", (
        *config_opts(), opt("--doc", action="store_true", help="add each field's documentation as a comment"))),
    Command("config presets", cmd_config_presets, "list the shipped presets"),
)

DATA_COMMANDS: tuple[Command, ...] = (
    Command("data build", cmd_data_build, "text/jsonl → tokenizer (any vocab) + official shards + manifest", (
        opt("--input", nargs="+", required=True, help="train .jsonl/.txt files, folders or globs"),
        opt("--out", required=True, help="output root (gets datasets/<name>/ and tokenizers/)"),
        opt("--tokenizer", help="existing tokenizer: a SentencePiece .model, byte260, tiktoken:<encoding> or a "
            "tokenizer .json (else a SentencePiece model is trained)"),
        opt("--vocab-size", type=int, help="vocabulary of the trained tokenizer (default 1024; with --tokenizer: "
            "checked against it)"),
        opt("--model-type", choices=("bpe", "unigram"), default="bpe", help="SentencePiece model type"),
        opt("--caseops", action="store_true", help="lossless case transform; bpb counted on original bytes through "
            "a val byte sidecar"),
        opt("--byte-sidecar", action="store_true", help="write the val byte sidecar for any tokenizer"),
        opt("--val-input", nargs="+", help="validation files (else --val-fraction of the documents)"),
        opt("--val-fraction", type=float, help="fraction of documents (from the start) held out for val"),
        opt("--name", help="dataset name (default <corpus>_<variant>, e.g. web_sp4096)"),
        opt("--shard-tokens", type=int, default=100_000_000, help="tokens per shard"),
        opt("--max-docs", type=int, default=0, help="use only the first N documents (0 = all)"),
        opt("--max-bytes", type=int, default=0, help="use only the first N bytes of text (0 = all)"),
        opt("--tokenizer-train-docs", type=int, default=0, help="train the tokenizer on the first N train documents "
            "(0 = all)"),
        workers(help="encoding threads (over documents)"),
        opt("--replace-invalid", action="store_true", help="read non-UTF-8 bytes as U+FFFD instead of failing"),
        opt("--force", action="store_true", help="write shards even if the tokenizer fails the audit"))),
    Command("data download", cmd_data_download, "fetch the official shards through huggingface_hub", (
        opt("--variant", default="sp1024", help="sp1024, sp4096, sp8192, byte260, "
            "sp8192_lossless_caps_caseops_v1_reserved, ..."),
        opt("--train-shards", type=int, default=80, help="prefix of train shards to fetch"),
        opt("--out", default="data", help="local data root"),
        opt("--repo-id", help="hub dataset repo (default: the one that publishes the variant)"),
        opt("--remote-root", default="datasets", help="folder of manifest.json inside the repo"),
        opt("--skip-manifest", action="store_true", help="use the local manifest.json"),
        opt("--with-docs", action="store_true", help="also fetch docs_selected.jsonl (the raw text)"),
        opt("--from-dir", help="a local folder laid out like the hub repo (mirror or offline copy)"))),
    Command("data retokenize", cmd_data_retokenize, "decode a dataset's documents and re-encode them with another "
            "tokenizer, checking byte-exact round trips", (
        opt("source", help="source dataset folder (…/datasets/<name>)"),
        opt("--tokenizer", required=True, help="new tokenizer (.model, byte260, tiktoken:<enc>, .json)"),
        opt("--out", required=True, help="output root (gets datasets/<name>/ and tokenizers/)"),
        opt("--name", help="dataset name (default <source corpus>_<variant>)"),
        opt("--source-tokenizer", help="tokenizer of the source (default: from its dataset.json)"),
        opt("--shard-tokens", type=int, help="tokens per shard (default: the source's)"), workers(),
        opt("--force", action="store_true", help="write shards even if the tokenizer fails the audit"))),
    Command("data audit", cmd_data_audit, "byte-accounting audit: counted bytes vs decoded bytes, per token and over "
            "a corpus; exit 2 on any mismatch", (
        opt("tokenizer", help="tokenizer (.model, byte260, tiktoken:<enc>, .json)"),
        opt("--corpus", nargs="+", help=".jsonl/.txt files whose documents are also audited"),
        opt("--max-docs", type=int, default=0, help="audit only the first N corpus documents (0 = all)"),
        opt("--lut", type=Path, help="audit this byte table (.npz: base_bytes, has_leading_space, is_boundary) "
            "instead of pgolf's own, with the tokenizer as decoder"),
        opt("--replace-invalid", action="store_true", help="read non-UTF-8 bytes as U+FFFD"),
        workers(1), json_opt("print the report as one JSON object"))),
    Command("doctor", cmd_doctor, "check torch, CUDA, bf16, compile, FlashAttention, NCCL; say what will be used",
            (opt("--json", action="store_true"),)),
)

BENCH_COMMANDS: tuple[Command, ...] = (
    Command("bench train", cmd_bench_train, "training tokens/s, measured matmul peaks, MFU, trainer vs bare loop", (
        *config_opts("tiny"), opt("--steps", type=int, default=20, help="timed steps for each loop"), OUT_JSON,
        json_opt())),
    Command("bench data", cmd_bench_data, "tokenizer training time, encode/shard-write MB/s, loader tokens/s", (
        opt("--vocab-size", type=int, default=1024, help="vocabulary of the timed tokenizer training"), workers(),
        opt("--train-tokens-per-s", type=float, help="fastest training tokens/s of this machine (default: the "
            "largest `pgolf bench train` result in benchmarks/results)"), OUT_JSON, json_opt())),
    Command("bench eval", cmd_bench_eval, "tokens/s and val_bpb of plain, sliding, TTT and SLOT scoring, with 8-GPU "
            "full-val projections", (
        opt("target", nargs="?", help="artifact, run directory or official file (default: the preset's freshly "
            "initialised model, whose bpb means nothing)"), *config_opts("tiny"), DATASET, WINDOWS,
        opt("--tokens", type=int, default=8192, help="val tokens to score in every mode (0 = all)"), OUT_JSON,
        json_opt())),
    Command("bench ablate", cmd_bench_ablate, "an ablation file end to end: wallclock and the table it produced", (
        opt("file", nargs="?", default="proteus_1425_phase2_cpu", help="ablation file or shipped example (default "
            "proteus_1425_phase2_cpu)"),
        opt("--folder", type=Path, default=Path("ablations/bench"), help="ablation folder (runs, report)"),
        opt("--jobs", type=int, default=1, help="runs at a time"), OUT_JSON)),
    Command("bench quant", cmd_bench_quant, "rate–distortion of a trained run: (policy, codec) → bytes, post-quant "
            "val_bpb, quant gap", (
        opt("run", help="runs/<id> of a finished training run"),
        sets("override the run's config (e.g. eval.val_max_tokens, quant.calibration_seqs)"),
        opt("--policies", default=",".join(DEFAULT_BENCH_POLICIES), help="comma-separated policies to measure; "
            "'int8' is the baseline export, ':gptq' adds GPTQ, 'fit' the budget fit"),
        opt("--codecs", default="zlib,zstd,lzma,brotli,auto", help="comma-separated codecs"),
        opt("--pack-params", type=int, default=30_000_000, help="also time packing a random model of about this "
            "many parameters (0 = skip)"), OUT_JSON, json_opt())),
    Command("bench optim", cmd_bench_optim, "Muon vs Parallel Muon step time, Newton–Schulz kernel, quant gap with "
            "late QAT", (
        *config_opts("tiny"),
        opt("--world-size", type=int, default=2, help="gloo processes for the multi-process step timing (CPU)"),
        opt("--repeats", type=int, default=5, help="timed repetitions (the median is reported)"),
        opt("--ns-batch", type=int, help="matrices per record shape in the kernel timing (default: all on GPU, 4 on "
            "CPU)"),
        opt("--qat-steps", type=int, default=150, help="training steps of each late-QAT comparison run"),
        opt("--qat-threshold", type=float, default=0.15, help="LR multiplier below which late QAT is on"),
        opt("--skip-qat", action="store_true", help="skip the two training runs of the quant-gap comparison"),
        OUT_JSON, json_opt())),
    Command("bench parity", cmd_bench_parity, "per record preset: max relative logit/weight/payload difference and "
            "parameter-count delta against the record's own script", (
        opt("--presets", help="comma-separated presets (default: every one with a record format)"),
        opt("--records", type=Path, help="records folder (default ../shared/records beside the repository)"),
        OUT_JSON, json_opt("print one JSON object"))),
    Command("bench bytes", cmd_bench_bytes, "shipped code bytes vs the records' own (and with their packed "
            "models), export seconds; model bytes per codec stack; similarity sort vs the record's", (
        opt("--records", type=Path, default=Path("../shared/records"), help="the records folder"),
        opt("--steps", type=int, default=20, help="training steps of each _cpu run (0: no _cpu runs)"),
        opt("--projection", default="brotli,brotli+lqer,lrzip+lqer+grouped,auto+lqer+grouped",
            help="codec stacks (<codec>[+lqer][+grouped], codec auto allowed) of the full-size sota projection; "
                 "'' skips it"),
        opt("--codecs", default="brotli,lzma,zstd,lrzip", help="codecs of the _cpu runs' stacks (auto allowed)"),
        OUT_JSON, json_opt())),
    Command("bench code-floor", cmd_bench_code_floor, "the least a preset's shipped code could weigh if "
            "specialized to its config: its script without what a traced CPU run never executed", (
        opt("--preset", default="sota", help="the preset whose shipped code is measured"),
        opt("--trace", help="the preset whose short run is traced (default: PRESET_cpu where it exists)"),
        opt("--seconds", type=float, default=25.0, help="training seconds of the traced run"),
        opt("--records", type=Path, default=Path("../shared/records"), help="the records folder (for the "
            "record's counted code bytes)"),
        OUT_JSON, json_opt())),
    Command("bench ablate-cpu", cmd_bench_ablate_cpu, "train the preset with each model technique alone and all "
            "together, equal wallclock or steps, CPU", (
        opt("--preset", default="tiny", help="base preset (default tiny)"),
        opt("--seconds", type=float, default=30.0, help="training seconds per run (equal wallclock)"),
        opt("--steps", type=int, default=0, help="optimizer steps per run instead (equal steps: val_bpb independent "
            "of the machine's load)"),
        opt("--seeds", type=int, default=2, help="seeds per configuration (1337, 1338, ...)"),
        opt("--val-tokens", type=int, default=32768, help="score this prefix of the val split"),
        opt("--threads", type=int, default=0, help="CPU threads per run (0 = torch default)"),
        opt("--jobs", type=int, default=1, help="runs trained at once, in separate processes"),
        opt("--only", help="comma-separated technique names (default: the whole catalog)"),
        opt("--out", type=Path, help="write the JSON here (and the markdown table beside it, .md)"), json_opt())),
)

EXPERIMENT_COMMANDS: tuple[Command, ...] = (
    Command("ablate", cmd_ablate,
            "run a matrix of configurations × seeds (resumable) and write results.md/csv + plots", (
        opt("file", nargs="?", help="ablation TOML file, or the name of a shipped example"),
        opt("--out", type=Path, help="ablation folder (default ablations/<name>)"),
        opt("--jobs", type=int, default=1, help="runs at a time (default 1)"),
        opt("--devices", help="comma-separated CUDA device ids, one run per device (sets --jobs)"),
        opt("--plan", action="store_true", help="validate every configuration and print the cost; run nothing"),
        opt("--list", action="store_true", help="list the shipped example ablation files")),
        description="Run an ablation file: configurations (preset + overrides) × seeds, one after another or N at a "
        "time; finished runs are skipped, interrupted ones resumed."),
    Command("stats", cmd_stats, "mean, std and one-sided Welch tests under both record rules; seeds needed", (
        opt("runs", nargs="+", help="run directories, summary.json or submission.json files of the candidate"),
        opt("--against", nargs="+", help="the reference: run directories, summary.json or submission.json files"),
        opt("--delta", type=float, help="improvement in bpb to plan seeds for (default: the measured one)"),
        opt("--power", type=float, default=0.8, help="power for the seeds-needed estimate (default 0.8)"),
        json_opt("also print one JSON object as the last line")),
        description="Pool the runs given (independent reproductions included) and test them against --against "
        "under the record rule (≥ 0.005 nats at p < 0.01) and the frontier rule (p < 0.25)."),
    Command("reproduce", cmd_reproduce, "re-run a run from its summary.json manifest and compare the result", (
        opt("summary", help="runs/<id>/summary.json (or the run directory)"),
        opt("--out-dir", type=Path, help="where the rerun goes (default: beside the original)"),
        opt("--tolerance", type=float, default=0.0, help="accepted |Δ val_bpb| when weights differ (default 0)")),
        description="Re-run a finished run from the config, seed and data named in its manifest; exit 0 when it "
        "reproduces (identical weights or val_bpb within --tolerance), 3 when not."),
    Command("submit", cmd_submit, "write a records folder: README, submission.json, logs, single-file train_gpt.py", (
        opt("runs", nargs="+", help="run directories (one per seed)"),
        opt("--name", required=True, help="submission name (README title, submission.json name)"),
        opt("--author", required=True), opt("--github-id", required=True),
        opt("--blurb", default="", help="one-paragraph description"),
        opt("--track", default="10min_16mb", choices=("10min_16mb", "non_record_16mb")),
        opt("--out", type=Path, help="folder to create (default records/<date>_<name>)"),
        opt("--form", choices=CODE_FORMS, help="train_gpt.py form (default: the runs' quant.code_form, itself "
            "compressed by default)")),
        description="Package finished runs (one per seed, one configuration) as the challenge's records folder. The "
        "train_gpt.py export embeds the pgolf code and config; its bytes are the code bytes."),
    Command("export-weights", cmd_export_weights, "write a run's weights as the record script of --preset saves them "
            "(its final_model.pt layout)", (
        opt("target", help="runs/<id> or a float .pgolf file"), *config_opts(),
        opt("--out", type=Path, default=Path("final_model.pt"), help="output file (default final_model.pt)"),
        opt("--unbanked", action="store_true", help="per-layer matrices instead of the record's banks"),
        json_opt("print one JSON object"))),
    Command("export", cmd_export, "write a run's single-file train_gpt.py (the code bytes of its budget)", (
        opt("run", help="run directory"),
        opt("--out", type=Path, help="file to write (default <run>/train_gpt.py)"),
        opt("--form", choices=CODE_FORMS, help="one of the code forms (default: the run's quant.code_form)"))),
    Command("preflight", cmd_preflight, "CPU checks before renting GPUs: config, model, fwd/bwd, sizes, step time", (
        *config_opts("baseline"), opt("--gpus", type=int, default=8, help="GPUs of the projected run (default 8)"),
        opt("--tflops", type=float, default=None, help="stated per-GPU throughput in TFLOP/s (default: the naive "
            "baseline's measured 196.5 on H100)")),
        description="Green/red checks: imports, config, model creation, forward/backward, code size, artifact-size "
        "projection, step-time projection for N GPUs, quantization error. Exit 3 if red."),
)

COMMANDS: tuple[Command, ...] = RUN_COMMANDS + DATA_COMMANDS + BENCH_COMMANDS + EXPERIMENT_COMMANDS
ORDER = ("train", "demo", "eval", "verify", "pack", "inspect", "config", "data", "doctor", "bench", "ablate", "stats",
         "reproduce", "submit", "export", "export-weights", "preflight")  # top-level order of `pgolf --help`


def _subparsers(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:
    return parser.add_subparsers(dest=dest, required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgolf", description="Parameter Golf toolkit: train, pack, score.")
    top = _subparsers(parser, "command")
    rows = sorted(COMMANDS, key=lambda c: ORDER.index(c.name.split()[0]))  # stable: table order inside a group
    groups: dict[str, argparse._SubParsersAction] = {}
    for command in rows:
        group, _, name = command.name.rpartition(" ")
        if group and group not in groups:
            groups[group] = _subparsers(top.add_parser(group, help=GROUPS[group]), f"{group}_command")
        sub = (groups[group] if group else top).add_parser(name, help=command.help, description=command.description)
        for add in command.args:
            add(sub)
        sub.set_defaults(func=command.func)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    print(f"pgolf: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except UserError as exc:
        print(f"pgolf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pgolf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place internal failures are reported
        traceback.print_exc()
        print(f"pgolf: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
