"""dense: the classifier head, a Linear layer on float features (token/time means). It
writes the caller's class scores. Captured by ``linear`` (a Linear fed by features) or by
``mean`` (a head applied before the mean, moved behind it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import WEIGHT_BYTES, CCall, Op, Step
from .linear import dense_lowering
from .registry import register
from .synaptic import column_work


class Dense(Op):
    kind = "dense"
    has_weights = True
    kernels = {"dense": ("dense.c",)}

    def run(self, n, vals, ir):
        return F.linear(vals[n.inputs[0]], torch.from_numpy(n.weight), torch.from_numpy(n.bias))

    def couple(self, n, key, union):
        return f"out:{n.name}"

    def work(self, n, vals, ir):
        return column_work(n, vals, ir)

    def schedule(self, n, s):
        return Step(n.name, "dense", [n.name], s.inputs(n), "scores", n.channels, 1, 1,
                    n.channels * 4, weight_bytes=n.params * WEIGHT_BYTES, params=n.params,
                    attrs={"in_channels": n.attrs["in_channels"]}, op=n.op)

    def c_call(self, step, c):
        return CCall("svt_dense", [c.arena_f32(step.inputs[0]), c.u(step.attrs["in_channels"]),
                                   c.weight(step), c.bias(step), c.u(step.channels), "scores"])

    def tflite(self, n, vals, tfc):
        x, timed = vals[n.inputs[0]]
        return dense_lowering(x, n, tfc), timed


register(Dense())
