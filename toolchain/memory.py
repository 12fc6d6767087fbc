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

from dataclasses import dataclass

from . import ops
from .boards import Board
from .graph import IR
from .ops.base import WEIGHT_BYTES, Schedule, Step, align, membrane_bytes, spike_bytes
from .ops.ssa import kv_bytes_per_entry

__all__ = ["WEIGHT_BYTES", "ArenaPlan", "Buffer", "Fit", "MemoryPlan", "Step", "align",
           "build_schedule", "check_fit", "kv_bytes_per_entry", "membrane_bytes",
           "plan_arena", "plan_memory", "spike_bytes", "time_major_state_bytes"]


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


def build_schedule(ir: IR) -> list[Step]:
    """One step per IR node, each planned by its op; an op whose kernel fuses the nodes
    after it (a LIF, a max-pool) claims them, and they get no step of their own."""
    sched = Schedule(ir, [], {"input": "input"})
    for n in ir.nodes:
        if n.op == "input" or n.name in sched.producer:
            continue  # the image is the caller's; fused nodes were planned with their producer
        step = ops.get(n.op).schedule(n, sched)
        sched.steps.append(step)
        for fused in step.nodes:
            sched.producer[fused] = step.name
    return sched.steps


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
        if (s.updates_first_input and first_in != "input"
                and steps[index[first_in]].out_format == s.out_format
                and last_use[first_in] == i):
            # x = x + f(x): the residual stream is updated in place
            s.in_place = first_in
            buf = buffers[owner[first_in]]
            buf.last = max(buf.last, last_use[s.name])
            owner[s.name] = buf.name
            continue
        buffers[s.name] = Buffer(s.name, align(s.out_bytes), i, last_use[s.name])
        owner[s.name] = s.name
        if s.scratch_bytes:
            buffers[f"{s.name}.scratch"] = Buffer(f"{s.name}.scratch", align(s.scratch_bytes),
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
