"""lif: SpikingJelly's multi-step LIF neuron (fixed tau, hard reset, decay input).

Fused into the step of the synaptic layer that feeds it where there is one; on kept values
(a membrane-shortcut stream or averaged features) it runs as its own step.
"""

from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import neuron as sj_neuron

from ..errors import SvtError
from ..graph import Node
from .base import CCall, Op, Step, Work, lif_attrs, spike_bytes
from .registry import register


def lif_reference(current: torch.Tensor, tau: float, v_th: float, v_reset: float):
    """Multi-step LIF with SpikingJelly's arithmetic: h = v + (x - (v - v_reset)) / tau."""
    v = torch.full_like(current[0], v_reset)
    spikes = []
    for x in current:
        h = v + (x - (v - v_reset)) / tau
        s = (h >= v_th).float()
        spikes.append(s)
        v = torch.where(s > 0, torch.full_like(h, v_reset), h)
    return torch.stack(spikes)


def lif_lowering(x, timed, tau, v_th, v_reset, tfc):
    """The LIF as builtin TFLite ops (mul/add/greater_equal/select), unrolled over T."""
    tf = tfc.tf
    # SpikingJelly: h_t = v + (x_t - (v - v_reset)) / tau = a*v + b*x_t + b*v_reset
    # with a = 1 - 1/tau, b = 1/tau. b*x + b*v_reset is applied before the split into
    # steps (the converter folds it into the conv/linear before), and a*v after a
    # reset is one product h * (fire ? 0 : a) [+ fire * a*v_reset].
    a, b = np.float32(1.0 - 1.0 / tau), np.float32(1.0 / tau)
    av_reset = np.float32(a * v_reset)
    one, zero, keep_a = tf.constant(1.0), tf.constant(0.0), tf.constant(a)
    u = x * b if v_reset == 0 else x * b + np.float32(b * v_reset)
    steps = tfc.per_step(u, timed)
    carry, spikes = None, []
    for t, u_t in enumerate(steps):
        if carry is not None:
            h_t = u_t + carry
        else:  # v starts at v_reset
            h_t = u_t + av_reset if v_reset != 0 else u_t
        fire = tf.greater_equal(h_t, np.float32(v_th))
        s_t = tf.where(fire, one, zero)
        spikes.append(s_t)
        if t + 1 < len(steps):
            # hard reset as a product, not SELECT_V2(fire, v_reset, h): the int8
            # converter gives a SELECT_V2's inputs its output's scale, which would
            # clip h to the range of the reset potential (below the threshold)
            carry = h_t * tf.where(fire, zero, keep_a)
            if v_reset != 0:
                carry = carry + s_t * av_reset
    y = tf.stack(spikes, axis=0)
    return tf.reshape(y, [tfc.timesteps * tfc.batch, *y.shape[2:]])


def lif_integer(current: torch.Tensor, threshold: torch.Tensor, decay_shift: int):
    """The integer LIF of ``svt_neuron_train_q`` (svt_kernels.h): int32 currents in the
    producer's units, reset to 0, ``h = v + ((x - v) >> decay_shift)`` (an arithmetic,
    flooring shift), spike when ``h >= threshold``."""
    v = torch.zeros_like(current[0])
    spikes = []
    for x in current:
        h = v + ((x - v) >> decay_shift)
        fire = h >= threshold
        spikes.append(fire.float())
        v = torch.where(fire, torch.zeros_like(h), h)
    return torch.stack(spikes)


class Lif(Op):
    kind = "lif"
    modules = (sj_neuron.BaseNode,)
    kernels = {"lif_layer": ("lif_layer.c",)}

    def capture_module(self, b, name, m, x, out):
        src = b.src(x, name)
        if getattr(m, "step_mode", "m") != "m":
            raise SvtError(f"unsupported layer {name}: LIF must run in multi-step mode "
                           "(step_mode='m')")
        if not isinstance(m, sj_neuron.LIFNode):
            what = ("a parametric LIF (learnable tau, spike_mode='plif')"
                    if isinstance(m, sj_neuron.ParametricLIFNode) else type(m).__name__)
            raise SvtError(f"unsupported layer {name}: {what} is not supported yet; only "
                           "LIF neurons with a fixed tau (LIFNode, MultiStepLIFNode) are")
        on_vector = src.kind == "vector" and src.attrs.get("has_time")
        if src.kind != "current" and not on_vector:
            raise SvtError(f"unsupported structure at {name}: LIF fed by {src.kind} values "
                           "(expected a Conv/Linear+BN or attention output, or a residual "
                           "stream)")
        if m.v_reset is None or not m.decay_input:
            raise SvtError(f"unsupported layer {name}: only hard-reset, decay-input LIF is "
                           "supported")
        b.set_timesteps(int(x.shape[0]), name)
        node = Node(name, "lif", [src.name], "spikes", src.channels, src.height, src.width,
                    attrs={"tau": float(m.tau), "v_threshold": float(m.v_threshold),
                           "v_reset": float(m.v_reset)}, modules=[name])
        b.add_node(node)
        b.bind(out, node.name)
        return True

    def run(self, n, vals, ir):
        x = vals[n.inputs[0]]
        if x.dim() == 3:  # a LIF on [T, B, C] features: one token
            x = x[..., None, None]
        if n.quant is not None:
            threshold = torch.from_numpy(n.quant.threshold.astype(np.int32)).view(-1, 1, 1)
            return lif_integer(x, threshold, n.quant.decay_shift)
        return lif_reference(x, n.attrs["tau"], n.attrs["v_threshold"], n.attrs["v_reset"])

    def quantize(self, n, qz):
        if n.quant is None:  # set by the integer layer that feeds it (Quantizer.set_lif)
            raise SvtError(f"integer precision: {n.name} is not fed by an integer conv, "
                           "linear or attention layer; use --precision fp32")

    def work(self, n, vals, ir):  # one membrane step per neuron and timestep
        return Work(neuron_updates=vals[n.name].numel())

    def schedule(self, n, s):
        """A LIF on kept values: membrane [neuron][t] or features [t][c]."""
        inputs = s.inputs(n)
        t = s.timesteps
        strides = (t, 1) if s.format_of(inputs[0]) == "membrane" else (1, n.channels)
        return Step(n.name, "lif_layer", [n.name], inputs, "spikes", n.channels, n.height,
                    n.width, spike_bytes(n.tokens * n.channels, t),
                    attrs={**lif_attrs(n), "neuron_stride": strides[0],
                           "time_stride": strides[1]}, op=n.op)

    def c_call(self, step, c):
        return CCall("svt_lif_layer", [
            c.arena_f32(step.inputs[0]), c.u(step.neurons), c.u(step.attrs["neuron_stride"]),
            c.u(step.attrs["time_stride"]), c.T, c.lif(step), c.arena(step.name)])

    def tflite(self, n, vals, tfc):
        x, timed = vals[n.inputs[0]]
        return lif_lowering(x, timed, n.attrs["tau"], n.attrs["v_threshold"],
                            n.attrs["v_reset"], tfc), True


register(Lif())
