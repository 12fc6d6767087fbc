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

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from . import ops
from .errors import SvtError
from .forward import logits_of, reset_state
from .graph import IR, ChannelSpace, Node
from .ops.lif import lif_reference
from .ops.ssa import ssa_reference

__all__ = ["IR", "ChannelSpace", "Node", "extract_ir", "lif_reference", "run_ir",
           "ssa_reference", "verify_ir"]

TRACE_BATCH = 3  # a batch size unlikely to equal T, a head count or a channel width


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


# Modules the tracer records as one event (it never looks inside them): what the builder
# handles itself, plus every module type an op registers for.
_PASSTHROUGH = (nn.Dropout, nn.Identity, nn.Flatten)
_STRUCTURAL = (nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool1d) + _PASSTHROUGH


def _leaf_types() -> tuple[type, ...]:
    return _STRUCTURAL + tuple(t for op in ops.all_ops() for t in op.modules)


class _Trace(TorchFunctionMode):
    """Records module calls and the tensor ops outside them, in execution order."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.events: list[tuple] = []
        self.depth = 0
        self.keep: list = []  # keep tensors alive so id() stays unique
        self.handles = []
        self.names = {m: n for n, m in model.named_modules()}
        leaves = _leaf_types()
        for m in model.modules():
            if isinstance(m, leaves) or not any(True for _ in m.children()):
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
    """Turns the trace into IR nodes. Each traced tensor maps to the node that produced it.

    The builder knows only the structure-neutral events (views, passthrough modules, the
    BatchNorm fold); every op is captured by its registered op module, which calls back the
    public methods below.
    """

    def __init__(self, model: nn.Module, image: torch.Tensor):
        self.model = model
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.val: dict[int, str] = {}  # id(tensor) -> node name
        self.pending: dict[int, dict] = {}  # id(tensor) -> a partial attention product
        self.counter: dict[str, int] = {}
        self.timesteps: int | None = None
        self.bn_of: dict[str, str] = {}  # node -> folded BN module
        c, h, w = (int(d) for d in image.shape[1:])
        self.add_node(Node("input", "input", [], "analog", c, h, w, space="input"))
        self.val[id(image)] = "input"

    # -- the API op modules build with
    def fresh(self, base: str) -> str:
        self.counter[base] = self.counter.get(base, 0) + 1
        return f"{base}_{self.counter[base]}"

    def add_node(self, node: Node) -> Node:
        self.nodes.append(node)
        self.by_name[node.name] = node
        return node

    def insert_before(self, anchor: Node, node: Node) -> Node:
        self.nodes.insert(self.nodes.index(anchor), node)
        self.by_name[node.name] = node
        return node

    def bind(self, tensor: torch.Tensor, name: str) -> None:
        """The traced ``tensor`` holds the value of node ``name``."""
        self.val[id(tensor)] = name

    def node(self, name: str) -> Node:
        return self.by_name[name]

    def src(self, t, where: str) -> Node:
        if not isinstance(t, torch.Tensor) or id(t) not in self.val:
            raise SvtError(f"unsupported structure at {where}: its input is not produced by a "
                           "supported layer (Conv/Linear+BatchNorm, LIF, MaxPool, add, "
                           "attention matmul)")
        return self.by_name[self.val[id(t)]]

    def graph_args(self, args, kwargs=None) -> list[torch.Tensor]:
        """The tensors among ``args`` that carry graph values (or partial products)."""
        found = []

        def walk(a):
            if isinstance(a, torch.Tensor):
                if id(a) in self.val or id(a) in self.pending:
                    found.append(a)
            elif isinstance(a, (list, tuple)):
                for x in a:
                    walk(x)
        walk((args, tuple((kwargs or {}).values())))
        return found

    def consumers_of(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def set_timesteps(self, t: int, where: str) -> None:
        if self.timesteps is None:
            self.timesteps = t
        elif self.timesteps != t:
            raise SvtError(f"unsupported structure at {where}: {t} timesteps where earlier "
                           f"layers had {self.timesteps}")

    # -- modules
    def module(self, name: str, m: nn.Module, args, out):
        x = args[0] if args else None
        candidates = ops.registry.module_candidates(m)
        if name in self.by_name or name in self.bn_of.values():
            reusable = isinstance(m, _PASSTHROUGH) or any(
                getattr(op, "reusable_modules", False) for op in candidates)
            if not reusable:
                raise SvtError(f"unsupported structure: module {name} is called twice in one "
                               "forward (shared weights or state)")
            name = self.fresh(name)
        if isinstance(m, _PASSTHROUGH):
            self.bind(out, self.src(x, name).name)
            return
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._batchnorm(name, m, x, out)
        for op in candidates:
            if op.capture_module(self, name, m, x, out):
                return
        raise SvtError(f"unsupported layer {name} ({type(m).__name__}); supported: Conv1d, "
                       "Conv2d, Linear, BatchNorm1d/2d, SpikingJelly LIF, MaxPool2d")

    def _batchnorm(self, name, m, x, out):
        """BatchNorm folds into the Conv/Linear before it: no node of its own."""
        src = self.src(x, name)
        if src.op not in ("conv2d", "linear") or src.name in self.bn_of \
                or self.consumers_of(src.name):
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
        self.bind(out, src.name)

    # -- functional ops between modules
    def op(self, name: str, func, args, kwargs, out):
        if name in _IGNORED_OPS or not isinstance(out, torch.Tensor):
            return
        graph_args = self.graph_args(args, kwargs)
        if not graph_args:
            return
        if name in _VIEW_OPS:
            src = graph_args[0]
            if id(src) in self.pending:
                self.pending[id(out)] = self.pending[id(src)]
            else:
                self.val[id(out)] = self.val[id(src)]
            return
        for op in ops.registry.function_candidates(name):
            if op.capture_function(self, name, args, kwargs, out):
                return
        raise SvtError(f"unsupported operation {name!r} in the model's forward; supported "
                       "between layers: add, matmul (attention), scalar mul, mean, reshapes, "
                       "and the Spike-driven attention's k*v, sum over tokens and mask")


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
    key = {"input": "input"}  # node -> raw space key, from each op's coupling rule
    for n in ir.nodes:
        if n.op != "input":
            key[n.name] = ops.get(n.op).couple(n, key, uf.union)
    for n in ir.nodes:
        n.space = uf.find(key[n.name])

    modules = dict(model.named_modules())
    spaces: dict[str, ChannelSpace] = {}
    for n in ir.nodes:
        sp = spaces.setdefault(n.space, ChannelSpace(n.space, n.channels))
        op = ops.get(n.op) if n.op != "input" else None
        if op is not None and op.has_weights:
            sp.producers.append(n.modules[0])
            sp.norms.extend(n.modules[1:])
            src = ir.node(n.inputs[0])
            spaces.setdefault(src.space, ChannelSpace(src.space, src.channels)) \
                .consumers.append(n.modules[0])
        head_dim = op.head_dim(n) if op is not None else None
        if head_dim:  # heads: the forward splits channels by head count
            sp.unit = head_dim
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
    """Execute the IR with the arithmetic the generated C uses (BN folded, float32): each
    node by its op's ``run``.

    Returns class scores ``[B, classes]`` (and, with ``collect``, every node's value).
    Token tensors are ``[T, B, C, H, W]``; vectors ``[T, B, C]`` or ``[B, C]``.
    """
    vals: dict[str, torch.Tensor] = {}
    for n in ir.nodes:
        if n.op == "input":
            vals[n.name] = images.float()
        else:
            vals[n.name] = ops.get(n.op).run(n, vals, ir)
    out = vals[ir.nodes[-1].name]
    return (out, vals) if collect else out


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
