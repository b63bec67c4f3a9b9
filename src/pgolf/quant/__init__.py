"""pgolf.quant: turn float weights into a `QuantizedModel` (int8 baseline; int-k, GPTQ, QAT build on it).

The names below resolve on first use, so `import pgolf.quant.x` does not import the int8 baseline.
"""

from typing import TYPE_CHECKING

from pgolf.lazy import lazy_exports

if TYPE_CHECKING:  # the static view of the lazy names below
    from pgolf.quant.container import DTYPES, QuantizedModel, QuantizedTensor, dequantize, dequantize_tensor
    from pgolf.quant.int8 import quantize_state_dict_int8

_EXPORTS = {"DTYPES": "container", "QuantizedModel": "container", "QuantizedTensor": "container",
            "dequantize": "container", "dequantize_tensor": "container", "quantize_state_dict_int8": "int8"}
__all__ = ["DTYPES", "QuantizedModel", "QuantizedTensor", "dequantize", "dequantize_tensor", "quantize_state_dict_int8"]
__getattr__ = lazy_exports(__name__, _EXPORTS)
