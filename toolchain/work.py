"""The work one inference costs, per step of the schedule: dense multiply-accumulates,
synaptic operations (SOPs: input events x the outputs each reaches) and neuron updates,
counted by each op (``Op.work``) on the values the IR computes for real images, so the
SOPs follow the spike rates of those images.

SOPs plus neuron updates is the floor an event-driven kernel can reach: every spike must
add its weight column, every neuron must step its membrane. Dense MACs are what a kernel
that walks the whole shape executes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ops
from .ir import IR, run_ir
from .memory import MemoryPlan
from .ops.base import Work


@dataclass(frozen=True)
class StepWork:
    """One step's work per image (means over the images counted)."""

    name: str
    kernel: str
    macs: float
    sops: float
    neuron_updates: float
    input_rate: float | None  # fraction of its first input's values that are events
    input_events: float = 0.0  # nonzero values (spikes, counts) of all its inputs


@dataclass(frozen=True)
class WorkCount:
    steps: list[StepWork]
    images: int

    @property
    def macs(self) -> float:
        return sum(s.macs for s in self.steps)

    @property
    def sops(self) -> float:
        return sum(s.sops for s in self.steps)

    @property
    def neuron_updates(self) -> float:
        return sum(s.neuron_updates for s in self.steps)

    @property
    def floor(self) -> float:
        return self.sops + self.neuron_updates


def count_work(ir: IR, plan: MemoryPlan, images: torch.Tensor,
               batch_size: int = 50) -> WorkCount:
    """Work per image of every step of ``plan``, averaged over ``images`` ([N, C, H, W],
    as the model takes them)."""
    if len(images) == 0:
        raise ValueError("count_work needs at least one image")
    step_of = {node: s.name for s in plan.steps for node in s.nodes}
    totals = {s.name: Work() for s in plan.steps}
    events = {s.name: 0 for s in plan.steps}  # nonzero values of the first input
    values = {s.name: 0 for s in plan.steps}
    events_in = {s.name: 0 for s in plan.steps}  # ... of every input
    for start in range(0, len(images), batch_size):
        with torch.no_grad():
            _, vals = run_ir(ir, images[start:start + batch_size], collect=True)
        for n in ir.nodes:
            if n.op != "input" and n.name in step_of:
                totals[step_of[n.name]] += ops.get(n.op).work(n, vals, ir)
        for s in plan.steps:
            for i, src in enumerate(s.inputs):
                if _carries_events(plan, src):
                    x = vals[_value_of(plan, src)]
                    nonzero = int((x != 0).sum())
                    events_in[s.name] += nonzero
                    if i == 0:
                        events[s.name] += nonzero
                        values[s.name] += x.numel()
    n_img = len(images)
    return WorkCount([StepWork(s.name, s.kernel, totals[s.name].macs / n_img,
                               totals[s.name].sops / n_img,
                               totals[s.name].neuron_updates / n_img,
                               events[s.name] / values[s.name] if values[s.name] else None,
                               events_in[s.name] / n_img)
                      for s in plan.steps], n_img)


def _carries_events(plan: MemoryPlan, step_name: str) -> bool:
    return step_name != "input" and plan.step(step_name).out_format in ("spikes", "count")


def _value_of(plan: MemoryPlan, step_name: str) -> str:
    """The IR node whose value a step's output holds: its last node (a fused LIF's spikes,
    a fused pool's maxima)."""
    return plan.step(step_name).nodes[-1]
