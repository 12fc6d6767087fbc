"""Memory model: the execution schedule the generated C runs, and its bytes.

The schedule is layer-major: each step runs all T timesteps of one layer before the
next. A synaptic layer (conv/linear/attention) and the LIF layer it feeds run as one
fused step that streams output neurons one pixel/token at a time, so membrane state
never exists for a whole layer. Between steps, spike trains are bit-packed (T bits per
neuron), a Spikformer residual stream holds one byte per neuron and timestep (small integer
sums of spikes), a Spike-driven "membrane shortcut" stream one float per neuron and timestep
(``membrane``: sums and max-pools of BatchNorm outputs), and the token/time means are
floats. A synaptic layer whose output is kept rather than fed to one LIF writes membrane
floats; a LIF on kept values runs as its own step. Every buffer lives in one static arena
whose offsets are planned here; the code generator emits exactly these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .boards import Board
from .errors import SvtError
from .ir import IR, Node

WEIGHT_BYTES = 4  # fp32 weights in flash
ARENA_ALIGN = 8


@dataclass
class Step:
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

    @property
    def neurons(self) -> int:
        return self.channels * self.height * self.width


@dataclass
class Buffer:
    name: str  # step name, or "<step>.scratch"
    size: int
    first: int  # step index where it is written
    last: int  # last step index that reads it
    offset: int = -1


@dataclass
class ArenaPlan:
    buffers: dict[str, Buffer]
    size: int

    def offset(self, name: str) -> int:
        return self.buffers[name].offset


@dataclass
class MemoryPlan:
    steps: list[Step]
    arena: ArenaPlan
    timesteps: int

    @property
    def weight_bytes(self) -> int:
        return sum(s.weight_bytes for s in self.steps)

    @property
    def arena_bytes(self) -> int:
        return self.arena.size

    @property
    def params(self) -> int:
        return sum(s.params for s in self.steps)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def spike_bytes(neurons: int, timesteps: int) -> int:
    return (neurons * timesteps + 7) // 8


def membrane_bytes(neurons: int, timesteps: int) -> int:
    """Kept currents: one float per neuron and timestep."""
    return neurons * timesteps * 4


def _lif_attrs(lif: Node) -> dict:
    return {**{k: lif.attrs[k] for k in ("tau", "v_threshold", "v_reset")}, "lif": lif.name}


def _align(n: int) -> int:
    return (n + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def kv_bytes_per_entry(tokens: int) -> int:
    """k^T v entries count co-active tokens: one byte while N <= 255."""
    return 1 if tokens <= 255 else 2


def build_schedule(ir: IR) -> list[Step]:
    t = ir.timesteps
    producer: dict[str, str] = {"input": "input"}  # IR node -> step that holds its value
    steps: list[Step] = []
    for n in ir.nodes:
        if n.op == "input" or n.name in producer:
            continue  # the image is the caller's; fused LIFs were planned with their producer
        if n.op in ("conv2d", "linear", "ssa", "kv_sum"):
            users = ir.consumers(n.name)
            only = users[0] if len(users) == 1 else None
            if n.op == "conv2d" and only is not None and only.op == "maxpool2d" \
                    and n.inputs[0] != "input":
                steps.append(_conv_maxpool_step(ir, n, only, producer, t))
            else:
                lif = only if only is not None and only.op == "lif" else None
                steps.append(_synaptic_step(ir, n, lif, producer, t))
            for fused in steps[-1].nodes:
                producer[fused] = n.name
            continue
        inputs = [producer[i] for i in n.inputs]
        in_format = _format_of(steps, inputs[0])
        membrane = membrane_bytes(n.tokens * n.channels, t)
        if n.op == "maxpool2d" and in_format == "membrane":
            step = Step(n.name, "maxpool2d_membrane", [n.name], inputs, "membrane", n.channels,
                        n.height, n.width, membrane, attrs=dict(n.attrs))
        elif n.op == "maxpool2d":
            step = Step(n.name, "maxpool2d", [n.name], inputs, "spikes", n.channels, n.height,
                        n.width, spike_bytes(n.tokens * n.channels, t), attrs=dict(n.attrs))
        elif n.op == "add" and n.kind == "current":
            step = Step(n.name, "add_membrane", [n.name], inputs, "membrane", n.channels,
                        n.height, n.width, membrane)
        elif n.op == "add":
            step = Step(n.name, "add", [n.name], inputs, "count", n.channels, n.height,
                        n.width, n.tokens * n.channels * t)
        elif n.op == "lif":  # on kept values: membrane [neuron][t] or features [t][c]
            strides = (t, 1) if in_format == "membrane" else (1, n.channels)
            step = Step(n.name, "lif_layer", [n.name], inputs, "spikes", n.channels, n.height,
                        n.width, spike_bytes(n.tokens * n.channels, t),
                        attrs={**_lif_attrs(n), "neuron_stride": strides[0],
                               "time_stride": strides[1]})
        elif n.op == "mask":
            step = Step(n.name, "spike_mask", [n.name], inputs, "spikes", n.channels, n.height,
                        n.width, spike_bytes(n.tokens * n.channels, t))
        elif n.op == "mean":
            src = ir.node(n.inputs[0])
            kernel = "mean_tokens" if n.attrs["tokens"] else "mean_time"
            if n.attrs["tokens"] and n.attrs["time"]:
                kernel = "mean_tokens_time"
            floats = n.channels * (t if n.attrs["has_time"] else 1)
            step = Step(n.name, kernel, [n.name], inputs, "float", n.channels, 1, 1, floats * 4,
                        attrs={"tokens": src.tokens, "in_format": _format_of(steps, inputs[0])})
        elif n.op == "dense":
            step = Step(n.name, "dense", [n.name], inputs, "scores", n.channels, 1, 1,
                        n.channels * 4, weight_bytes=n.params * WEIGHT_BYTES, params=n.params,
                        attrs={"in_channels": n.attrs["in_channels"]})
        else:  # pragma: no cover - extract_ir only emits the ops above
            raise AssertionError(n.op)
        steps.append(step)
        producer[n.name] = n.name
    return steps


def _format_of(steps: list[Step], name: str) -> str:
    if name == "input":
        return "analog"
    return next(s.out_format for s in steps if s.name == name)


def _synaptic_step(ir: IR, n: Node, lif: Node | None, producer: dict, t: int) -> Step:
    """A synaptic layer fused with the LIF it feeds, or (``lif`` None) one whose currents
    are kept as membrane floats for a residual stream or a max-pool."""
    inputs = [producer[i] for i in n.inputs]
    if lif is None:
        if n.op not in ("conv2d", "linear") or inputs[0] == "input":
            raise SvtError(f"unsupported structure at {n.name}: the output of this layer "
                           "must feed exactly one LIF neuron layer")
        lif_attrs, out_format = {}, "membrane"
        out = membrane_bytes(n.tokens * n.channels, t)
    else:
        lif_attrs = _lif_attrs(lif)
        out_format, out = "spikes", spike_bytes(n.tokens * n.channels, t)
    if n.op == "kv_sum":
        k = ir.node(n.inputs[0])
        return Step(n.name, "sdsa_kv_lif", [n.name, lif.name], inputs, "spikes", n.channels,
                    1, 1, out, attrs={**lif_attrs, "in_tokens": k.tokens})
    if n.op == "ssa":
        tokens = n.tokens
        kv = t * n.channels * n.attrs["head_dim"] * kv_bytes_per_entry(tokens)
        scratch = _align(kv) + t * n.channels * 4
        return Step(n.name, "ssa_lif", [n.name, lif.name], inputs, "spikes", n.channels,
                    n.height, n.width, out, scratch_bytes=scratch,
                    attrs={**lif_attrs, "heads": n.attrs["heads"],
                           "head_dim": n.attrs["head_dim"], "scale": n.attrs["scale"],
                           "kv_bytes": kv_bytes_per_entry(tokens)})
    src_format = "analog" if inputs[0] == "input" else None
    if n.op == "conv2d" and src_format == "analog":
        kernel, scratch = "conv2d_analog_lif", n.channels * 4
    else:
        kernel = "conv2d_spiking_lif" if n.op == "conv2d" else "linear_spiking_lif"
        scratch = t * n.channels * 4
    attrs = {**lif_attrs, **_synaptic_attrs(ir, n)}
    return Step(n.name, kernel, [n.name] + ([lif.name] if lif else []), inputs, out_format,
                n.channels, n.height, n.width, out, scratch_bytes=scratch,
                weight_bytes=n.params * WEIGHT_BYTES, params=n.params, attrs=attrs)


def _conv_maxpool_step(ir: IR, n: Node, pool: Node, producer: dict, t: int) -> Step:
    """A conv whose currents go only to a max-pool (a Spike-driven stem pooling BatchNorm
    outputs): pooled as they are computed, so only the pooled membrane is stored."""
    return Step(n.name, "conv2d_spiking_maxpool", [n.name, pool.name],
                [producer[n.inputs[0]]], "membrane", pool.channels, pool.height, pool.width,
                membrane_bytes(pool.tokens * pool.channels, t), scratch_bytes=t * n.channels * 4,
                weight_bytes=n.params * WEIGHT_BYTES, params=n.params,
                attrs={**_synaptic_attrs(ir, n), "conv_height": n.height, "conv_width": n.width,
                       "pool": {k: pool.attrs[k] for k in ("kernel", "stride", "padding")}})


def _synaptic_attrs(ir: IR, n: Node) -> dict:
    """A conv/linear layer's input shape (and a conv's window), as its kernel call needs."""
    src = ir.node(n.inputs[0])
    attrs = {"in_channels": n.attrs["in_channels"], "in_height": src.height,
             "in_width": src.width}
    if n.op == "conv2d":
        attrs.update(kernel=n.attrs["kernel"], stride=n.attrs["stride"],
                     padding=n.attrs["padding"])
    return attrs


def plan_arena(steps: list[Step]) -> ArenaPlan:
    """Greedy placement by size (as TFLM's greedy planner): biggest buffers first, each at
    the lowest offset that does not overlap a buffer alive at the same time."""
    index = {s.name: i for i, s in enumerate(steps)}
    last_use = {s.name: i for i, s in enumerate(steps)}
    for i, s in enumerate(steps):
        for src in s.inputs:
            if src != "input":
                last_use[src] = max(last_use[src], i)
    buffers: dict[str, Buffer] = {}
    owner: dict[str, str] = {}  # step -> buffer holding its output
    for i, s in enumerate(steps):
        s.in_place = None
        if s.out_format == "scores":
            continue  # written straight into the caller's score array
        first_in = s.inputs[0]
        if (s.kernel in ("add", "add_membrane") and first_in != "input"
                and steps[index[first_in]].out_format == s.out_format
                and last_use[first_in] == i):
            # x = x + f(x): the residual stream is updated in place
            s.in_place = first_in
            buf = buffers[owner[first_in]]
            buf.last = max(buf.last, last_use[s.name])
            owner[s.name] = buf.name
            continue
        buffers[s.name] = Buffer(s.name, _align(s.out_bytes), i, last_use[s.name])
        owner[s.name] = s.name
        if s.scratch_bytes:
            buffers[f"{s.name}.scratch"] = Buffer(f"{s.name}.scratch", _align(s.scratch_bytes),
                                                  i, i)
    placed: list[Buffer] = []
    for buf in sorted(buffers.values(), key=lambda b: (-b.size, b.first, b.name)):
        live = sorted((p for p in placed if p.first <= buf.last and buf.first <= p.last),
                      key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + buf.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
        buf.offset = offset
        placed.append(buf)
    for s in steps:  # aliases resolve to the buffer they share
        if s.name in owner and owner[s.name] != s.name:
            buffers[s.name] = buffers[owner[s.name]]
    size = max((b.offset + b.size for b in placed), default=0)
    return ArenaPlan(buffers, size)


def plan_memory(ir: IR) -> MemoryPlan:
    steps = build_schedule(ir)
    return MemoryPlan(steps, plan_arena(steps), ir.timesteps)


def time_major_state_bytes(ir: IR) -> int:
    """Membrane state a time-major schedule keeps alive: every LIF neuron, fp32."""
    return sum(n.tokens * n.channels * 4 for n in ir.nodes if n.op == "lif")


@dataclass
class Fit:
    flash_needed: int
    flash_budget: int | None
    sram_needed: int
    sram_budget: int | None

    @property
    def flash_over(self) -> int:
        return 0 if self.flash_budget is None else max(0, self.flash_needed - self.flash_budget)

    @property
    def sram_over(self) -> int:
        return 0 if self.sram_budget is None else max(0, self.sram_needed - self.sram_budget)

    @property
    def fits(self) -> bool:
        return self.flash_over == 0 and self.sram_over == 0


def check_fit(plan: MemoryPlan, board: Board, flash_budget: int | None = None,
              sram_budget: int | None = None) -> Fit:
    return Fit(plan.weight_bytes, flash_budget if flash_budget is not None else board.flash_budget,
               plan.arena_bytes, sram_budget if sram_budget is not None else board.sram_budget)
