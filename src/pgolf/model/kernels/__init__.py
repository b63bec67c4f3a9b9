"""Fused Triton kernels for the CUDA path, each with the pure-PyTorch reference it is tested against.

Triton is imported lazily (`triton_available`): this package imports without Triton or CUDA, and the
ops dispatch to the kernels only for CUDA tensors when `use_fused` says so; everywhere else the
reference runs.
"""

from pgolf.model.kernels.dispatch import FUSED_CHOICES, TRITON_AVAILABLE, resolve_fused
from pgolf.model.kernels.leaky_relu2 import leaky_relu2_fused, leaky_relu2_reference
from pgolf.model.kernels.softcap_ce import (
           softcap_cross_entropy,
           softcap_cross_entropy_reference,
)

__all__ = ["FUSED_CHOICES", "TRITON_AVAILABLE", "leaky_relu2_fused", "leaky_relu2_reference", "resolve_fused",
           "softcap_cross_entropy", "softcap_cross_entropy_reference"]
