"""Shared by the synaptic ops (conv2d, linear, dense, and the attention products): the node
they make from a torch layer, and the step that fuses them with the LIF they feed."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SvtError
from ..graph import Node
from ..quant.integer import WeightQuant, frac_bits_for, round_int
from ..quant.packing import quantize_per_channel, stored_bytes
from .base import (WEIGHT_BYTES, Schedule, Step, Work, events, lif_attrs, membrane_bytes,
                   spike_bytes)


# The event-driven accumulation the spike-fed integer kernels share (svt_add_events_q and
# the column add, reference and Cortex-M4/M7 variants: svt_kernels.h picks one per build).
EVENT_KERNEL_FILES = ("events_q.c", "add_lanes_q.c", "add_lanes_q_dsp.c", "add_lanes_q_sse.c",
                      "add_column_q.c", "add_column_q_dsp.c")


def weighted_node(b, name: str, op: str, m, src: Node, out, h: int, w: int,
                  attrs: dict) -> Node:
    """A node holding the torch layer's weights in float64 (BatchNorm folds in next; the
    tracer casts to float32 once the graph is complete)."""
    weight = m.weight.detach().double()
    if op in ("linear", "dense") and weight.dim() == 3:
        weight = weight[:, :, 0]  # kernel-1 Conv1d
    bias = (m.bias.detach().double() if m.bias is not None
            else torch.zeros(weight.shape[0], dtype=torch.float64))
    node = Node(name, op, [src.name], "scores" if op == "dense" else "current",
                int(weight.shape[0]), h, w,
                attrs=dict(attrs, in_channels=int(weight.shape[1]),
                           has_time=src.attrs.get("has_time", src.kind != "vector")),
                modules=[name])
    node.weight, node.bias = weight, bias
    b.add_node(node)
    b.bind(out, node.name)
    return node


def fused_lif(n: Node, s: Schedule) -> Node | None:
    """The LIF layer n feeds, when it is n's only consumer (then one step runs both)."""
    only = s.only_consumer(n)
    return only if only is not None and only.op == "lif" else None


def output_of(n: Node, lif: Node | None, s: Schedule) -> tuple[dict, str, int]:
    """(LIF attrs, output format, output bytes) of a synaptic step: spike trains when a LIF
    is fused, otherwise the currents kept as membrane floats."""
    if lif is None:
        if n.op not in ("conv2d", "linear") or s.inputs(n)[0] == "input":
            raise SvtError(f"unsupported structure at {n.name}: the output of this layer "
                           "must feed exactly one LIF neuron layer")
        return {}, "membrane", membrane_bytes(n.tokens * n.channels, s.timesteps)
    return lif_attrs(lif), "spikes", spike_bytes(n.tokens * n.channels, s.timesteps)


def input_shape_attrs(n: Node, s: Schedule) -> dict:
    """A conv/linear layer's input shape (and a conv's window), as its kernel call needs."""
    src = s.ir.node(n.inputs[0])
    attrs = {"in_channels": n.attrs["in_channels"], "in_height": src.height,
             "in_width": src.width}
    if n.op == "conv2d":
        attrs.update(kernel=n.attrs["kernel"], stride=n.attrs["stride"],
                     padding=n.attrs["padding"])
    return attrs


def weighted_step(n: Node, s: Schedule, kernel: str, lif: Node | None, scratch: int) -> Step:
    lif_a, out_format, out = output_of(n, lif, s)
    rows = "outputs" if s.inputs(n)[0] == "input" else "inputs"
    if n.quant is not None:
        kernel += "_q"
    return Step(n.name, kernel, [n.name] + ([lif.name] if lif else []), s.inputs(n),
                out_format, n.channels, n.height, n.width, out, scratch_bytes=scratch,
                weight_bytes=flash_bytes(n, rows, lif), params=n.params,
                attrs={**lif_a, **input_shape_attrs(n, s), "weight_rows": rows}, op=n.op)


def weight_rows(step: Step, laid_out: np.ndarray) -> np.ndarray:
    """An op's weight layout as the rows integer packing pads to whole bytes: one per
    output (``weight_rows`` "outputs") or one per input (a column of outputs)."""
    if step.attrs["weight_rows"] == "outputs":
        return laid_out.reshape(step.channels, -1)
    return laid_out.reshape(-1, step.channels)


def flash_bytes(n: Node, rows: str, lif: Node | None = None) -> int:
    """Flash bytes of n's weights and bias as its kernel stores them: fp32, or integer
    rows packed at the layer's precision (a row is one input's column of outputs for
    spike-fed layers, one output's weights otherwise) with int32 biases and the fused
    LIF's int32 thresholds."""
    if n.quant is None:
        return n.params * WEIGHT_BYTES
    out = n.channels
    fan_in = n.weight.size // out
    count, length = (out, fan_in) if rows == "outputs" else (fan_in, out)
    return stored_bytes(count, length, n.quant.bits) + 4 * out + (4 * out if lif else 0)


def quantize_synaptic(n: Node, qz, analog: bool = False) -> None:
    """Integer weights for a conv2d/linear feeding a LIF: per-channel scales, the bias and
    the LIF's thresholds in the layer's current units (see quant/integer.py)."""
    lif = qz.lif_after(n)
    q, scale = quantize_per_channel(n.weight, qz.bits(n))
    unit = scale * qz.input.scale if analog else scale
    acc_bound = np.abs(q.astype(np.int64)).reshape(len(q), -1).sum(1) * qz.bound(n.inputs[0])
    bias_units = np.asarray(n.bias, np.float64) / unit
    frac = frac_bits_for(acc_bound, bias_units, lif.attrs["v_threshold"] / unit, n.name)
    n.quant = WeightQuant(qz.bits(n), q, scale, round_int(bias_units * 2.0 ** frac), frac,
                          qz.input.zero_point if analog else 0,
                          qz.input.scale if analog else 1.0, int(acc_bound.max()))
    qz.set_lif(lif, unit, frac)


def integer_currents(acc: torch.Tensor, wq: WeightQuant, channel_dim: int) -> torch.Tensor:
    """Exact accumulator sums (floats holding integers) -> int32 currents in the layer's
    units: ``acc * 2**frac_bits + bias``, as the C's ``svt_currents_out_q`` (quantizing
    chose frac_bits so that they stay below 2**30)."""
    shape = [1] * acc.dim()
    shape[channel_dim] = -1
    return (acc.round().to(torch.int32) * (1 << wq.frac_bits)
            + torch.from_numpy(wq.bias.astype(np.int32)).view(shape))


def column_work(n: Node, vals: dict, ir) -> Work:
    """A fully connected layer (linear, dense): every input value meets every output
    channel; fed by spikes or counts, each input event adds one weight column."""
    x = vals[n.inputs[0]]
    spiking = ir.node(n.inputs[0]).kind in ("spikes", "count")
    return Work(macs=x.numel() * n.channels,
                sops=events(x) * n.channels if spiking else 0)
