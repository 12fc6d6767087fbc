"""conv2d: a square, ungrouped, zero-padded Conv2d (BatchNorm folded in).

Three kernels: on the analog image (computed once, drives all T steps), fed by spikes or
counts (accumulate weight columns, no multiplications), and fed by spikes with its currents
max-pooled as they are computed (the Spike-driven stem, which pools BatchNorm outputs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SvtError
from ..quant.integer import InputQuant
from .base import WEIGHT_BYTES, CCall, Op, ParamStruct, Step, Work, membrane_bytes
from .registry import register
from .synaptic import (EVENT_KERNEL_FILES, fused_lif, input_shape_attrs, integer_currents,
                       quantize_synaptic, weighted_node, weighted_step)


class Conv2d(Op):
    kind = "conv2d"
    modules = (nn.Conv2d,)
    has_weights = True
    kernels = {
        "conv2d_analog_lif": ("conv2d_analog_lif.c",),
        "conv2d_spiking_lif": ("conv2d_spiking_lif.c", "conv2d_pixel.c"),
        "conv2d_spiking_maxpool": ("conv2d_spiking_maxpool.c", "conv2d_pixel.c"),
        "conv2d_analog_lif_q": ("conv2d_analog_lif_q.c",),
        "conv2d_spiking_lif_q": ("conv2d_spiking_lif_q.c", "conv2d_pixel_q.c",
                                 *EVENT_KERNEL_FILES),
    }
    dense_twins = {"conv2d_pixel_q.c": "conv2d_pixel_dense_q.c"}

    def capture_module(self, b, name, m, x, out):
        src = b.src(x, name)
        if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros" \
                or m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] \
                or not isinstance(m.padding, tuple) or m.padding[0] != m.padding[1]:
            raise SvtError(f"unsupported layer {name}: only square, ungrouped, undilated, "
                           "zero-padded Conv2d is supported")
        if src.kind not in ("analog", "spikes", "count"):
            raise SvtError(f"unsupported structure at {name}: Conv2d fed by {src.kind} values")
        h, w = out.shape[-2:]
        weighted_node(b, name, "conv2d", m, src, out, int(h), int(w),
                      {"kernel": m.kernel_size[0], "stride": m.stride[0],
                       "padding": m.padding[0]})
        return True

    def run(self, n, vals, ir):
        x = vals[n.inputs[0]]
        if n.quant is not None:
            return self._run_integer(n, x, ir)
        w, b = torch.from_numpy(n.weight), torch.from_numpy(n.bias)
        if ir.node(n.inputs[0]).kind == "analog":
            y = F.conv2d(x, w, b, n.attrs["stride"], n.attrs["padding"])
            return y.unsqueeze(0).expand(ir.timesteps, *y.shape)  # the image repeats: once
        y = F.conv2d(x.flatten(0, 1), w, b, n.attrs["stride"], n.attrs["padding"])
        return y.reshape(ir.timesteps, -1, *y.shape[1:])

    @staticmethod
    def _run_integer(n, x, ir):
        """Integer weights into exact sums (float64 holds them exactly), then currents in
        the layer's units. On the image: uint8 pixels minus the zero point."""
        wq = n.quant
        exact = wq.exact_dtype
        w = torch.from_numpy(wq.q).to(exact)
        stride, pad = n.attrs["stride"], n.attrs["padding"]
        if ir.node(n.inputs[0]).kind == "analog":
            pixels = InputQuant(wq.input_scale, wq.zero_point).pixels(x) - wq.zero_point
            y = integer_currents(F.conv2d(pixels.to(exact), w, None, stride, pad), wq, 1)
            return y.unsqueeze(0).expand(ir.timesteps, *y.shape)
        y = F.conv2d(x.flatten(0, 1).to(exact), w, None, stride, pad)
        return integer_currents(y, wq, 1).reshape(ir.timesteps, -1, *y.shape[1:])

    def quantize(self, n, qz):
        if qz.ir.node(n.inputs[0]).kind == "analog":
            return quantize_synaptic(n, qz, analog=True)
        only = qz.ir.consumers(n.name)
        if len(only) == 1 and only[0].op == "maxpool2d":
            raise SvtError(f"integer precision does not support a conv pooled before its LIF "
                           f"yet ({n.name}); use --precision fp32")
        quantize_synaptic(n, qz)

    def couple(self, n, key, union):
        return f"out:{n.name}"

    def work(self, n, vals, ir):
        x = vals[n.inputs[0]]
        k, stride, pad = n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"]
        per_frame = n.channels * n.tokens * n.attrs["in_channels"] * k * k
        if ir.node(n.inputs[0]).kind == "analog":  # computed once per image, multiplied
            return Work(macs=per_frame * x.shape[0])
        frames = x.flatten(0, 1)
        # each input event reaches every output pixel whose window holds it, in every
        # output channel: count the events in each window (a conv with all-ones weights)
        ones = torch.ones(1, frames.shape[1], k, k, dtype=torch.float64)
        in_windows = F.conv2d(frames.double(), ones, None, stride, pad)
        return Work(macs=per_frame * frames.shape[0],
                    sops=int(in_windows.sum().item()) * n.channels)

    def schedule(self, n, s):
        only = s.only_consumer(n)
        if n.inputs[0] == "input":
            # scratch: the integer kernel's window of pixels (int32), the float one's currents
            patch = n.attrs["in_channels"] * n.attrs["kernel"] ** 2
            return weighted_step(n, s, "conv2d_analog_lif", fused_lif(n, s),
                                 4 * (patch if n.quant is not None else n.channels))
        if only is not None and only.op == "maxpool2d":
            return self._pooled_step(n, only, s)
        return weighted_step(n, s, "conv2d_spiking_lif", fused_lif(n, s),
                             s.timesteps * n.channels * 4)

    @staticmethod
    def _pooled_step(n, pool, s) -> Step:
        """A conv whose currents go only to a max-pool: pooled as they are computed, so only
        the pooled membrane is stored."""
        t = s.timesteps
        return Step(n.name, "conv2d_spiking_maxpool", [n.name, pool.name], s.inputs(n),
                    "membrane", pool.channels, pool.height, pool.width,
                    membrane_bytes(pool.tokens * pool.channels, t),
                    scratch_bytes=t * n.channels * 4, weight_bytes=n.params * WEIGHT_BYTES,
                    params=n.params,
                    attrs={**input_shape_attrs(n, s), "conv_height": n.height,
                           "conv_width": n.width,
                           "pool": {k: pool.attrs[k] for k in ("kernel", "stride", "padding")}},
                    op=n.op)

    def weight_layout(self, step, weight):
        k = weight.shape[-1]
        if step.kernel.startswith("conv2d_analog_lif"):
            return weight, f"OIHW [{weight.shape[0]}][{weight.shape[1]}][{k}][{k}]"
        # [out][in][ky][kx] -> [ky][kx][in][out]: one input's column is contiguous
        return (np.ascontiguousarray(weight.transpose(2, 3, 1, 0)),
                f"HWIO [{k}][{k}][{weight.shape[1]}][{weight.shape[0]}]")

    def c_call(self, step, c):
        if step.kernel.endswith("_q"):
            return self._c_call_integer(step, c)
        a = step.attrs
        out_h, out_w = ((a["conv_height"], a["conv_width"])
                        if step.kernel == "conv2d_spiking_maxpool" else (step.height, step.width))
        conv = ParamStruct("svt_conv2d_t", c.symbol("conv_", step.name), {
            "in_c": c.u(a["in_channels"]), "in_h": c.u(a["in_height"]),
            "in_w": c.u(a["in_width"]), "out_c": c.u(step.channels), "out_h": c.u(out_h),
            "out_w": c.u(out_w), "kernel": c.u(a["kernel"]), "stride": c.u(a["stride"]),
            "pad": c.u(a["padding"]), "weight": c.weight(step), "bias": c.bias(step)})
        if step.kernel == "conv2d_analog_lif":
            return CCall("svt_conv2d_analog_lif",
                         ["image", "&" + conv.symbol, c.T, c.lif(step), c.arena(step.name),
                          c.scratch_f32(step)], [conv])
        src = step.inputs[0]
        if step.kernel == "conv2d_spiking_lif":
            return CCall("svt_conv2d_spiking_lif",
                         [c.arena(src), c.fmt(src), "&" + conv.symbol, c.T, c.lif(step),
                          c.arena(step.name), c.scratch_f32(step)], [conv])
        p = a["pool"]
        pool = ParamStruct("svt_pool_t", c.symbol("pool_", step.name), {
            "channels": c.u(step.channels), "in_h": c.u(out_h), "in_w": c.u(out_w),
            "kernel": c.u(p["kernel"]), "stride": c.u(p["stride"]), "pad": c.u(p["padding"]),
            "out_h": c.u(step.height), "out_w": c.u(step.width)})
        return CCall("svt_conv2d_spiking_maxpool",
                     [c.arena(src), c.fmt(src), "&" + conv.symbol, "&" + pool.symbol, c.T,
                      c.arena_f32(step.name), c.scratch_f32(step)], [conv, pool])

    @staticmethod
    def _c_call_integer(step, c):
        a, wq = step.attrs, c.quant(step)
        conv = ParamStruct("svt_conv2d_q_t", c.symbol("conv_", step.name), {
            "in_c": c.u(a["in_channels"]), "in_h": c.u(a["in_height"]),
            "in_w": c.u(a["in_width"]), "out_c": c.u(step.channels),
            "out_h": c.u(step.height), "out_w": c.u(step.width), "kernel": c.u(a["kernel"]),
            "stride": c.u(a["stride"]), "pad": c.u(a["padding"]), "bits": c.u(wq.bits),
            "frac_bits": c.u(wq.frac_bits), "input_zero_point": str(int(wq.zero_point)),
            "weight": c.weight(step), "bias": c.bias(step)})
        if step.kernel == "conv2d_analog_lif_q":
            return CCall("svt_conv2d_analog_lif_q",
                         ["image", "&" + conv.symbol, c.T, c.lif(step), c.arena(step.name),
                          c.scratch_i32(step)], [conv])
        src = step.inputs[0]
        return CCall("svt_conv2d_spiking_lif_q",
                     [c.arena(src), c.fmt(src), "&" + conv.symbol, c.T, c.lif(step),
                      c.arena(step.name), c.scratch_i32(step)], [conv])

    def tflite(self, n, vals, tfc):
        x, timed = vals[n.inputs[0]]
        tf = tfc.tf
        k, s, p = n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"]
        kernel = tfc.const(n.weight.transpose(2, 3, 1, 0))  # OIHW -> HWIO
        size = x.shape[1]
        same_out = -(-size // s)
        torch_out = (size + 2 * p - k) // s + 1
        same_pad = max((same_out - 1) * s + k - size, 0)
        if same_out == torch_out and same_pad == 2 * p:  # SAME pads p on both sides
            y = tf.nn.conv2d(x, kernel, s, "SAME")
        else:
            if p:
                x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
            y = tf.nn.conv2d(x, kernel, s, "VALID")
        return tf.nn.bias_add(y, tfc.const(n.bias)), timed


register(Conv2d())
