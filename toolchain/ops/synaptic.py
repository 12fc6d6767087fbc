"""Shared by the synaptic ops (conv2d, linear, dense, and the attention products): the node
they make from a torch layer, and the step that fuses them with the LIF they feed."""

from __future__ import annotations

import torch

from ..errors import SvtError
from ..graph import Node
from .base import (WEIGHT_BYTES, Schedule, Step, Work, events, lif_attrs, membrane_bytes,
                   spike_bytes)


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
    return Step(n.name, kernel, [n.name] + ([lif.name] if lif else []), s.inputs(n),
                out_format, n.channels, n.height, n.width, out, scratch_bytes=scratch,
                weight_bytes=n.params * WEIGHT_BYTES, params=n.params,
                attrs={**lif_a, **input_shape_attrs(n, s)}, op=n.op)


def column_work(n: Node, vals: dict, ir) -> Work:
    """A fully connected layer (linear, dense): every input value meets every output
    channel; fed by spikes or counts, each input event adds one weight column."""
    x = vals[n.inputs[0]]
    spiking = ir.node(n.inputs[0]).kind in ("spikes", "count")
    return Work(macs=x.numel() * n.channels,
                sops=events(x) * n.channels if spiking else 0)
