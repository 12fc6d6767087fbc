"""linear: nn.Linear or a kernel-1 Conv1d applied to every token, fed by spikes or counts
(BatchNorm folded in). The same torch layers fed by float features become ``dense``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..errors import SvtError
from .base import CCall, Op, ParamStruct
from .registry import register
from .synaptic import (EVENT_KERNEL_FILES, column_work, fused_lif, integer_currents,
                       quantize_synaptic, weighted_node, weighted_step)


def dense_lowering(x, n, tfc):
    """x [..., Cin] -> [..., Cout] as one FULLY_CONNECTED (shared with ``dense``)."""
    tf = tfc.tf
    shape = x.shape
    y = tf.matmul(tf.reshape(x, [-1, shape[-1]]), tfc.const(n.weight.T)) + tfc.const(n.bias)
    return tf.reshape(y, [*shape[:-1], n.weight.shape[0]])


class Linear(Op):
    kind = "linear"
    modules = (nn.Linear, nn.Conv1d)
    has_weights = True
    kernels = {"linear_spiking_lif": ("linear_spiking_lif.c",),
               "linear_spiking_lif_q": ("linear_spiking_lif_q.c", "linear_sums_q.c",
                                        *EVENT_KERNEL_FILES)}
    dense_twins = {"linear_sums_q.c": "linear_sums_dense_q.c"}

    def capture_module(self, b, name, m, x, out):
        src = b.src(x, name)
        if isinstance(m, nn.Conv1d) and (m.kernel_size != (1,) or m.groups != 1
                                         or m.stride != (1,)):
            raise SvtError(f"unsupported layer {name}: only kernel-1 Conv1d (a linear layer "
                           "over tokens) is supported")
        if src.kind == "vector":
            op = "dense"
        elif src.kind in ("spikes", "count"):
            op = "linear"
        else:
            raise SvtError(f"unsupported structure at {name}: linear layer fed by {src.kind}")
        weighted_node(b, name, op, m, src, out, src.height, src.width, {})
        return True

    def run(self, n, vals, ir):
        if n.quant is not None:  # exact integer sums, then currents in the layer's units
            exact = n.quant.exact_dtype
            w = torch.from_numpy(n.quant.q).to(exact)
            acc = torch.einsum("tbchw,oc->tbohw", vals[n.inputs[0]].to(exact), w)
            return integer_currents(acc, n.quant, 2)
        w, b = torch.from_numpy(n.weight), torch.from_numpy(n.bias)
        return torch.einsum("tbchw,oc->tbohw", vals[n.inputs[0]], w) + b[:, None, None]

    def quantize(self, n, qz):
        quantize_synaptic(n, qz)

    def couple(self, n, key, union):
        return f"out:{n.name}"

    def work(self, n, vals, ir):
        return column_work(n, vals, ir)

    def schedule(self, n, s):
        return weighted_step(n, s, "linear_spiking_lif", fused_lif(n, s),
                             s.timesteps * n.channels * 4)

    def weight_layout(self, step, weight):  # [out][in] -> [in][out]
        return np.ascontiguousarray(weight.T), f"[in {weight.shape[1]}][out {weight.shape[0]}]"

    def c_call(self, step, c):
        src = step.inputs[0]
        if step.kernel == "linear_spiking_lif_q":
            wq = c.quant(step)
            linear = ParamStruct("svt_linear_q_t", c.symbol("linear_", step.name), {
                "tokens": c.u(step.height * step.width),
                "in_c": c.u(step.attrs["in_channels"]), "out_c": c.u(step.channels),
                "bits": c.u(wq.bits), "frac_bits": c.u(wq.frac_bits),
                "weight_io": c.weight(step), "bias": c.bias(step)})
            return CCall("svt_linear_spiking_lif_q",
                         [c.arena(src), c.fmt(src), "&" + linear.symbol, c.T, c.lif(step),
                          c.arena(step.name), c.scratch_i32(step)], [linear])
        linear = ParamStruct("svt_linear_t", c.symbol("linear_", step.name), {
            "tokens": c.u(step.height * step.width), "in_c": c.u(step.attrs["in_channels"]),
            "out_c": c.u(step.channels), "weight_io": c.weight(step), "bias": c.bias(step)})
        return CCall("svt_linear_spiking_lif",
                     [c.arena(src), c.fmt(src), "&" + linear.symbol, c.T, c.lif(step),
                      c.arena(step.name), c.scratch_f32(step)], [linear])

    def tflite(self, n, vals, tfc):
        x, timed = vals[n.inputs[0]]
        return dense_lowering(x, n, tfc), timed


register(Linear())
