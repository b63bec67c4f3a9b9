"""`pgolf` command line: parse, resolve the config, call one stage function.

Exit codes: 0 success, 2 user error (bad input or config), 1 internal failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from pgolf.errors import UserError

Handler = Callable[[argparse.Namespace], int]


def _config_args(parser: argparse.ArgumentParser, preset_default: str | None = None) -> None:
    parser.add_argument("--preset", default=preset_default, help="preset name (see `pgolf config presets`)")
    parser.add_argument("--config", type=Path, help="TOML file overriding the preset")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one field (repeatable); wins over the environment")


def _load(args: argparse.Namespace, base: dict | None = None, world_size: int | None = None):
    from pgolf.config import load_config

    if world_size is None:
        import os

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
        keys = ("val_loss", "val_bpb", "val_tokens", "val_bytes", "pre_quant_val_bpb", "post_quant_val_bpb",
                "artifact_bytes", "code_bytes", "model_bytes", "params", "steps", "weights_sha256", "run_id")
        print(json.dumps({k: summary[k] for k in keys if k in summary}))
        return
    print(f"run:            runs/{summary['run_id']}" if "run_id" in summary else "")
    print(f"val_bpb:        {summary['val_bpb']:.8f} (after int8+{summary.get('codec', 'zlib')} roundtrip; "
          f"before quantization {summary['pre_quant_val_bpb']:.8f})")
    print(f"val_loss:       {summary['val_loss']:.8f} nats/token over {summary['val_tokens']:,} tokens, "
          f"{summary['val_bytes']:,} bytes")
    print(f"artifact bytes: {summary['artifact_bytes']:,} = model {summary['model_bytes']:,} + code "
          f"{summary['code_bytes']:,} (limit 16,000,000)")


def cmd_eval(args: argparse.Namespace) -> int:
    from pgolf.targets import evaluate_target

    result = evaluate_target(Path(args.target), args, _load)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"val_loss:{result['val_loss']:.8f} val_bpb:{result['val_bpb']:.8f} "
              f"val_tokens:{result['val_tokens']} val_bytes:{result['val_bytes']} source:{result['source']}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from pgolf.targets import pack_target

    report = pack_target(Path(args.target), args, _load)
    print(report["budget_report"])
    print(f"artifact: {report['artifact']}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    cfg = _load(args)
    sys.stdout.write(cfg.to_toml())
    return 0


def cmd_config_presets(args: argparse.Namespace) -> int:
    from pgolf.config import preset_names

    print("\n".join(preset_names()))
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from pgolf.data.build import build_dataset

    paths = build_dataset(args.input, Path(args.out), name=args.name, tokenizer=args.tokenizer,
                          vocab_size=args.vocab_size, val_inputs=args.val_input or None,
                          val_fraction=args.val_fraction, shard_tokens=args.shard_tokens)
    print(f"dataset:   {paths.dataset_dir}\ntokenizer: {paths.tokenizer_path}\nvocab:     {paths.vocab_size}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from pgolf.data.hub import download

    result = download(args.variant, Path(args.out), train_shards=args.train_shards, repo_id=args.repo_id,
                      remote_root=args.remote_root)
    print(result)
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


def cmd_bench_ablate(args: argparse.Namespace) -> int:
    from pgolf.bench.ablate import bench_ablate_cpu, markdown_table

    if args.seeds < 1 or args.seconds <= 0:
        raise UserError("--seeds must be ≥ 1 and --seconds > 0")
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else []
    result = bench_ablate_cpu(args.preset, seconds=args.seconds, seeds=[1337 + i for i in range(args.seeds)],
                              val_tokens=args.val_tokens, threads=args.threads, jobs=args.jobs, only=only, out=args.out,
                              progress=lambda line: print(line, flush=True))
    print(markdown_table(result))
    if args.json:
        print(json.dumps(result))
    return 0


# ---- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgolf", description="Parameter Golf toolkit: train, pack, score.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model, pack its artifact, score it")
    _config_args(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="train the tiny preset on the embedded corpus, pack and score it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("eval", help="score an artifact, a run directory, or an official final_model.pt/.int8.ptz")
    p.add_argument("target", help="artifact.pgolf, runs/<id>, final_model.pt or final_model.int8.ptz")
    _config_args(p)
    p.add_argument("--data", help="dataset folder (overrides data.dataset)")
    p.add_argument("--tokenizer", help="tokenizer .model (overrides data.tokenizer)")
    p.add_argument("--dump-losses", type=Path, metavar="FILE.npy", help="write per-token losses (float64 nats)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("pack", help="quantize and pack a run (or an official export) into a pgolf artifact")
    p.add_argument("target", help="runs/<id>, final_model.pt or final_model.int8.ptz")
    _config_args(p)
    p.add_argument("--codec", choices=("zlib", "zstd", "lzma", "brotli", "auto"))
    p.add_argument("--out", type=Path, help="artifact path (default: artifact.pgolf beside the input)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("config", help="inspect configuration")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the resolved config as TOML")
    _config_args(show)
    show.set_defaults(func=cmd_config_show)
    presets = config_sub.add_parser("presets", help="list the shipped presets")
    presets.set_defaults(func=cmd_config_presets)

    p = sub.add_parser("data", help="build or download datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser("build", help="text/jsonl → tokenizer + official shards")
    build.add_argument("--input", nargs="+", required=True, help="train .jsonl/.txt files or globs")
    build.add_argument("--out", required=True, help="output root (gets datasets/<name>/ and tokenizers/)")
    build.add_argument("--tokenizer", type=Path, help="existing SentencePiece .model (else one is trained)")
    build.add_argument("--vocab-size", type=int, default=1024, help="vocabulary of the trained tokenizer")
    build.add_argument("--val-input", nargs="+", help="validation files (else --val-fraction of the documents)")
    build.add_argument("--val-fraction", type=float, help="fraction of documents (from the start) held out for val")
    build.add_argument("--name", help="dataset name (default <corpus>_sp<V>)")
    build.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard")
    build.set_defaults(func=cmd_data_build)
    download = data_sub.add_parser("download", help="fetch the official shards through huggingface_hub")
    download.add_argument("--variant", default="sp1024", help="sp1024, sp4096, sp8192, byte260, ...")
    download.add_argument("--train-shards", type=int, default=80, help="prefix of train shards to fetch")
    download.add_argument("--out", default="data", help="local data root")
    download.add_argument("--repo-id", default="willdepueoai/parameter-golf")
    download.add_argument("--remote-root", default="datasets")
    download.set_defaults(func=cmd_data_download)

    p = sub.add_parser("doctor", help="check torch, CUDA, bf16, compile, FlashAttention, NCCL; say what will be used")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("bench", help="benchmarks (results as JSON)")
    bench_sub = p.add_subparsers(dest="bench_command", required=True)
    bench = bench_sub.add_parser("train", help="training tokens/s, measured matmul peaks, MFU, trainer vs bare loop")
    _config_args(bench, preset_default="tiny")
    bench.add_argument("--steps", type=int, default=20, help="timed steps for each loop")
    bench.add_argument("--out", type=Path, help="also write the JSON result to this file")
    bench.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    bench.set_defaults(func=cmd_bench_train)
    ablate = bench_sub.add_parser(
        "ablate-cpu", help="train the preset with each model technique alone and all together, equal wallclock, CPU")
    ablate.add_argument("--preset", default="tiny", help="base preset (default tiny)")
    ablate.add_argument("--seconds", type=float, default=30.0, help="training seconds per run (equal wallclock)")
    ablate.add_argument("--seeds", type=int, default=2, help="seeds per configuration (1337, 1338, ...)")
    ablate.add_argument("--val-tokens", type=int, default=32768, help="score this prefix of the val split")
    ablate.add_argument("--threads", type=int, default=0, help="CPU threads per run (0 = torch default)")
    ablate.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    ablate.add_argument("--only", help="comma-separated technique names (default: the whole catalog)")
    ablate.add_argument("--out", type=Path, help="write the JSON here (and the markdown table beside it, .md)")
    ablate.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ablate.set_defaults(func=cmd_bench_ablate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
