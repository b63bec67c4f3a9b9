"""Fused Triton kernels for the CUDA path, each with the pure-PyTorch reference it is tested against.

`dispatch` says whether the kernels can run (Triton is imported lazily, so it imports without Triton or
CUDA) and holds the reference loss every other model uses. A model imports `softcap_ce` and `leaky_relu2`
only when its config allows the kernels (`model.fused_kernels` ≠ off) and they can run on CUDA; their ops
dispatch to Triton only for CUDA tensors, everywhere else the reference runs.
"""
