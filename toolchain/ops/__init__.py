"""Ops: one module per IR op kind, each holding everything about it (see ``base.Op``).

Importing this package registers the built-in ops, in the order the tracer tries them
when several claim the same torch function (``mul``: mask, then k⊙v, then a scale).
"""

# Registration order is dispatch order for shared torch functions: keep mask before kv_sum
# before ssa.
from . import conv2d, linear, dense, lif, maxpool2d, add  # noqa: F401  (isort: skip)
from . import mask  # noqa: F401  (isort: skip)
from . import kv_sum  # noqa: F401  (isort: skip)
from . import ssa, mean  # noqa: F401  (isort: skip)
from .base import CCall, Op, ParamStruct, Schedule, Step
from .registry import all_ops, for_kernel, get, register, unregister

__all__ = ["CCall", "Op", "ParamStruct", "Schedule", "Step", "all_ops", "for_kernel", "get",
           "register", "unregister"]
