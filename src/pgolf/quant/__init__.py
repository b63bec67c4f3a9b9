"""pgolf.quant: turn float weights into a `QuantizedModel` (int8 baseline; int-k, GPTQ, QAT build on it)."""

from pgolf.quant.container import DTYPES, QuantizedModel, QuantizedTensor, dequantize, dequantize_tensor
from pgolf.quant.int8 import quantize_state_dict_int8

__all__ = [
    "DTYPES",
    "QuantizedModel",
    "QuantizedTensor",
    "dequantize",
    "dequantize_tensor",
    "quantize_state_dict_int8",
]
