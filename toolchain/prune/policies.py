"""Allocation rules: how much of the accuracy drop each group may spend, and the uniform
baseline policy (one rate for every group)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SvtError
from ..ir import IR
from ..loading import LoadedModel
from ..memory import MemoryPlan, plan_memory
from .groups import Group, keep_count, pruned_copy, sized_groups
from .options import Budget

POLICIES = ("prioritized", "uniform")
ALLOCATIONS = ("proportional", "greedy")


@dataclass
class State:
    loaded: LoadedModel
    ir: IR
    plan: MemoryPlan
    accuracy: float  # check-subset accuracy


def state_of(loaded: LoadedModel, ir: IR, acc: float) -> State:
    return State(loaded, ir, plan_memory(ir), acc)


def drop_points(base: State, acc: float) -> float:
    """Accuracy drop from the baseline, in points."""
    return (base.accuracy - acc) * 100


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise SvtError(f"unknown policy {policy!r}; use prioritized or uniform")


def allocation_passes(allocation: str) -> tuple[bool, ...]:
    """The prioritized passes an allocation makes, each as its ``proportional`` flag.

    ``greedy`` is the paper's rule as literally stated: every group may spend all of the
    remaining drop. ``proportional`` gives each group a share of the remaining drop
    proportional to its size among the groups still to come (the largest group is often
    the most sensitive per byte, e.g. the embedding), then, if the budget is still not
    met, runs a greedy pass with whatever drop is left."""
    if allocation not in ALLOCATIONS:
        raise SvtError(f"unknown allocation {allocation!r}; use one of {ALLOCATIONS}")
    return (True, False) if allocation == "proportional" else (False,)


def drop_limit(sizes: list[float], i: int, spent: float, max_drop: float,
               proportional: bool) -> float:
    """The cumulative drop (points) the ``i``-th group may reach, ``spent`` being spent;
    ``sizes``: the groups' sizes in the pass's order (parameters, or instructions when only
    latency binds)."""
    if not proportional:
        return max_drop
    share = sizes[i] / sum(sizes[i:])
    return spent + max(0.0, max_drop - spent) * share


def uniform_rate_state(start: State, budget: Budget, groups: list[Group],
                       log) -> tuple[float, LoadedModel, IR]:
    """The smallest single rate (1 % steps) that, applied to every group, meets the budget."""
    groups = sized_groups(start.ir, groups)

    def apply(rate: float):
        loaded, ir = start.loaded, start.ir
        for g in groups:
            loaded, ir = pruned_copy(loaded, ir, g, keep_count(g.units, rate))
        return loaded, ir

    lo, hi = 0, 99  # percent; memory (and, near enough, work) shrinks with the rate
    loaded, ir = apply(hi / 100)
    if not budget.fits(plan_memory(ir), ir):
        return -1.0, loaded, ir
    best = (hi, loaded, ir)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        loaded, ir = apply(mid / 100)
        if budget.fits(plan_memory(ir), ir):
            hi, best = mid, (mid, loaded, ir)
        else:
            lo = mid
    rate, loaded, ir = best
    log(f"  uniform rate {rate}% meets the budget")
    return rate / 100, loaded, ir
