"""add: a residual add. Spikes plus spikes (or counts) stay small integer counts, one byte
per neuron and timestep; a real-valued operand (the Spike-driven membrane shortcut) makes a
stream of membrane floats. ``x = x + f(x)`` updates x's buffer in place."""

from __future__ import annotations

import torch

from ..errors import SvtError
from ..graph import Node
from .base import CCall, Op, Step, membrane_bytes
from .registry import register


class Add(Op):
    kind = "add"
    functions = ("add", "__add__", "__iadd__", "__radd__")
    kernels = {"add": ("add.c",), "add_membrane": ("add_membrane.c",)}

    def capture_function(self, b, name, args, kwargs, out):
        a, c = args[0], args[1]
        if not (isinstance(a, torch.Tensor) and isinstance(c, torch.Tensor)):
            raise SvtError("unsupported operation: adding a constant to an activation")
        na, nb = b.src(a, "add"), b.src(c, "add")
        if {na.kind, nb.kind} - {"spikes", "count", "current"}:
            raise SvtError(f"unsupported structure: add of {na.kind} ({na.name}) and "
                           f"{nb.kind} ({nb.name}); only spikes, spike counts and "
                           "BatchNorm outputs (a membrane shortcut) may be added")
        if na.tokens != nb.tokens or na.channels != nb.channels:
            raise SvtError(f"unsupported structure: add of {na.name} and {nb.name} with "
                           "different shapes (broadcasting)")
        kind = "current" if "current" in (na.kind, nb.kind) else "count"
        node = Node(b.fresh("add"), "add", [na.name, nb.name], kind, na.channels,
                    na.height, na.width)
        b.add_node(node)
        b.bind(out, node.name)
        return True

    def run(self, n, vals, ir):
        return vals[n.inputs[0]] + vals[n.inputs[1]]

    def quantize(self, n, qz):  # spike counts add exactly; a membrane shortcut is float
        if n.kind != "count":
            raise SvtError(f"integer precision does not support a membrane shortcut yet "
                           f"({n.name}); use --precision fp32")

    def integer_bound(self, n, qz):  # counts are stored in one byte
        return min(255, sum(qz.bound(i) for i in n.inputs))

    def couple(self, n, key, union):
        union(key[n.inputs[0]], key[n.inputs[1]])
        return key[n.inputs[0]]

    def schedule(self, n, s):
        inputs = s.inputs(n)
        t = s.timesteps
        if n.kind == "current":
            return Step(n.name, "add_membrane", [n.name], inputs, "membrane", n.channels,
                        n.height, n.width, membrane_bytes(n.tokens * n.channels, t), op=n.op,
                        updates_first_input=True)
        return Step(n.name, "add", [n.name], inputs, "count", n.channels, n.height, n.width,
                    n.tokens * n.channels * t, op=n.op, updates_first_input=True)

    def c_call(self, step, c):
        a, b = step.inputs
        out = c.arena_f32(step.name) if step.kernel == "add_membrane" else c.arena(step.name)
        return CCall("svt_" + step.kernel, [c.arena(a), c.fmt(a), c.arena(b), c.fmt(b),
                                            c.u(step.neurons), c.T, out])

    def tflite(self, n, vals, tfc):
        x, timed = vals[n.inputs[0]]
        y, y_timed = vals[n.inputs[1]]
        if timed != y_timed:  # a value without time meets one with: repeat it
            tf, t = tfc.tf, tfc.timesteps
            x, y = (tf.concat([x] * t, 0) if not timed else x,
                    tf.concat([y] * t, 0) if not y_timed else y)
        return x + y, timed or y_timed


register(Add())
