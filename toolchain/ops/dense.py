"""dense: the classifier head, a Linear layer on float features (token/time means). It
writes the caller's class scores. Captured by ``linear`` (a Linear fed by features) or by
``mean`` (a head applied before the mean, moved behind it)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SvtError
from .base import CCall, Op, ParamStruct, Step
from .linear import dense_lowering
from .registry import register
from .synaptic import column_work, flash_bytes


class Dense(Op):
    kind = "dense"
    has_weights = True
    kernels = {"dense": ("dense.c",), "dense_q": ("dense_q.c",)}

    def run(self, n, vals, ir):
        if n.quant is not None:  # int32 scores: exact sums plus the folded bias
            weight = torch.from_numpy(n.quant.q.astype(np.float64))
            acc = F.linear(vals[n.inputs[0]].double(), weight)
            return acc.round().long() + torch.from_numpy(n.quant.bias)
        return F.linear(vals[n.inputs[0]], torch.from_numpy(n.weight), torch.from_numpy(n.bias))

    def quantize(self, n, qz):
        """One scale for every class (scores compare in one unit); the input is a sum
        over ``divisor`` values, so the bias is scaled by it instead of dividing."""
        from ..quant.integer import LIMIT, WeightQuant, round_int
        from ..quant.packing import quantize_per_tensor
        src = qz.ir.node(n.inputs[0])
        divisor = getattr(src.quant, "divisor", None)
        if divisor is None:
            raise SvtError(f"integer precision: the head {n.name} must read a mean of spikes "
                           "or counts; use --precision fp32")
        q, scale = quantize_per_tensor(n.weight, qz.bits(n))
        bias = round_int(np.asarray(n.bias, np.float64) * divisor / scale)
        worst = int(np.abs(q.astype(np.int64)).sum(1).max()) * qz.bound(src.name)
        if worst + int(np.abs(bias).max()) >= 2 * LIMIT:
            raise SvtError(f"integer precision: the scores of {n.name} do not fit 32-bit "
                           "integers; use --precision fp32")
        n.quant = WeightQuant(qz.bits(n), q, scale, bias)

    def couple(self, n, key, union):
        return f"out:{n.name}"

    def work(self, n, vals, ir):
        return column_work(n, vals, ir)

    def schedule(self, n, s):
        return Step(n.name, "dense_q" if n.quant is not None else "dense", [n.name],
                    s.inputs(n), "scores", n.channels, 1, 1, n.channels * 4,
                    weight_bytes=flash_bytes(n, "outputs"), params=n.params,
                    attrs={"in_channels": n.attrs["in_channels"], "weight_rows": "outputs"},
                    op=n.op)

    def c_call(self, step, c):
        if step.kernel == "dense_q":
            dense = ParamStruct("svt_dense_q_t", c.symbol("dense_", step.name), {
                "in_c": c.u(step.attrs["in_channels"]), "out_c": c.u(step.channels),
                "bits": c.u(c.quant(step).bits), "weight_oi": c.weight(step),
                "bias": c.bias(step)})
            return CCall("svt_dense_q", [c.arena_i32(step.inputs[0]), "&" + dense.symbol,
                                         "scores"], [dense])
        return CCall("svt_dense", [c.arena_f32(step.inputs[0]), c.u(step.attrs["in_channels"]),
                                   c.weight(step), c.bias(step), c.u(step.channels), "scores"])

    def tflite(self, n, vals, tfc):
        x, timed = vals[n.inputs[0]]
        return dense_lowering(x, n, tfc), timed


register(Dense())
