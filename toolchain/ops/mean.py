"""mean: a mean over all tokens and/or over time, into float features (the classifier's
input). A Linear head applied before the mean (per token or per timestep) is moved behind
it, ``mean(W·x + b) = W·mean(x) + b``, so the head runs once as ``dense``."""

from __future__ import annotations

import math

import torch

from ..errors import SvtError
from ..graph import Node
from .base import CCall, Op, Step
from .registry import register

KERNELS = {(True, False): "mean_tokens", (False, True): "mean_time",
           (True, True): "mean_tokens_time"}


def mean_attrs(b, src: Node, x: torch.Tensor, dims: list[int]) -> dict:
    """Which of tokens / time a mean over ``dims`` of ``x`` (the value of ``src``) covers."""
    is_vector = src.kind == "vector"
    has_time = not is_vector or src.attrs["has_time"]
    over_time = has_time and 0 in dims and x.shape[0] == b.timesteps
    rest = [d for d in dims if not (over_time and d == 0)]
    over_tokens = (not is_vector and bool(rest)
                   and math.prod(int(x.shape[d]) for d in rest) == src.tokens)
    if not is_vector and src.tokens == 1 and not rest:
        over_tokens = True  # one token (a LIF on averaged features): nothing to average
    if (rest and not over_tokens) or (not is_vector and not over_tokens):
        raise SvtError(f"unsupported operation: mean over dims {dims} of {src.name}; "
                       "supported: a mean over all tokens, then (or with) one over time")
    return {"tokens": over_tokens, "time": over_time, "has_time": has_time and not over_time}


class Mean(Op):
    kind = "mean"
    functions = ("mean",)
    kernels = {"mean_tokens": ("mean.c",), "mean_time": ("mean.c",),
               "mean_tokens_time": ("mean.c",), "sum_tokens_q": ("sum_q.c",),
               "sum_time_q": ("sum_q.c",), "sum_tokens_time_q": ("sum_q.c",)}

    def capture_function(self, b, name, args, kwargs, out):
        x = args[0]
        src = b.src(x, "mean")
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dims is None:
            raise SvtError("unsupported operation: mean over all dimensions")
        dims = sorted({d % x.dim() for d in ([dims] if isinstance(dims, int) else dims)})
        if src.op in ("linear", "dense") and src.kind in ("current", "scores") \
                and not b.consumers_of(src.name):
            self._fold_head_mean(b, src, x, dims, out)
            return True
        if src.kind not in ("spikes", "count", "vector", "current"):
            raise SvtError(f"unsupported operation: mean of {src.kind} values at {src.name}")
        node = Node(b.fresh("mean"), "mean", [src.name], "vector", src.channels,
                    attrs=mean_attrs(b, src, x, dims))
        b.add_node(node)
        b.bind(out, node.name)
        return True

    @staticmethod
    def _fold_head_mean(b, head: Node, x: torch.Tensor, dims: list[int], out) -> None:
        """A linear layer after the last LIF, averaged afterwards: the mean moves in front
        of the layer. Repeated means merge into one."""
        feed = b.node(head.inputs[0])
        # ``x`` has the head's output channels where ``feed`` had its input channels; the
        # token and time dimensions, the only ones a mean may cover, are the same
        attrs = mean_attrs(b, feed, x, dims)
        if feed.op == "mean" and len(b.consumers_of(feed.name)) == 1:
            feed.attrs.update({"tokens": feed.attrs["tokens"] or attrs["tokens"],
                               "time": feed.attrs["time"] or attrs["time"],
                               "has_time": attrs["has_time"]})
        else:
            mean = Node(b.fresh("mean"), "mean", [feed.name], "vector", feed.channels,
                        attrs=attrs)
            b.insert_before(head, mean)
            head.inputs = [mean.name]
        head.op, head.kind, head.height, head.width = "dense", "scores", 1, 1
        head.attrs["has_time"] = attrs["has_time"]
        b.bind(out, head.name)

    def run(self, n, vals, ir):
        y = vals[n.inputs[0]]
        if n.quant is not None:  # integer: sums (the head divides by folding the divisor)
            y = y.round().long() if y.is_floating_point() else y
            if n.attrs["tokens"]:
                y = y.flatten(-2).sum(-1)
            return y.sum(0) if n.attrs["time"] else y
        if n.attrs["tokens"]:
            y = y.flatten(-2).mean(-1)
        if n.attrs["time"]:
            y = y.mean(0)
        return y

    def quantize(self, n, qz):
        from ..quant.integer import SumQuant
        src = qz.ir.node(n.inputs[0])
        if src.kind not in ("spikes", "count") and src.quant is None:
            raise SvtError(f"integer precision: {n.name} averages {src.kind} values; only "
                           "means of spikes and counts are supported (use --precision fp32)")
        before = src.quant.divisor if src.quant is not None else 1
        n.quant = SumQuant(before * self._count(n, src, qz.ir))

    @staticmethod
    def _count(n, src, ir) -> int:
        """How many values one output sums."""
        return (src.tokens if n.attrs["tokens"] else 1) * (ir.timesteps if n.attrs["time"] else 1)

    def integer_bound(self, n, qz):
        src = qz.ir.node(n.inputs[0])
        return qz.bound(src.name) * self._count(n, src, qz.ir)

    def schedule(self, n, s):
        inputs = s.inputs(n)
        src = s.ir.node(n.inputs[0])
        floats = n.channels * (s.timesteps if n.attrs["has_time"] else 1)
        kernel = KERNELS[n.attrs["tokens"], n.attrs["time"]]
        if n.quant is not None:
            kernel = kernel.replace("mean", "sum") + "_q"
        return Step(n.name, kernel, [n.name], inputs,
                    "float" if n.quant is None else "int32", n.channels, 1, 1, floats * 4,
                    attrs={"tokens": src.tokens, "in_format": s.format_of(inputs[0])}, op=n.op)

    def c_call(self, step, c):
        src = step.inputs[0]
        if step.kernel == "sum_time_q":
            return CCall("svt_sum_time_q", [c.arena_i32(src), c.u(step.channels), c.T,
                                            c.arena_i32(step.name)])
        if step.kernel.endswith("_q"):
            return CCall("svt_" + step.kernel, [c.arena(src), c.fmt(src),
                                                c.u(step.attrs["tokens"]), c.u(step.channels),
                                                c.T, c.arena_i32(step.name)])
        if step.kernel == "mean_time":
            return CCall("svt_mean_time", [c.arena_f32(src), c.u(step.channels), c.T,
                                           c.arena_f32(step.name)])
        return CCall("svt_" + step.kernel, [c.arena(src), c.fmt(src), c.u(step.attrs["tokens"]),
                                            c.u(step.channels), c.T, c.arena_f32(step.name)])

    def tflite(self, n, vals, tfc):
        y, timed = vals[n.inputs[0]]
        tf = tfc.tf
        if n.attrs["tokens"] and len(y.shape) == 4:  # [TB, C] has one token
            y = tf.reduce_mean(y, axis=[1, 2])
        if n.attrs["time"]:
            y = tf.reduce_mean(tf.reshape(y, [tfc.timesteps, tfc.batch, *y.shape[1:]]), axis=0)
        return y, timed and not n.attrs["time"]


register(Mean())
