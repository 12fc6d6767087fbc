"""ssa: Spikformer's spiking self-attention, ``(q kᵀ) v · scale`` without softmax, fused
with the attention LIF it feeds. q, k and v are spikes, so the products are integer counts
until the scale (``k^T v`` per head and step, then each token adds the rows of its active q
channels)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SvtError
from ..graph import Node
from .base import CCall, Op, ParamStruct, Step, Work, align, events
from .registry import register
from .synaptic import fused_lif, output_of

SCALE_FUNCTIONS = ("mul", "__mul__", "__rmul__", "__truediv__", "div", "__imul__")


def kv_bytes_per_entry(tokens: int) -> int:
    """k^T v entries count co-active tokens: one byte while N <= 255."""
    return 1 if tokens <= 255 else 2


def ssa_reference(q, k, v, heads: int, scale: float):
    t, b, c, h, w = q.shape

    def split(x):  # -> [T, B, heads, N, d], channel = head * d + j
        return x.reshape(t, b, heads, c // heads, h * w).transpose(-1, -2)

    y = (split(q) @ split(k).transpose(-1, -2)) @ split(v) * scale
    return y.transpose(-1, -2).reshape(t, b, c, h, w)


class SpikingSelfAttention(Op):
    kind = "ssa"
    functions = ("matmul", "__matmul__", "bmm") + SCALE_FUNCTIONS
    kernels = {"ssa_lif": ("ssa_lif.c", "ssa_counts.c"),
               "ssa_lif_q": ("ssa_lif_q.c", "ssa_counts.c")}

    def capture_function(self, b, name, args, kwargs, out):
        if name in ("matmul", "__matmul__", "bmm"):
            return self._matmul(b, args, out)
        return self._scale(b, name, args, out)

    @staticmethod
    def _matmul(b, args, out):
        x, y = args[0], args[1]
        pa, pb = b.pending.get(id(x)), b.pending.get(id(y))
        if pa is None and pb is None:
            na, nb = b.src(x, "matmul"), b.src(y, "matmul")
            if na.kind != "spikes" or nb.kind != "spikes":
                raise SvtError("unsupported operation: matmul outside spiking self-attention")
            # shape [..., N, d]: the last dim of the first operand is the head dim (q @ kᵀ)
            # or the token count (kᵀ @ v); the second case has the first operand transposed.
            b.pending[id(out)] = {"first": (na.name, nb.name), "scale": 1.0,
                                  "a_shape": tuple(x.shape), "b_shape": tuple(y.shape)}
            return True
        if pa is not None and pb is None:  # (q @ kᵀ) @ v
            q, k = pa["first"]
            head_dim = pa["a_shape"][-1]
            v = b.src(y, "attention").name
        elif pb is not None and pa is None:  # q @ (kᵀ @ v)
            k, v = pb["first"]
            head_dim = pb["b_shape"][-1]
            q = b.src(x, "attention").name
        else:
            raise SvtError("unsupported operation: product of two attention maps")
        pend = pa or pb
        nq, nk, nv = b.node(q), b.node(k), b.node(v)
        if not (nq.channels == nk.channels == nv.channels) or nq.channels % head_dim:
            raise SvtError(f"unsupported attention: q/k/v widths {nq.channels}/{nk.channels}/"
                           f"{nv.channels} with head dim {head_dim}")
        node = Node(b.fresh("ssa"), "ssa", [q, k, v], "current", nv.channels,
                    nq.height, nq.width,
                    attrs={"heads": nq.channels // head_dim, "head_dim": head_dim,
                           "scale": pend["scale"]})
        b.add_node(node)
        b.bind(out, node.name)
        return True

    @staticmethod
    def _scale(b, name, args, out):
        tensor, scalar = args[0], args[1]
        if not isinstance(tensor, torch.Tensor) or (isinstance(scalar, torch.Tensor)
                                                    and scalar.numel() != 1):
            tensor, scalar = scalar, tensor
        if isinstance(scalar, torch.Tensor):
            scalar = float(scalar)
        if not isinstance(scalar, (int, float)):
            raise SvtError(f"unsupported operation {name}: elementwise product of activations")
        factor = 1.0 / scalar if name in ("__truediv__", "div") else float(scalar)
        if id(tensor) in b.pending:
            pend = dict(b.pending[id(tensor)])
            pend["scale"] *= factor
            b.pending[id(out)] = pend
            return True
        src = b.src(tensor, name)
        if src.op != "ssa" or b.consumers_of(src.name):
            raise SvtError(f"unsupported operation {name} by {scalar} on {src.name}: scaling "
                           "is supported only inside spiking self-attention")
        src.attrs["scale"] *= factor
        b.bind(out, src.name)
        return True

    def run(self, n, vals, ir):
        q, k, v = (vals[i] for i in n.inputs)
        if n.quant is not None:  # the attention counts, with frac_bits fractional bits
            counts = ssa_reference(q, k, v, n.attrs["heads"], 1.0)  # exact: < 2**24
            return counts.round().to(torch.int32) * (1 << n.quant.frac_bits)
        return ssa_reference(q, k, v, n.attrs["heads"], n.attrs["scale"])

    def quantize(self, n, qz):
        """Counts (q kᵀ) v are exact; the scale becomes the unit of the LIF threshold."""
        from ..quant.integer import AttentionQuant, frac_bits_for
        lif = qz.lif_after(n)
        unit = np.full(n.channels, float(n.attrs["scale"]))
        most = np.array([n.tokens * n.attrs["head_dim"]])  # a token meets every k, v pair
        frac = frac_bits_for(most, np.zeros(1), lif.attrs["v_threshold"] / unit, n.name)
        n.quant = AttentionQuant(frac)
        qz.set_lif(lif, unit, frac)

    def work(self, n, vals, ir):
        """kᵀv per head: each token adds 1 for every pair of a k spike and a v spike in the
        same head; then every q spike adds its channel's row of kᵀv (head_dim entries)."""
        q, k, v = (vals[i] for i in n.inputs)
        heads, d = n.attrs["heads"], n.attrs["head_dim"]
        t, b, c, h, w = q.shape

        def per_head(x):  # spikes per (t, b, head, token)
            return x.reshape(t, b, heads, d, h * w).double().sum(3)

        pairs = int((per_head(k) * per_head(v)).sum().item())
        return Work(macs=2 * q.numel() * d, sops=pairs + events(q) * d)

    def couple(self, n, key, union):
        q, k, v = n.inputs
        union(key[q], key[k])
        union(key[q], key[v])
        return key[q]

    def head_dim(self, n):
        return n.attrs["head_dim"]

    def schedule(self, n, s):
        lif_a, out_format, out = output_of(n, fused_lif(n, s), s)
        kv_bytes = kv_bytes_per_entry(n.tokens)
        kv = s.timesteps * n.channels * n.attrs["head_dim"] * kv_bytes
        kernel = "ssa_lif_q" if n.quant is not None else "ssa_lif"
        return Step(n.name, kernel, [n.name, lif_a["lif"]], s.inputs(n), out_format,
                    n.channels, n.height, n.width, out,
                    scratch_bytes=align(kv) + s.timesteps * n.channels * 4,
                    weight_bytes=4 * n.channels if n.quant is not None else 0,  # thresholds
                    attrs={**lif_a, "heads": n.attrs["heads"], "head_dim": n.attrs["head_dim"],
                           "scale": n.attrs["scale"], "kv_bytes": kv_bytes}, op=n.op)

    def c_call(self, step, c):
        a = step.attrs
        fields = {"tokens": c.u(step.height * step.width), "heads": c.u(a["heads"]),
                  "head_dim": c.u(a["head_dim"]), "kv_bytes": c.u(a["kv_bytes"])}
        if step.kernel == "ssa_lif_q":
            fields["frac_bits"] = c.u(c.quant(step).frac_bits)
            ssa = ParamStruct("svt_ssa_q_t", c.symbol("ssa_", step.name), fields)
        else:
            ssa = ParamStruct("svt_ssa_t", c.symbol("ssa_", step.name),
                              {**fields, "scale": c.f(a["scale"])})
        kv = a["kv_bytes"] * c.timesteps * step.channels * a["head_dim"]
        scratch = c.offset(f"{step.name}.scratch")
        q, k, v = step.inputs
        return CCall("svt_" + step.kernel,
                     [c.arena(q), c.arena(k), c.arena(v), "&" + ssa.symbol, c.T, c.lif(step),
                      c.arena(step.name), f"ARENA({scratch}u)",
                      f"ARENA_I32({scratch + align(kv)}u)"], [ssa])

    def tflite(self, n, vals, tfc):
        tf = tfc.tf
        q, k, v = (vals[i][0] for i in n.inputs)
        heads, scale = n.attrs["heads"], n.attrs["scale"]
        tb, hh, ww, ch = q.shape
        d = ch // heads

        def split(x):  # [TB, H, W, C] -> [TB, heads, N, d], channel = head * d + j
            return tf.transpose(tf.reshape(x, [tb, hh * ww, heads, d]), [0, 2, 1, 3])

        kv = tf.matmul(split(k), split(v), transpose_a=True)  # [TB, heads, d, d]
        y = tf.matmul(split(q), kv) * np.float32(scale)
        return tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [tb, hh, ww, ch]), True


register(SpikingSelfAttention())
