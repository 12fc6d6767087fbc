"""The op registry: IR op kind -> the module that knows everything about it.

Built-in ops register themselves when ``svt_deploy.ops`` is imported; an extension op is a
module that subclasses ``Op`` and calls ``register`` (see tests/test_ops.py).
"""

from __future__ import annotations

from .base import Op

_OPS: dict[str, Op] = {}
_KERNELS: dict[str, Op] = {}


def register(op: Op) -> Op:
    """Add (or replace) the op for ``op.kind``; its kernels become known to codegen."""
    old = _OPS.get(op.kind)
    if old is not None:
        for kernel in old.kernels:
            _KERNELS.pop(kernel, None)
    _OPS[op.kind] = op
    for kernel in op.kernels:
        _KERNELS[kernel] = op
    return op


def unregister(kind: str) -> None:
    op = _OPS.pop(kind, None)
    if op is not None:
        for kernel in op.kernels:
            _KERNELS.pop(kernel, None)


def get(kind: str) -> Op:
    try:
        return _OPS[kind]
    except KeyError:
        raise KeyError(f"no op registered for IR op {kind!r}") from None


def for_kernel(kernel: str) -> Op:
    return _KERNELS[kernel]


def all_ops() -> list[Op]:
    return list(_OPS.values())


def module_candidates(module) -> list[Op]:
    """Ops that claim this torch module type, in registration order."""
    return [op for op in _OPS.values() if op.modules and isinstance(module, op.modules)]


def function_candidates(name: str) -> list[Op]:
    return [op for op in _OPS.values() if name in op.functions]
