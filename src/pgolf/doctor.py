"""`pgolf doctor`: what this machine offers and what pgolf will use on it."""

from __future__ import annotations

import importlib
import json
import platform
import sys
from typing import Any

import torch

from pgolf.config import Config
from pgolf.model.backend import attention_backend_name
from pgolf.model.documents import FLEX_AVAILABLE, resolve_doc_kernel
from pgolf.model.kernels.dispatch import resolve_fused
from pgolf.train.distributed import backends_available, choose_device
from pgolf.train.runtime import autocast_dtype, compile_enabled, cpu_supports_bf16


def _module_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - absent or broken both mean "not usable"
        return None
    return str(getattr(module, "__version__", "installed"))


def collect() -> dict[str, Any]:
    cfg = Config()
    device = choose_device("auto")
    cuda = torch.cuda.is_available()
    dtype = autocast_dtype(cfg, device)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "bf16": torch.cuda.is_bf16_supported() if cuda else cpu_supports_bf16(),
        "torch_compile": compile_enabled(cfg, device),
        "flash_attn_3": _module_version("flash_attn_interface"),
        "flash_attn_2": _module_version("flash_attn"),
        "flex_attention": FLEX_AVAILABLE,
        "triton": _module_version("triton"),
        **backends_available(),
        "cpu_threads": torch.get_num_threads(),
        "will_use": {
            "device": str(device),
            "autocast": str(dtype).removeprefix("torch.") if dtype else "fp32",
            "attention": attention_backend_name(device),
            "doc_attention": resolve_doc_kernel("auto", device.type)[0],
            "fused_kernels": resolve_fused("auto", device.type)[0],
            "compile": compile_enabled(cfg, device),
            "distributed_backend": "nccl" if cuda else "gloo",
        },
    }


def run_doctor(as_json: bool = False) -> int:
    info = collect()
    if as_json:
        print(json.dumps(info))
        return 0
    yes = lambda flag: "yes" if flag else "no"  # noqa: E731
    print(f"python {info['python']} on {info['platform']}")
    print(f"torch {info['torch']}  CUDA available: {yes(info['cuda_available'])} (CUDA {info['cuda_version']})")
    for gpu in info["gpus"]:
        print(f"  GPU: {gpu}")
    print(f"bf16 compute: {yes(info['bf16'])}   torch.compile (auto): {yes(info['torch_compile'])}")
    print(f"FlashAttention 3: {info['flash_attn_3'] or 'not installed'}   "
          f"FlashAttention 2: {info['flash_attn_2'] or 'not installed'}")
    print(f"FlexAttention: {yes(info['flex_attention'])}   Triton: {info['triton'] or 'not installed'}")
    print(f"NCCL: {yes(info['nccl'])}   gloo: {yes(info['gloo'])}   CPU threads: {info['cpu_threads']}")
    use = info["will_use"]
    print(f"pgolf will use: device {use['device']}, autocast {use['autocast']}, attention {use['attention']}, "
          f"document attention {use['doc_attention']}, fused kernels {yes(use['fused_kernels'])}, "
          f"compile {yes(use['compile'])}, torchrun backend {use['distributed_backend']}")
    return 0
