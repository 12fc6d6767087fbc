"""The quantization pass: each weighted layer of an IR to its precision, each node's
integer arithmetic set by its op (``Op.quantize``) in graph order."""

from __future__ import annotations

from .. import ops
from ..errors import SvtError
from ..graph import IR
from .integer import InputQuant, Quantizer
from .packing import PRECISIONS


def weighted_layers(ir: IR) -> list[str]:
    """The layers with weights (the ones a precision applies to), in graph order."""
    return [n.name for n in ir.nodes if n.op != "input" and ops.get(n.op).has_weights]


def uniform_precision(ir: IR, precision: str) -> dict[str, str]:
    """Every weighted layer at ``precision``."""
    if precision not in PRECISIONS:
        raise SvtError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return dict.fromkeys(weighted_layers(ir), precision)


def quantize_ir(ir: IR, precision: str | dict[str, str], input_quant: InputQuant | None = None
                ) -> IR:
    """Set integer arithmetic on ``ir`` in place (and return it). ``precision`` is one
    precision for every weighted layer or a map node -> precision. Integer layers must
    be all or none today: a mix of fp32 and integer layers would need conversions
    between them that the kernels do not have."""
    prec = uniform_precision(ir, precision) if isinstance(precision, str) else dict(precision)
    missing = set(weighted_layers(ir)) - set(prec)
    if missing:
        raise SvtError(f"the precision map names no precision for {', '.join(sorted(missing))}"
                       "; regenerate the checkpoint")
    for n in ir.nodes:
        n.attrs.pop("precision", None)
        n.quant = None
        if n.name in prec:
            n.attrs["precision"] = prec[n.name]
    kinds = {p == "fp32" for p in prec.values()}
    if len(kinds) > 1:
        raise SvtError("integer precision: every weighted layer must be integer (int8/int4) "
                       "or every one fp32")
    if not prec or kinds == {True}:
        return ir
    qz = Quantizer(ir, prec, input_quant or InputQuant())
    qz.bounds["input"] = max(qz.input.zero_point, 255 - qz.input.zero_point)
    for n in ir.nodes:
        if n.op == "input":
            continue
        op = ops.get(n.op)
        op.quantize(n, qz)
        qz.bounds[n.name] = op.integer_bound(n, qz)
    return ir


def is_integer(ir: IR) -> bool:
    return any(n.quant is not None for n in ir.nodes)
