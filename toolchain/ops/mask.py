"""mask: the second half of Spike-driven self-attention: q ⊙ mask, where the mask is the
attention LIF's spike train per channel (from ``kv_sum``), broadcast over q's tokens."""

from __future__ import annotations

from ..errors import SvtError
from ..graph import Node
from .base import CCall, Op, Step, Work, events, spike_bytes
from .registry import register


class Mask(Op):
    kind = "mask"
    functions = ("mul", "__mul__", "__rmul__", "__imul__")
    kernels = {"spike_mask": ("spike_mask.c",)}

    def capture_function(self, b, name, args, kwargs, out):
        operands = b.graph_args(args, kwargs)
        if len(operands) != 2 or any(id(t) not in b.val for t in operands):
            return False
        na, nb = (b.src(t, "mul") for t in operands)
        if na.kind != "spikes" or nb.kind != "spikes":
            return False  # kv_sum gives the error for products of other values
        masks = [n for n in (na, nb) if b.node(n.inputs[0]).op == "kv_sum"]
        if len(masks) != 1:
            return False  # k ⊙ v, summed over tokens next (kv_sum)
        mask = masks[0]
        q = nb if mask is na else na
        if q.channels != mask.channels:
            raise SvtError(f"unsupported attention: q width {q.channels}, mask width "
                           f"{mask.channels}")
        node = Node(b.fresh("mask"), "mask", [q.name, mask.name], "spikes", q.channels,
                    q.height, q.width)
        b.add_node(node)
        b.bind(out, node.name)
        return True

    def run(self, n, vals, ir):  # the mask [T, B, C, 1, 1] broadcasts over tokens
        return vals[n.inputs[0]] * vals[n.inputs[1]]

    def work(self, n, vals, ir):  # an AND per q entry; each q spike passes on (fan-out 1)
        q = vals[n.inputs[0]]
        return Work(macs=q.numel(), sops=events(q))

    def couple(self, n, key, union):  # q and the mask share channels
        union(key[n.inputs[0]], key[n.inputs[1]])
        return key[n.inputs[0]]

    def schedule(self, n, s):
        return Step(n.name, "spike_mask", [n.name], s.inputs(n), "spikes", n.channels,
                    n.height, n.width, spike_bytes(n.tokens * n.channels, s.timesteps), op=n.op)

    def c_call(self, step, c):
        q, mask = step.inputs
        return CCall("svt_spike_mask", [c.arena(q), c.arena(mask), c.u(step.height * step.width),
                                        c.u(step.channels), c.T, c.arena(step.name)])

    def tflite(self, n, vals, tfc):  # q [TB, H, W, C] masked by [TB, C]
        x = vals[n.inputs[0]][0]
        m = vals[n.inputs[1]][0]
        return x * tfc.tf.reshape(m, [m.shape[0], 1, 1, m.shape[-1]]), True


register(Mask())
