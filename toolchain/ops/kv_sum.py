"""kv_sum: the first half of the Spike-driven Transformer's self-attention (SDSA): per
channel, the number of tokens where k and v both spike (``Σ_tokens k ⊙ v``), fused with the
attention LIF it feeds: one spike train per channel, later used as a mask on q (``mask``)."""

from __future__ import annotations

from ..errors import SvtError
from ..graph import Node
from .base import CCall, Op, Step, Work, events
from .registry import register
from .synaptic import fused_lif, output_of

PRODUCT_FUNCTIONS = ("mul", "__mul__", "__rmul__", "__imul__")


class KvSum(Op):
    kind = "kv_sum"
    functions = PRODUCT_FUNCTIONS + ("sum",)
    kernels = {"sdsa_kv_lif": ("sdsa_kv_lif.c",)}

    def capture_function(self, b, name, args, kwargs, out):
        if name == "sum":
            return self._sum(b, args, kwargs, out)
        operands = b.graph_args(args, kwargs)
        if len(operands) != 2:
            return False  # a product by a scalar: the attention scale
        x, y = operands
        na, nb = b.src(x, "mul"), b.src(y, "mul")
        if na.kind != "spikes" or nb.kind != "spikes":
            raise SvtError(f"unsupported operation: elementwise product of {na.kind} "
                           f"({na.name}) and {nb.kind} ({nb.name}); only spike tensors in "
                           "Spike-driven self-attention")
        if x.shape != y.shape or na.channels != nb.channels or na.tokens != nb.tokens:
            raise SvtError(f"unsupported operation: product of spikes {na.name} and {nb.name} "
                           "outside Spike-driven self-attention")
        b.pending[id(out)] = {"kv": (na.name, nb.name), "shape": tuple(x.shape)}
        return True

    @staticmethod
    def _sum(b, args, kwargs, out):
        """Σ over tokens of k ⊙ v: an integer count per channel and timestep."""
        pend = b.pending.get(id(args[0]))
        if pend is None or "kv" not in pend:
            raise SvtError("unsupported operation: sum outside Spike-driven self-attention "
                           "(k*v summed over tokens)")
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        nk, nv = (b.node(n) for n in pend["kv"])
        shape = pend["shape"]
        if len(dims) != 1 or int(shape[dims[0]]) != nk.tokens or nk.tokens == 1:
            raise SvtError("unsupported attention: k*v must be summed over its tokens only")
        head_dim = int(shape[-1])
        if nk.channels % head_dim:
            raise SvtError(f"unsupported attention: width {nk.channels}, head dim {head_dim}")
        node = Node(b.fresh("kv_sum"), "kv_sum", [nk.name, nv.name], "current",
                    nk.channels, attrs={"head_dim": head_dim,
                                        "heads": nk.channels // head_dim})
        b.add_node(node)
        b.bind(out, node.name)
        return True

    def run(self, n, vals, ir):  # [T, B, C, 1, 1] counts
        return (vals[n.inputs[0]] * vals[n.inputs[1]]).sum((-2, -1), keepdim=True)

    def work(self, n, vals, ir):  # k AND v at every token; each coincidence adds one
        k, v = vals[n.inputs[0]], vals[n.inputs[1]]
        return Work(macs=k.numel(), sops=events(k * v))

    def couple(self, n, key, union):  # channel-wise: k and v share channels
        union(key[n.inputs[0]], key[n.inputs[1]])
        return key[n.inputs[0]]

    def head_dim(self, n):
        return n.attrs["head_dim"]

    def schedule(self, n, s):
        lif_a, out_format, out = output_of(n, fused_lif(n, s), s)
        k = s.ir.node(n.inputs[0])
        return Step(n.name, "sdsa_kv_lif", [n.name, lif_a["lif"]], s.inputs(n), out_format,
                    n.channels, 1, 1, out, attrs={**lif_a, "in_tokens": k.tokens}, op=n.op)

    def c_call(self, step, c):
        k, v = step.inputs
        return CCall("svt_sdsa_kv_lif", [c.arena(k), c.arena(v), c.u(step.attrs["in_tokens"]),
                                         c.u(step.channels), c.T, c.lif(step),
                                         c.arena(step.name)])

    def tflite(self, n, vals, tfc):  # [TB, H, W, C] spikes -> [TB, C] counts
        x = vals[n.inputs[0]][0]
        return tfc.tf.reduce_sum(x * vals[n.inputs[1]][0], axis=[1, 2]), True


register(KvSum())
