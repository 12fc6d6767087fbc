"""The intermediate representation every later stage reads: pruner, memory model, codegen.

The IR is discovered from a traced forward pass, not from class names: leaf modules
(Conv1d/Conv2d/Linear/BatchNorm/SpikingJelly LIF/MaxPool) are recorded through forward
hooks, and the tensor operations between them (add, matmul, scalar mul, mean, views)
through a ``TorchFunctionMode``. Pattern rules turn that trace into a short list of
nodes with BN already folded, and channel *spaces* say which module dimensions must
shrink together when a channel (or attention head) is removed.

Node kinds of values: ``analog`` (the image), ``current`` (float per neuron and timestep:
a synaptic layer's output before its LIF, or the real-valued "membrane shortcut" stream of
Spike-driven Transformers, sums and max-pools of such outputs), ``spikes`` (0/1 per
timestep), ``count`` (small integer sums of spikes on a Spikformer residual stream),
``vector`` (per-timestep or time-averaged float features) and ``scores``.

Two attention families: Spikformer's SSA (``(q kᵀ) v · scale``, node ``ssa``) and the
Spike-driven Transformer's SDSA (``q ⊙ LIF(Σ_tokens k ⊙ v)``, nodes ``kv_sum`` → ``lif`` →
``mask``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import neuron as sj_neuron
from torch.overrides import TorchFunctionMode

from .errors import SvtError
from .forward import logits_of, reset_state

TRACE_BATCH = 3  # a batch size unlikely to equal T, a head count or a channel width


@dataclass
class Node:
    name: str
    op: str  # input | conv2d | linear | lif | maxpool2d | add | ssa | kv_sum | mask | mean | dense
    inputs: list[str]
    kind: str  # analog | current | spikes | count | vector | scores
    channels: int
    height: int = 1
    width: int = 1
    weight: np.ndarray | None = None  # folded: [Cout, Cin, kh, kw] or [Cout, Cin]
    bias: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)  # torch modules this node came from
    space: str = ""  # channel space of the output

    @property
    def tokens(self) -> int:
        return self.height * self.width

    @property
    def params(self) -> int:
        return sum(a.size for a in (self.weight, self.bias) if a is not None)


@dataclass
class ChannelSpace:
    """Channels that must be removed together: one prunable group."""

    name: str
    size: int
    unit: int = 1  # channels per prunable unit (head_dim for attention)
    producers: list[str] = field(default_factory=list)  # modules whose output dim is here
    consumers: list[str] = field(default_factory=list)  # modules whose input dim is here
    norms: list[str] = field(default_factory=list)  # BatchNorms on this space
    heads_attr: tuple[str, str] | None = None  # (module, attribute) holding the head count
    prunable: bool = True
    reason: str = ""
    label: str = ""  # human-readable name

    @property
    def units(self) -> int:
        return self.size // self.unit


@dataclass
class IR:
    nodes: list[Node]
    spaces: dict[str, ChannelSpace]
    timesteps: int
    input_shape: tuple[int, int, int]
    num_classes: int

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)


# ----------------------------------------------------------------------------- tracing

_VIEW_OPS = {
    "reshape", "view", "flatten", "unflatten", "transpose", "permute", "contiguous",
    "squeeze", "unsqueeze", "clone", "detach", "float", "to", "t", "expand", "repeat",
    "__get__", "type_as", "swapaxes", "movedim",
}
_IGNORED_OPS = {"size", "dim", "numel", "__len__", "__format__", "__bool__", "item",
                "__repr__", "requires_grad_", "is_floating_point", "data_ptr", "__hash__",
                "zero_", "fill_", "copy_", "__setstate__", "__reduce_ex__", "zeros_like",
                "zeros", "ones", "ones_like", "full", "full_like"}


def _op_name(func) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name == "__get__":  # Tensor.shape / Tensor.T / Tensor.mT properties
        owner = getattr(func, "__self__", None)
        name = getattr(owner, "__name__", "__get__")
        return "__get__" if name in ("shape", "T", "mT", "data", "dtype", "device") else name
    return name


def _is_lif(m: nn.Module) -> bool:
    return isinstance(m, sj_neuron.BaseNode)


_LEAF_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d,
               nn.MaxPool1d, nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Flatten)


class _Trace(TorchFunctionMode):
    """Records module calls and the tensor ops outside them, in execution order."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.events: list[tuple] = []
        self.depth = 0
        self.keep: list = []  # keep tensors alive so id() stays unique
        self.handles = []
        self.names = {m: n for n, m in model.named_modules()}
        for m in model.modules():
            if _is_lif(m) or isinstance(m, _LEAF_TYPES) or not any(True for _ in m.children()):
                if m is model:
                    continue
                self.handles.append(m.register_forward_pre_hook(self._pre))
                self.handles.append(m.register_forward_hook(self._post))

    def _pre(self, module, args):
        self.depth += 1

    def _post(self, module, args, out):
        self.depth -= 1
        if self.depth == 0:
            self.keep.extend([*args, out])
            self.events.append(("module", self.names[module], module, args, out))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            self.keep.extend([args, out])
            self.events.append(("op", _op_name(func), func, args, kwargs, out))
        return out

    def remove(self):
        for h in self.handles:
            h.remove()


class _Builder:
    """Turns the trace into IR nodes. Each traced tensor maps to the node that produced it."""

    def __init__(self, model: nn.Module, image: torch.Tensor):
        self.model = model
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.val: dict[int, str] = {}  # id(tensor) -> node name
        self.pending_attn: dict[int, dict] = {}  # id(tensor) -> partial attention product
        self.counter: dict[str, int] = {}
        self.timesteps: int | None = None
        self.bn_of: dict[str, str] = {}  # node -> folded BN module
        self.input_id = id(image)
        c, h, w = (int(d) for d in image.shape[1:])
        self._add(Node("input", "input", [], "analog", c, h, w, space="input"))
        self.val[id(image)] = "input"

    # -- helpers
    def _fresh(self, base: str) -> str:
        self.counter[base] = self.counter.get(base, 0) + 1
        return f"{base}_{self.counter[base]}"

    def _add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.by_name[node.name] = node
        return node

    def _src(self, t, where: str) -> Node:
        if not isinstance(t, torch.Tensor) or id(t) not in self.val:
            raise SvtError(f"unsupported structure at {where}: its input is not produced by a "
                           "supported layer (Conv/Linear+BatchNorm, LIF, MaxPool, add, "
                           "attention matmul)")
        return self.by_name[self.val[id(t)]]

    def _graph_tensors(self, args) -> list[torch.Tensor]:
        found = []

        def walk(a):
            if isinstance(a, torch.Tensor):
                if id(a) in self.val or id(a) in self.pending_attn:
                    found.append(a)
            elif isinstance(a, (list, tuple)):
                for x in a:
                    walk(x)
        walk(args)
        return found

    # -- modules
    def module(self, name: str, m: nn.Module, args, out):
        x = args[0] if args else None
        if name in self.by_name or name in self.bn_of.values():
            if not isinstance(m, (nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Flatten)):
                raise SvtError(f"unsupported structure: module {name} is called twice in one "
                               "forward (shared weights or state)")
            name = self._fresh(name)
        if isinstance(m, (nn.Dropout, nn.Identity, nn.Flatten)):
            self.val[id(out)] = self._src(x, name).name
            return
        if isinstance(m, nn.Conv2d):
            return self._conv2d(name, m, x, out)
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            return self._linear(name, m, x, out)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._batchnorm(name, m, x, out)
        if _is_lif(m):
            return self._lif(name, m, x, out)
        if isinstance(m, nn.MaxPool2d):
            return self._maxpool(name, m, x, out)
        if isinstance(m, nn.MaxPool3d):
            raise SvtError(f"unsupported layer {name} (MaxPool3d): the Spike-driven "
                           "Transformer's DVS 'Erode' pooling is not supported yet")
        raise SvtError(f"unsupported layer {name} ({type(m).__name__}); supported: Conv1d, "
                       "Conv2d, Linear, BatchNorm1d/2d, SpikingJelly LIF, MaxPool2d")

    def _conv2d(self, name, m: nn.Conv2d, x, out):
        src = self._src(x, name)
        if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros" \
                or m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] \
                or not isinstance(m.padding, tuple) or m.padding[0] != m.padding[1]:
            raise SvtError(f"unsupported layer {name}: only square, ungrouped, undilated, "
                           "zero-padded Conv2d is supported")
        if src.kind not in ("analog", "spikes", "count"):
            raise SvtError(f"unsupported structure at {name}: Conv2d fed by {src.kind} values")
        h, w = out.shape[-2:]
        self._synaptic(name, "conv2d", m, src, out, int(h), int(w),
                       {"kernel": m.kernel_size[0], "stride": m.stride[0],
                        "padding": m.padding[0]})

    def _linear(self, name, m, x, out):
        src = self._src(x, name)
        if isinstance(m, nn.Conv1d) and (m.kernel_size != (1,) or m.groups != 1
                                         or m.stride != (1,)):
            raise SvtError(f"unsupported layer {name}: only kernel-1 Conv1d (a linear layer "
                           "over tokens) is supported")
        if src.kind in ("vector",):
            op = "dense"
        elif src.kind in ("spikes", "count"):
            op = "linear"
        else:
            raise SvtError(f"unsupported structure at {name}: linear layer fed by {src.kind}")
        self._synaptic(name, op, m, src, out, src.height, src.width, {})

    def _synaptic(self, name, op, m, src, out, h, w, attrs):
        weight = m.weight.detach().double()
        if op in ("linear", "dense") and weight.dim() == 3:
            weight = weight[:, :, 0]
        bias = (m.bias.detach().double() if m.bias is not None
                else torch.zeros(weight.shape[0], dtype=torch.float64))
        node = Node(name, op, [src.name], "scores" if op == "dense" else "current",
                    int(weight.shape[0]), h, w,
                    attrs=dict(attrs, in_channels=int(weight.shape[1]),
                               has_time=src.attrs.get("has_time", src.kind != "vector")),
                    modules=[name])
        node.weight, node.bias = weight, bias  # folded to float32 in finish()
        self._add(node)
        self.val[id(out)] = node.name

    def _batchnorm(self, name, m, x, out):
        src = self._src(x, name)
        if src.op not in ("conv2d", "linear") or src.name in self.bn_of \
                or self.consumers_recorded(src.name):
            raise SvtError(f"unsupported structure at {name}: BatchNorm must directly follow "
                           "a Conv/Linear layer")
        if not m.track_running_stats or m.running_mean is None:
            raise SvtError(f"unsupported layer {name}: BatchNorm without running statistics")
        scale = (m.weight.detach().double() if m.affine else 1.0) / torch.sqrt(
            m.running_var.double() + m.eps)
        shift = (m.bias.detach().double() if m.affine else 0.0) - m.running_mean.double() * scale
        shape = (-1,) + (1,) * (src.weight.dim() - 1)
        src.weight = src.weight * scale.reshape(shape)
        src.bias = src.bias * scale + shift
        src.modules.append(name)
        self.bn_of[src.name] = name
        self.val[id(out)] = src.name

    def consumers_of(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def consumers_recorded(self, name: str) -> bool:
        return bool(self.consumers_of(name))

    def _lif(self, name, m, x, out):
        src = self._src(x, name)
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
        t = int(x.shape[0])
        if self.timesteps is None:
            self.timesteps = t
        elif self.timesteps != t:
            raise SvtError(f"unsupported structure at {name}: {t} timesteps where earlier "
                           f"layers had {self.timesteps}")
        node = Node(name, "lif", [src.name], "spikes", src.channels, src.height, src.width,
                    attrs={"tau": float(m.tau), "v_threshold": float(m.v_threshold),
                           "v_reset": float(m.v_reset)}, modules=[name])
        self._add(node)
        self.val[id(out)] = node.name

    def _maxpool(self, name, m, x, out):
        src = self._src(x, name)
        k, s, p = (m.kernel_size, m.stride, m.padding)
        k, s, p = (v if isinstance(v, int) else v[0] for v in (k, s, p))
        if src.kind not in ("spikes", "current") or m.dilation not in (1, (1, 1)) \
                or m.ceil_mode:
            raise SvtError(f"unsupported structure at {name}: max-pool must act on spikes or "
                           "on BatchNorm outputs (no dilation, floor mode)")
        h, w = out.shape[-2:]
        node = Node(name, "maxpool2d", [src.name], src.kind, src.channels, int(h), int(w),
                    attrs={"kernel": k, "stride": s, "padding": p}, modules=[name])
        self._add(node)
        self.val[id(out)] = node.name

    # -- functional ops between modules
    def op(self, name: str, func, args, kwargs, out):
        if name in _IGNORED_OPS or not isinstance(out, torch.Tensor):
            return
        graph_args = self._graph_tensors((args, tuple(kwargs.values())))
        if not graph_args:
            return
        if name in _VIEW_OPS:
            src = graph_args[0]
            if id(src) in self.pending_attn:
                self.pending_attn[id(out)] = self.pending_attn[id(src)]
            else:
                self.val[id(out)] = self.val[id(src)]
            return
        if name in ("add", "__add__", "__iadd__", "__radd__"):
            return self._add_op(args, out)
        if name in ("matmul", "__matmul__", "bmm"):
            return self._matmul(args, out)
        if name in ("mul", "__mul__", "__rmul__", "__imul__") and len(graph_args) == 2:
            return self._hadamard(graph_args, out)
        if name in ("mul", "__mul__", "__rmul__", "__truediv__", "div", "__imul__"):
            return self._scale(name, args, out)
        if name == "sum":
            return self._sum(args, kwargs, out)
        if name == "mean":
            return self._mean(args, kwargs, out)
        raise SvtError(f"unsupported operation {name!r} in the model's forward; supported "
                       "between layers: add, matmul (attention), scalar mul, mean, reshapes, "
                       "and the Spike-driven attention's k*v, sum over tokens and mask")

    def _add_op(self, args, out):
        a, b = args[0], args[1]
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            raise SvtError("unsupported operation: adding a constant to an activation")
        na, nb = self._src(a, "add"), self._src(b, "add")
        if {na.kind, nb.kind} - {"spikes", "count", "current"}:
            raise SvtError(f"unsupported structure: add of {na.kind} ({na.name}) and "
                           f"{nb.kind} ({nb.name}); only spikes, spike counts and "
                           "BatchNorm outputs (a membrane shortcut) may be added")
        if na.tokens != nb.tokens or na.channels != nb.channels:
            raise SvtError(f"unsupported structure: add of {na.name} and {nb.name} with "
                           "different shapes (broadcasting)")
        # spikes + spikes stay integer counts; any real-valued operand makes a float stream
        kind = "current" if "current" in (na.kind, nb.kind) else "count"
        node = Node(self._fresh("add"), "add", [na.name, nb.name], kind, na.channels,
                    na.height, na.width)
        self._add(node)
        self.val[id(out)] = node.name

    def _matmul(self, args, out):
        a, b = args[0], args[1]
        pa, pb = self.pending_attn.get(id(a)), self.pending_attn.get(id(b))
        if pa is None and pb is None:
            na, nb = self._src(a, "matmul"), self._src(b, "matmul")
            if na.kind != "spikes" or nb.kind != "spikes":
                raise SvtError("unsupported operation: matmul outside spiking self-attention")
            # shape [..., N, d]: the last dim of the first operand is the head dim (q @ kᵀ)
            # or the token count (kᵀ @ v); the second case has the first operand transposed.
            self.pending_attn[id(out)] = {"first": (na.name, nb.name), "scale": 1.0,
                                          "a_shape": tuple(a.shape), "b_shape": tuple(b.shape)}
            return
        if pa is not None and pb is None:  # (q @ kᵀ) @ v
            nv = self._src(b, "attention")
            q, k = pa["first"]
            head_dim = pa["a_shape"][-1]
            v = nv.name
        elif pb is not None and pa is None:  # q @ (kᵀ @ v)
            nq = self._src(a, "attention")
            k, v = pb["first"]
            head_dim = pb["b_shape"][-1]
            q = nq.name
        else:
            raise SvtError("unsupported operation: product of two attention maps")
        pend = pa or pb
        nq, nk, nv = self.by_name[q], self.by_name[k], self.by_name[v]
        if not (nq.channels == nk.channels == nv.channels) or nq.channels % head_dim:
            raise SvtError(f"unsupported attention: q/k/v widths {nq.channels}/{nk.channels}/"
                           f"{nv.channels} with head dim {head_dim}")
        node = Node(self._fresh("ssa"), "ssa", [q, k, v], "current", nv.channels,
                    nq.height, nq.width,
                    attrs={"heads": nq.channels // head_dim, "head_dim": head_dim,
                           "scale": pend["scale"]})
        self._add(node)
        self.val[id(out)] = node.name

    def _hadamard(self, operands, out):
        """Products of two spike tensors: the Spike-driven attention's k ⊙ v (summed over
        tokens next) and q ⊙ mask (the mask: the attention LIF on that sum)."""
        a, b = operands
        na, nb = self._src(a, "mul"), self._src(b, "mul")
        if na.kind != "spikes" or nb.kind != "spikes":
            raise SvtError(f"unsupported operation: elementwise product of {na.kind} "
                           f"({na.name}) and {nb.kind} ({nb.name}); only spike tensors in "
                           "Spike-driven self-attention")
        masks = [n for n in (na, nb) if self.by_name[n.inputs[0]].op == "kv_sum"]
        if len(masks) == 1:
            mask = masks[0]
            q = nb if mask is na else na
            if q.channels != mask.channels:
                raise SvtError(f"unsupported attention: q width {q.channels}, mask width "
                               f"{mask.channels}")
            node = Node(self._fresh("mask"), "mask", [q.name, mask.name], "spikes", q.channels,
                        q.height, q.width)
            self._add(node)
            self.val[id(out)] = node.name
            return
        if a.shape != b.shape or na.channels != nb.channels or na.tokens != nb.tokens:
            raise SvtError(f"unsupported operation: product of spikes {na.name} and {nb.name} "
                           "outside Spike-driven self-attention")
        self.pending_attn[id(out)] = {"kv": (na.name, nb.name), "shape": tuple(a.shape)}

    def _sum(self, args, kwargs, out):
        """Σ over tokens of k ⊙ v: an integer count per channel and timestep."""
        x = args[0]
        pend = self.pending_attn.get(id(x))
        if pend is None or "kv" not in pend:
            raise SvtError("unsupported operation: sum outside Spike-driven self-attention "
                           "(k*v summed over tokens)")
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        nk, nv = (self.by_name[n] for n in pend["kv"])
        shape = pend["shape"]
        if len(dims) != 1 or int(shape[dims[0]]) != nk.tokens or nk.tokens == 1:
            raise SvtError("unsupported attention: k*v must be summed over its tokens only")
        head_dim = int(shape[-1])
        if nk.channels % head_dim:
            raise SvtError(f"unsupported attention: width {nk.channels}, head dim {head_dim}")
        node = Node(self._fresh("kv_sum"), "kv_sum", [nk.name, nv.name], "current",
                    nk.channels, attrs={"head_dim": head_dim,
                                        "heads": nk.channels // head_dim})
        self._add(node)
        self.val[id(out)] = node.name

    def _scale(self, name, args, out):
        tensor, scalar = args[0], args[1]
        if not isinstance(tensor, torch.Tensor) or (isinstance(scalar, torch.Tensor)
                                                    and scalar.numel() != 1):
            tensor, scalar = scalar, tensor
        if isinstance(scalar, torch.Tensor):
            scalar = float(scalar)
        if not isinstance(scalar, (int, float)):
            raise SvtError(f"unsupported operation {name}: elementwise product of activations")
        factor = 1.0 / scalar if name in ("__truediv__", "div") else float(scalar)
        if id(tensor) in self.pending_attn:
            pend = dict(self.pending_attn[id(tensor)])
            pend["scale"] *= factor
            self.pending_attn[id(out)] = pend
            return
        src = self._src(tensor, name)
        if src.op != "ssa" or self.consumers_recorded(src.name):
            raise SvtError(f"unsupported operation {name} by {scalar} on {src.name}: scaling "
                           "is supported only inside spiking self-attention")
        src.attrs["scale"] *= factor
        self.val[id(out)] = src.name

    def _mean(self, args, kwargs, out):
        x = args[0]
        src = self._src(x, "mean")
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dims is None:
            raise SvtError("unsupported operation: mean over all dimensions")
        dims = sorted({d % x.dim() for d in ([dims] if isinstance(dims, int) else dims)})
        if src.op in ("linear", "dense") and src.kind in ("current", "scores") \
                and not self.consumers_recorded(src.name):
            return self._fold_head_mean(src, x, dims, out)
        if src.kind not in ("spikes", "count", "vector", "current"):
            raise SvtError(f"unsupported operation: mean of {src.kind} values at {src.name}")
        node = Node(self._fresh("mean"), "mean", [src.name], "vector", src.channels,
                    attrs=self._mean_attrs(src, x, dims))
        self._add(node)
        self.val[id(out)] = node.name

    def _mean_attrs(self, src: Node, x: torch.Tensor, dims: list[int]) -> dict:
        """Which of tokens / time a mean over ``dims`` of ``x`` (the value of ``src``) covers."""
        is_vector = src.kind == "vector"
        has_time = not is_vector or src.attrs["has_time"]
        over_time = has_time and 0 in dims and x.shape[0] == self.timesteps
        rest = [d for d in dims if not (over_time and d == 0)]
        over_tokens = (not is_vector and bool(rest)
                       and math.prod(int(x.shape[d]) for d in rest) == src.tokens)
        if not is_vector and src.tokens == 1 and not rest:
            over_tokens = True  # one token (a LIF on averaged features): nothing to average
        if (rest and not over_tokens) or (not is_vector and not over_tokens):
            raise SvtError(f"unsupported operation: mean over dims {dims} of {src.name}; "
                           "supported: a mean over all tokens, then (or with) one over time")
        return {"tokens": over_tokens, "time": over_time,
                "has_time": has_time and not over_time}

    def _fold_head_mean(self, head: Node, x: torch.Tensor, dims: list[int], out) -> None:
        """A linear layer after the last LIF, averaged afterwards (per token or per timestep,
        then mean): the mean moves in front of the layer, mean(W·x + b) = W·mean(x) + b, so
        the head runs once on the averaged features. Repeated means merge into one."""
        feed = self.by_name[head.inputs[0]]
        # ``x`` has the head's output channels where ``feed`` had its input channels; the
        # token and time dimensions, the only ones a mean may cover, are the same
        attrs = self._mean_attrs(feed, x, dims)
        if feed.op == "mean" and len(self.consumers_of(feed.name)) == 1:
            merged = {"tokens": feed.attrs["tokens"] or attrs["tokens"],
                      "time": feed.attrs["time"] or attrs["time"], "has_time": attrs["has_time"]}
            feed.attrs.update(merged)
        else:
            mean = Node(self._fresh("mean"), "mean", [feed.name], "vector", feed.channels,
                        attrs=attrs)
            self.nodes.insert(self.nodes.index(head), mean)
            self.by_name[mean.name] = mean
            head.inputs = [mean.name]
        head.op, head.kind, head.height, head.width = "dense", "scores", 1, 1
        head.attrs["has_time"] = attrs["has_time"]
        self.val[id(out)] = head.name


def _trace(model: nn.Module, image: torch.Tensor):
    reset_state(model)  # outside the trace: the reset is not part of the network
    tracer = _Trace(model)
    try:
        with torch.no_grad(), tracer:
            out = logits_of(model(image))
    finally:
        tracer.remove()
        reset_state(model)  # leave no traced state behind for the next forward
    return tracer, out


def extract_ir(model: nn.Module, input_shape: tuple[int, int, int], *,
               verify: bool = True, seed: int = 0) -> IR:
    """Trace ``model`` on a random batch and build its IR (BN folded, spaces found)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand((TRACE_BATCH, *input_shape), generator=gen)
    tracer, out = _trace(model, image)
    b = _Builder(model, image)
    for ev in tracer.events:
        if ev[0] == "module":
            b.module(ev[1], ev[2], ev[3], ev[4])
        else:
            b.op(ev[1], ev[2], ev[3], ev[4], ev[5])
    if not isinstance(out, torch.Tensor) or id(out) not in b.val:
        raise SvtError("unsupported structure: the model's output does not come from a final "
                       "Linear classifier head")
    final = b.by_name[b.val[id(out)]]
    if final.op == "linear" and out.dim() == 3 and out.shape[0] == b.timesteps:
        raise SvtError("unsupported structure: the model returns class scores per timestep "
                       f"{tuple(out.shape)} (TET-style training output); average them over "
                       "time in the forward (e.g. x.mean(0)) for inference")
    if final.op != "dense" or b.timesteps is None:
        raise SvtError("unsupported structure: the model must end in a Linear head on "
                       "token/time-averaged spiking features")
    if final.attrs["has_time"]:  # head applied per timestep, then averaged
        raise SvtError("unsupported structure: the head output must be averaged over time "
                       "before the output")
    nodes = _live_nodes(b.nodes, final.name)
    for n in nodes:
        users = [u for u in nodes if n.name in u.inputs]
        if n.op in ("ssa", "kv_sum") and (len(users) != 1 or users[0].op != "lif"):
            raise SvtError(f"unsupported structure at {n.name}: attention output must feed "
                           "exactly one LIF neuron layer")
    for n in nodes:
        if n.weight is not None:
            n.weight = n.weight.float().numpy()
            n.bias = n.bias.float().numpy()
    ir = IR(nodes=nodes, spaces={}, timesteps=b.timesteps, input_shape=tuple(input_shape),
            num_classes=final.channels)
    _assign_spaces(ir, model)
    if verify:
        verify_ir(ir, model, image, out)
    return ir


def _live_nodes(nodes: list[Node], output: str) -> list[Node]:
    """Drop nodes whose results never reach the output (e.g. unused branches)."""
    live, stack = set(), [output]
    by_name = {n.name: n for n in nodes}
    while stack:
        name = stack.pop()
        if name not in live:
            live.add(name)
            stack.extend(by_name[name].inputs)
    return [n for n in nodes if n.name in live]


# ----------------------------------------------------------------------------- spaces

class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _common_prefix(names: list[str]) -> str:
    parts = [n.split(".") for n in names]
    prefix = []
    for group in zip(*parts):
        if len(set(group)) != 1:
            break
        prefix.append(group[0])
    return ".".join(prefix)


def _assign_spaces(ir: IR, model: nn.Module) -> None:
    uf = _UnionFind()
    key = {}  # node -> raw space key
    for n in ir.nodes:
        if n.op == "input":
            key[n.name] = "input"
        elif n.op in ("conv2d", "linear", "dense"):
            key[n.name] = f"out:{n.name}"
        elif n.op in ("lif", "maxpool2d", "mean"):
            key[n.name] = key[n.inputs[0]]
        elif n.op == "add":
            uf.union(key[n.inputs[0]], key[n.inputs[1]])
            key[n.name] = key[n.inputs[0]]
        elif n.op == "ssa":
            q, k, v = n.inputs
            uf.union(key[q], key[k])
            uf.union(key[q], key[v])
            key[n.name] = key[q]
        elif n.op in ("kv_sum", "mask"):  # channel-wise: k, v, the mask and q share channels
            uf.union(key[n.inputs[0]], key[n.inputs[1]])
            key[n.name] = key[n.inputs[0]]
    for n in ir.nodes:
        n.space = uf.find(key[n.name])

    modules = dict(model.named_modules())
    spaces: dict[str, ChannelSpace] = {}
    for n in ir.nodes:
        sp = spaces.setdefault(n.space, ChannelSpace(n.space, n.channels))
        if n.op in ("conv2d", "linear", "dense"):
            sp.producers.append(n.modules[0])
            sp.norms.extend(n.modules[1:])
            src = ir.node(n.inputs[0])
            spaces.setdefault(src.space, ChannelSpace(src.space, src.channels)) \
                .consumers.append(n.modules[0])
        if n.op in ("ssa", "kv_sum"):  # heads: the forward splits channels by head count
            sp.unit = n.attrs["head_dim"]
            qkv = [ir.node(ir.node(i).inputs[0]).modules[0] for i in n.inputs]
            owner = _common_prefix(qkv)
            sp.heads_attr = _find_heads_attr(modules, owner, n.attrs["heads"])
    for sp in spaces.values():
        if sp.name == "input":
            sp.prunable, sp.reason, sp.label = False, "model input", "input"
        elif not sp.consumers:
            sp.prunable, sp.reason, sp.label = False, "model output", "classes"
        elif sp.unit > 1 and sp.heads_attr is None:
            sp.prunable, sp.reason = False, "no head-count attribute found on the attention module"
        elif sp.unit == 1 and len(sp.producers) > 1:
            sp.label = "embedding (residual stream)"
        if sp.units <= 1 and sp.prunable:
            sp.prunable, sp.reason = False, "a single unit"
        if not sp.label:
            sp.label = _space_label(sp)
    ir.spaces = spaces


def _space_label(sp: ChannelSpace) -> str:
    first = sp.producers[0] if sp.producers else sp.name
    if sp.unit > 1:
        return f"heads of {_common_prefix(sp.producers) or first}"
    return f"outputs of {first}"


def _find_heads_attr(modules: dict, owner: str, heads: int):
    """The int attribute holding the head count on the attention module (or an ancestor)."""
    path = owner
    while True:
        m = modules.get(path)
        if m is not None:
            for attr in ("num_heads", "heads", "n_heads", "num_head", "nheads", "head"):
                if isinstance(getattr(m, attr, None), int) and getattr(m, attr) == heads:
                    return (path, attr)
        if not path:
            return None
        path = path.rpartition(".")[0]


# ----------------------------------------------------------------------------- interpreter

@torch.no_grad()
def run_ir(ir: IR, images: torch.Tensor, collect: bool = False):
    """Execute the IR with the arithmetic the generated C uses (BN folded, float32).

    Returns class scores ``[B, classes]`` (and, with ``collect``, every node's value).
    Token tensors are ``[T, B, C, H, W]``; vectors ``[T, B, C]`` or ``[B, C]``.
    """
    t_steps = ir.timesteps
    vals: dict[str, torch.Tensor] = {}
    for n in ir.nodes:
        if n.op == "input":
            vals[n.name] = images.float()
            continue
        x = vals[n.inputs[0]]
        if n.op in ("conv2d", "linear", "dense"):
            w, b = torch.from_numpy(n.weight), torch.from_numpy(n.bias)
            src = ir.node(n.inputs[0])
            if n.op == "conv2d" and src.kind == "analog":
                y = F.conv2d(x, w, b, n.attrs["stride"], n.attrs["padding"])
                y = y.unsqueeze(0).expand(t_steps, *y.shape)  # the image repeats: compute once
            elif n.op == "conv2d":
                y = F.conv2d(x.flatten(0, 1), w, b, n.attrs["stride"], n.attrs["padding"])
                y = y.reshape(t_steps, -1, *y.shape[1:])
            elif n.op == "linear":
                y = torch.einsum("tbchw,oc->tbohw", x, w) + b[:, None, None]
            else:
                y = F.linear(x, w, b)
            vals[n.name] = y
        elif n.op == "lif":
            if x.dim() == 3:  # a LIF on [T, B, C] features: one token
                x = x[..., None, None]
            vals[n.name] = lif_reference(x, n.attrs["tau"], n.attrs["v_threshold"],
                                         n.attrs["v_reset"])
        elif n.op == "kv_sum":  # Σ over tokens of k ⊙ v: [T, B, C, 1, 1] counts
            vals[n.name] = (x * vals[n.inputs[1]]).sum((-2, -1), keepdim=True)
        elif n.op == "mask":  # q ⊙ mask, the mask broadcast over tokens
            vals[n.name] = x * vals[n.inputs[1]]
        elif n.op == "maxpool2d":
            y = F.max_pool2d(x.flatten(0, 1), n.attrs["kernel"], n.attrs["stride"],
                             n.attrs["padding"])
            vals[n.name] = y.reshape(t_steps, -1, *y.shape[1:])
        elif n.op == "add":
            vals[n.name] = x + vals[n.inputs[1]]
        elif n.op == "ssa":
            vals[n.name] = ssa_reference(vals[n.inputs[0]], vals[n.inputs[1]],
                                         vals[n.inputs[2]], n.attrs["heads"], n.attrs["scale"])
        elif n.op == "mean":
            y = x
            if n.attrs["tokens"]:
                y = y.flatten(-2).mean(-1)
            if n.attrs["time"]:
                y = y.mean(0)
            vals[n.name] = y
        else:  # pragma: no cover - the builder only creates the ops above
            raise AssertionError(n.op)
    out = vals[ir.nodes[-1].name]
    return (out, vals) if collect else out


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


def ssa_reference(q, k, v, heads: int, scale: float):
    t, b, c, h, w = q.shape

    def split(x):  # -> [T, B, heads, N, d], channel = head * d + j
        return x.reshape(t, b, heads, c // heads, h * w).transpose(-1, -2)

    y = (split(q) @ split(k).transpose(-1, -2)) @ split(v) * scale
    return y.transpose(-1, -2).reshape(t, b, c, h, w)


def verify_ir(ir: IR, model: nn.Module, image: torch.Tensor, expected: torch.Tensor) -> None:
    """The IR must reproduce the model: a wrong structural guess fails loudly here."""
    got = run_ir(ir, image)
    if got.shape != expected.shape:
        raise SvtError(f"unsupported structure: the extracted network outputs {tuple(got.shape)}"
                       f" where the model outputs {tuple(expected.shape)}")
    err = (got - expected).abs().max().item()
    tol = 1e-3 * max(1.0, expected.abs().max().item())
    if err > tol:
        raise SvtError(f"unsupported structure: the extracted network differs from the model "
                       f"(max |diff| {err:.3g}); check the layer order and tensor layouts")
