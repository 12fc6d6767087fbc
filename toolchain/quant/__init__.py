"""Integer precision: weight packing (``packing``), the integer conventions and data
(``integer``), the pass that applies them to an IR (``quantize``) and the reference model
every accuracy of an integer model is measured with (``reference``)."""

from .integer import AttentionQuant, InputQuant, LifQuant, SumQuant, WeightQuant
from .quantize import is_integer, quantize_ir, uniform_precision
from .packing import BITS, PRECISIONS, QMAX, pack, packed_bytes, unpack

__all__ = ["AttentionQuant", "BITS", "InputQuant", "LifQuant", "PRECISIONS", "QMAX",
           "SumQuant", "WeightQuant", "is_integer", "pack", "packed_bytes", "quantize_ir",
           "uniform_precision", "unpack"]
