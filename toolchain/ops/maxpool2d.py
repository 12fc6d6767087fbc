"""maxpool2d: MaxPool2d on spike trains (an OR over the window) or on kept currents (the
Spike-driven stem pools BatchNorm outputs; after a conv it fuses into that conv's step)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..errors import SvtError
from ..graph import Node
from .base import CCall, Op, ParamStruct, Step, membrane_bytes, spike_bytes
from .registry import register


class MaxPool2d(Op):
    kind = "maxpool2d"
    modules = (nn.MaxPool2d, nn.MaxPool3d)
    reusable_modules = True  # stateless: one module may be called at several places
    kernels = {"maxpool2d": ("maxpool2d.c",), "maxpool2d_membrane": ("maxpool2d_membrane.c",)}

    def capture_module(self, b, name, m, x, out):
        if isinstance(m, nn.MaxPool3d):
            raise SvtError(f"unsupported layer {name} (MaxPool3d): the Spike-driven "
                           "Transformer's DVS 'Erode' pooling is not supported yet")
        src = b.src(x, name)
        k, s, p = (m.kernel_size, m.stride, m.padding)
        k, s, p = (v if isinstance(v, int) else v[0] for v in (k, s, p))
        if src.kind not in ("spikes", "current") or m.dilation not in (1, (1, 1)) \
                or m.ceil_mode:
            raise SvtError(f"unsupported structure at {name}: max-pool must act on spikes or "
                           "on BatchNorm outputs (no dilation, floor mode)")
        h, w = out.shape[-2:]
        node = Node(name, "maxpool2d", [src.name], src.kind, src.channels, int(h), int(w),
                    attrs={"kernel": k, "stride": s, "padding": p}, modules=[name])
        b.add_node(node)
        b.bind(out, node.name)
        return True

    def run(self, n, vals, ir):
        x = vals[n.inputs[0]]
        y = F.max_pool2d(x.flatten(0, 1), n.attrs["kernel"], n.attrs["stride"],
                         n.attrs["padding"])
        return y.reshape(ir.timesteps, -1, *y.shape[1:])

    def quantize(self, n, qz):  # a max of spikes is a spike; a max of currents is float
        if n.kind != "spikes":
            raise SvtError(f"integer precision does not support a max-pool of currents yet "
                           f"({n.name}); use --precision fp32")

    def schedule(self, n, s):
        inputs = s.inputs(n)
        t = s.timesteps
        if s.format_of(inputs[0]) == "membrane":
            return Step(n.name, "maxpool2d_membrane", [n.name], inputs, "membrane", n.channels,
                        n.height, n.width, membrane_bytes(n.tokens * n.channels, t),
                        attrs=dict(n.attrs), op=n.op)
        return Step(n.name, "maxpool2d", [n.name], inputs, "spikes", n.channels, n.height,
                    n.width, spike_bytes(n.tokens * n.channels, t), attrs=dict(n.attrs),
                    op=n.op)

    def c_call(self, step, c):
        src = c.source(step)
        pool = ParamStruct("svt_pool_t", c.symbol("pool_", step.name), {
            "channels": c.u(step.channels), "in_h": c.u(src.height), "in_w": c.u(src.width),
            "kernel": c.u(step.attrs["kernel"]), "stride": c.u(step.attrs["stride"]),
            "pad": c.u(step.attrs["padding"]), "out_h": c.u(step.height),
            "out_w": c.u(step.width)})
        if step.kernel == "maxpool2d_membrane":
            return CCall("svt_maxpool2d_membrane", [c.arena_f32(step.inputs[0]),
                                                    "&" + pool.symbol, c.T,
                                                    c.arena_f32(step.name)], [pool])
        return CCall("svt_maxpool2d", [c.arena(step.inputs[0]), "&" + pool.symbol, c.T,
                                       c.arena(step.name)], [pool])

    def tflite(self, n, vals, tfc):
        x, timed = vals[n.inputs[0]]
        tf = tfc.tf
        k, s, p = n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"]
        if p:  # spikes are >= 0, so zero padding acts as the -inf padding of torch;
            # real values are padded with their own minimum, which never wins either
            low = 0.0 if n.kind == "spikes" else tf.reduce_min(x)
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=low)
        return tf.nn.max_pool2d(x, k, s, "VALID"), timed


register(MaxPool2d())
