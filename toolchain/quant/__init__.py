"""Integer precision: weight packing (``packing``) and the integer IR pass (``integer``) and the pass that applies it (``quantize``)."""

from .integer import AttentionQuant, InputQuant, LifQuant, SumQuant, WeightQuant
from .quantize import is_integer, quantize_ir, uniform_precision
from .packing import BITS, PRECISIONS, QMAX, pack, packed_bytes, unpack

__all__ = ["AttentionQuant", "BITS", "InputQuant", "LifQuant", "PRECISIONS", "QMAX",
           "SumQuant", "WeightQuant", "is_integer", "pack", "packed_bytes", "quantize_ir",
           "uniform_precision", "unpack"]
