"""What every op module provides, and the shared pieces they build from.

An op (TFLite Micro's registration, in Python) owns everything about one IR node kind:

- ``capture_module`` / ``capture_function``: how the tracer recognises it in a forward pass
  (the torch module types and tensor functions it claims);
- ``run``: its arithmetic in PyTorch, exactly as the generated C computes it;
- ``couple``: which channel spaces it ties together (what the pruner must cut as one);
- ``work``: the multiply-accumulates, synaptic operations and neuron updates it costs;
- ``schedule``: its memory step (output format and bytes, scratch, weights), fusing the
  LIF or pool it feeds where its kernel does;
- ``c_call``: the kernel call the model's C makes for that step, with its parameter struct;
- ``tflite``: its lowering to TensorFlow ops for the TFLite export;
- ``quantize`` / ``integer_bound``: its integer arithmetic (``quant/integer.py``), which
  ``run`` and ``c_call`` then follow.

The tracer, the interpreter, the schedule, the code generator and the TFLite exporter only
loop over the registry (``ops/registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SvtError
from ..graph import IR, Node
from ..resources import TEMPLATES_DIR

WEIGHT_BYTES = 4  # fp32 weights in flash
ARENA_ALIGN = 8
KERNELS_DIR = TEMPLATES_DIR / "kernels"


@dataclass
class Step:
    """One call of the generated ``svt_model_run``: all T timesteps of one (fused) layer."""

    name: str
    kernel: str
    nodes: list[str]  # IR nodes this step executes
    inputs: list[str]  # steps whose outputs it reads ("input" is the image)
    out_format: str  # spikes | count | membrane | float | scores
    channels: int
    height: int
    width: int
    out_bytes: int
    scratch_bytes: int = 0
    weight_bytes: int = 0
    params: int = 0
    attrs: dict = field(default_factory=dict)
    in_place: str | None = None  # step whose buffer this output reuses
    op: str = ""  # the op kind whose module schedules and emits this step
    updates_first_input: bool = False  # out = in0 + ...: may reuse in0's buffer

    @property
    def neurons(self) -> int:
        return self.channels * self.height * self.width


def spike_bytes(neurons: int, timesteps: int) -> int:
    return (neurons * timesteps + 7) // 8


def membrane_bytes(neurons: int, timesteps: int) -> int:
    """Kept currents: one float per neuron and timestep."""
    return neurons * timesteps * 4


def align(n: int) -> int:
    return (n + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def lif_attrs(lif: Node) -> dict:
    return {**{k: lif.attrs[k] for k in ("tau", "v_threshold", "v_reset")}, "lif": lif.name}


@dataclass
class Schedule:
    """What a step being planned may ask about the steps before it."""

    ir: IR
    steps: list[Step]
    producer: dict[str, str]  # IR node -> step holding its value

    @property
    def timesteps(self) -> int:
        return self.ir.timesteps

    def inputs(self, n: Node) -> list[str]:
        return [self.producer[i] for i in n.inputs]

    def format_of(self, step_name: str) -> str:
        if step_name == "input":
            return "analog"
        return next(s.out_format for s in self.steps if s.name == step_name)

    def only_consumer(self, n: Node) -> Node | None:
        users = self.ir.consumers(n.name)
        return users[0] if len(users) == 1 else None


@dataclass
class ParamStruct:
    """A ``static const`` parameter struct the kernel call points to (CMSIS-NN style)."""

    c_type: str
    symbol: str
    fields: dict[str, str]  # C member -> C value, in declaration order

    def initializer_lines(self, width: int = 92) -> list[str]:
        """Designated initializers (``.in_c = 4u``), wrapped to ``width`` columns."""
        lines, line = [], ""
        for name, value in self.fields.items():
            item = f".{name} = {value},"
            if line and len(line) + 1 + len(item) > width:
                lines.append(line)
                line = item
            else:
                line = f"{line} {item}".strip()
        return lines + [line] if line else lines


@dataclass
class Work:
    """What one node computes for a batch of images (see ``Op.work``): dense
    multiply-accumulates (what a dense kernel of the same shape executes), synaptic
    operations (input events x the outputs each reaches: what an event-driven kernel
    must at least add) and neuron updates (one LIF membrane step per neuron and timestep)."""

    macs: int = 0
    sops: int = 0
    neuron_updates: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(self.macs + other.macs, self.sops + other.sops,
                    self.neuron_updates + other.neuron_updates)


def events(x) -> int:
    """Spike events in a value of spikes (0/1) or spike counts (a residual stream's sums):
    each spike adds its weight column once, so a count of k is k events."""
    return int(x.double().sum().item())


@dataclass
class CCall:
    function: str
    args: list[str]
    params: list[ParamStruct] = field(default_factory=list)


class Op:
    """Base of every op module's registration. Subclasses override what they support."""

    kind: str = ""
    modules: tuple[type, ...] = ()  # torch module types this op is captured from
    functions: tuple[str, ...] = ()  # torch function names this op is captured from
    has_weights: bool = False  # a synaptic layer: weights in flash, output channels prunable
    kernels: dict[str, tuple[str, ...]] = {}  # kernel -> its C files
    # event-driven C file -> its dense twin (same function, dense loops): `--kernels dense`
    dense_twins: dict[str, str] = {}
    kernel_dir: Path = KERNELS_DIR
    c_declarations: tuple[str, ...] = ()  # prototypes of kernels not in svt_kernels.h

    # -- tracing: return True when the event was this op's (else the next candidate tries)
    def capture_module(self, b, name: str, m, x, out) -> bool:
        return False

    def capture_function(self, b, name: str, args, kwargs, out) -> bool:
        return False

    # -- interpretation
    def run(self, n: Node, vals: dict, ir: IR):
        raise NotImplementedError(self.kind)

    # -- channel spaces: the raw space key of n's output (``union`` ties two keys)
    def couple(self, n: Node, key: dict, union) -> str:
        return key[n.inputs[0]]

    def head_dim(self, n: Node) -> int | None:
        """Channels per prunable unit when n's space is split into attention heads."""
        return None

    # -- work: what n computes for the batch in ``vals`` (every node's value, run_ir's
    #    ``collect``); ops that neither multiply nor update neurons count nothing
    def work(self, n: Node, vals: dict, ir: IR) -> Work:
        return Work()

    # -- memory
    def schedule(self, n: Node, s: Schedule) -> Step:
        raise NotImplementedError(self.kind)

    # -- C
    def weight_layout(self, step: Step, weight: np.ndarray) -> tuple[np.ndarray, str]:
        return weight, f"[out {weight.shape[0]}][in {weight.shape[1]}]"

    def c_call(self, step: Step, c) -> CCall:
        raise NotImplementedError(self.kind)

    # -- integer precision (quant/integer.py): set n.quant so that ``run`` and the C compute
    #    in integers. Ops whose values pass through exactly (spikes, counts) set nothing.
    integer_neutral = False

    def quantize(self, n: Node, qz) -> None:
        if not self.integer_neutral:
            raise SvtError(f"integer precision does not support {n.op} layers yet ({n.name}); "
                           "use --precision fp32")

    def integer_bound(self, n: Node, qz) -> int:
        """The largest magnitude n's value can take as a later layer's integer input."""
        return 1 if n.kind == "spikes" else qz.bound(n.inputs[0])

    # -- TFLite: returns (tensor, timed)
    def tflite(self, n: Node, vals: dict, tfc):
        raise SvtError(f"the TFLite export does not support IR op {n.op!r}")
