"""PrimeSVT pruning (arXiv 2606.03428): prioritized, memory-aware structured pruning.

Units are whole channels of a channel space from the IR (SPS conv filters, MLP hidden
channels, attention heads, the embedding width across the residual stream); removing a
unit shrinks every module on that space (producers' outputs, their BatchNorms, consumers'
inputs), so the result is a smaller dense model.

Importance of a unit: the L2 norm of the BN-folded weights it touches, i.e. the rows it
produces (with the folded bias) and the columns that read it. Folding matters for
spiking layers: BN's gamma/sigma rescales what reaches the LIF threshold, so raw conv
weights misjudge a channel whose BN amplifies it; and a unit whose folded producer rows,
bias and consumer columns are all zero never spikes and is read by nobody, so removing
it changes nothing.

Decisions use a validation split carved from the training data; the test split is only
used to report.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write_bytes
from .data import Dataset
from .errors import InfeasibleBudget, SvtError
from .evaluate import accuracy
from .ir import IR, _common_prefix, extract_ir
from .loading import LoadedModel
from .memory import MemoryPlan, plan_memory
from .runtime import current
from .surgery import keep_inputs, keep_outputs

LADDER = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SYNAPTIC = ("conv2d", "linear", "dense")
NOISE_ALLOWANCE = 1.0  # points: keep climbing the ladder a little past max_drop (noisy subsets)


@dataclass
class Budget:
    flash_bytes: int | None  # weight bytes allowed (None: no limit)
    sram_bytes: int | None  # arena bytes allowed
    max_drop: float  # accuracy points
    source: str = ""

    def fits(self, plan: MemoryPlan) -> bool:
        return ((self.flash_bytes is None or plan.weight_bytes <= self.flash_bytes)
                and (self.sram_bytes is None or plan.arena_bytes <= self.sram_bytes))

    def describe(self) -> str:
        parts = []
        if self.flash_bytes is not None:
            parts.append(f"weights <= {self.flash_bytes:,} B")
        if self.sram_bytes is not None:
            parts.append(f"arena <= {self.sram_bytes:,} B")
        return ", ".join(parts) + f", drop <= {self.max_drop:g} pt ({self.source})"


@dataclass
class Group:
    """One prunable unit type: usually one channel space; several when the model's own
    forward ties their widths together (e.g. published Spikformer code reshapes q/k/v
    with the embedding width, so the embedding and the heads shrink in step)."""

    spaces: tuple[str, ...]
    label: str
    step: int  # channels each space loses per unit
    units: int = 0
    params: int = 0  # parameters of all layers touching the group (the ranking key)

    @property
    def space(self) -> str:
        return self.spaces[0]

    def keep_units(self, ir: IR, space: str, keep: int) -> int:
        """Units of ``space`` kept when the group keeps ``keep`` units."""
        return keep * self.step // ir.spaces[space].unit


def touching_params(ir: IR, spaces) -> int:
    spaces = set(spaces)
    return sum(n.params for n in ir.nodes if n.op in SYNAPTIC and (
        n.space in spaces or ir.node(n.inputs[0]).space in spaces))


def sized_groups(ir: IR, groups: list[Group]) -> list[Group]:
    """The groups with their current sizes in ``ir``, largest first; spent ones dropped."""
    out = []
    for g in groups:
        if g.space not in ir.spaces:
            continue
        units = ir.spaces[g.space].size // g.step
        if units >= 2:
            out.append(Group(g.spaces, g.label, g.step, units, touching_params(ir, g.spaces)))
    return sorted(out, key=lambda g: (-g.params, g.label))


def single_space_groups(ir: IR) -> list[Group]:
    """Every prunable space as its own group (no check that the forward follows)."""
    return sized_groups(ir, [Group((sp.name,), sp.label, sp.unit)
                             for sp in ir.spaces.values() if sp.prunable])


def discover_groups(loaded: LoadedModel, ir: IR, log=None) -> list[Group]:
    """Prunable groups of this model, checked by trial surgery: a space that cannot be
    pruned alone is tried together with the other spaces of the same width (at their
    common granularity), keeping the smallest set that works. Spaces that cannot be
    pruned at all are reported through ``log`` and left out."""
    import math

    candidates = [sp for sp in ir.spaces.values() if sp.prunable]

    def works(spaces: list[str]) -> int | None:
        step = math.lcm(*(ir.spaces[s].unit for s in spaces))
        if any(ir.spaces[s].size <= step for s in spaces):
            return None
        g = Group(tuple(spaces), "", step)
        try:
            pruned_copy(loaded, ir, g, ir.spaces[spaces[0]].size // step - 1)
            return step
        except SvtError:
            return None

    groups, failed = [], []
    for sp in candidates:
        if works([sp.name]) is not None:
            groups.append(Group((sp.name,), sp.label, sp.unit))
        else:
            failed.append(sp.name)
    linked: set[str] = set()
    for name in failed:
        if name in linked:
            continue
        size = ir.spaces[name].size
        spaces = [name] + [o.name for o in candidates
                           if o.name != name and o.size == size and o.name not in linked]
        if len(spaces) == 1 or works(spaces) is None:
            if log is not None:
                log(f"  {ir.spaces[name].label}: cannot be pruned (the model's forward does "
                    "not follow a smaller width); left as is")
            continue
        for partner in spaces[1:]:  # keep only the partners the forward really needs
            trial = [s for s in spaces if s != partner]
            if len(trial) > 1 and works(trial) is not None:
                spaces = trial
        linked.update(spaces)
        groups = [g for g in groups if g.space not in spaces]
        label = " + ".join(ir.spaces[s].label for s in spaces) + " (widths tied by the forward)"
        groups.append(Group(tuple(spaces), label, works(spaces)))
    return sized_groups(ir, groups)


def unit_importance(ir: IR, space: str) -> np.ndarray:
    """L2 norm per unit of the BN-folded weights (and biases) on ``space``."""
    sp = ir.spaces[space]
    sq = np.zeros(sp.size, np.float64)
    for n in ir.nodes:
        if n.op not in SYNAPTIC:
            continue
        w = n.weight.astype(np.float64).reshape(n.weight.shape[0], n.weight.shape[1], -1)
        if n.space == space:
            sq += (w ** 2).sum(axis=(1, 2)) + n.bias.astype(np.float64) ** 2
        if ir.node(n.inputs[0]).space == space:
            sq += (w ** 2).sum(axis=(0, 2))
    return np.sqrt(sq.reshape(sp.units, sp.unit).sum(axis=1))


def keep_count(units: int, rate: float) -> int:
    return max(1, units - int(round(rate * units)))


def _record_attr(loaded: LoadedModel, path: str, attr: str, value: int) -> None:
    loaded.attrs = {**loaded.attrs, path: {**loaded.attrs.get(path, {}), attr: value}}


def prune_space(loaded: LoadedModel, ir: IR, space: str, keep_units: int) -> None:
    """Remove the least important units of ``space`` in place (physical surgery).

    Besides the tensors, integer attributes of the module that owns the space and hold
    its width (e.g. a stored hidden size used in a reshape) follow the new width; the
    caller re-derives and verifies the IR, so a wrong guess cannot pass silently."""
    sp = ir.spaces[space]
    if keep_units >= sp.units:
        return
    imp = unit_importance(ir, space)
    keep = np.sort(np.argsort(-imp, kind="stable")[:keep_units])
    channels = torch.as_tensor((keep[:, None] * sp.unit + np.arange(sp.unit)).reshape(-1))
    modules = dict(loaded.model.named_modules())
    for name in sp.producers + sp.norms:
        keep_outputs(modules[name], channels)
    for name in sp.consumers:
        keep_inputs(modules[name], channels)
    if sp.heads_attr is not None:
        path, attr = sp.heads_attr
        setattr(modules[path], attr, keep_units)
        _record_attr(loaded, path, attr, keep_units)
    owner = _common_prefix(sp.producers + sp.norms + sp.consumers)
    if owner:
        for attr, value in list(vars(modules[owner]).items()):
            if type(value) is int and value == sp.size and (owner, attr) != sp.heads_attr:
                setattr(modules[owner], attr, len(channels))
                _record_attr(loaded, owner, attr, len(channels))


def prune_group(loaded: LoadedModel, ir: IR, group: Group, keep: int) -> None:
    for space in group.spaces:
        prune_space(loaded, ir, space, group.keep_units(ir, space, keep))


def pruned_copy(loaded: LoadedModel, ir: IR, group: Group, keep: int) -> tuple[LoadedModel, IR]:
    """A pruned copy and its re-derived (and verified) IR; a model whose forward cannot
    follow the surgery raises SvtError naming the group."""
    new = copy.deepcopy(loaded)
    prune_group(new, ir, group, keep)
    try:
        return new, extract_ir(new.model, ir.input_shape)
    except (RuntimeError, SvtError) as e:
        raise SvtError(f"pruning {group.label or group.space} breaks the model's forward "
                       f"({str(e).splitlines()[0][:120]})") from None


# ----------------------------------------------------------------------------- evaluation

class Validator:
    """Accuracy on fixed subsets of the validation split (never the test split)."""

    def __init__(self, ds: Dataset, profile_samples: int, check_samples: int,
                 val_size: int | None = None):
        kw = {} if val_size is None else {"val_size": val_size}
        self.ds = ds
        self.x, self.y = ds.split("val", max(profile_samples, check_samples), **kw)
        self.profile_samples = min(profile_samples, len(self.y))
        self.check_samples = min(check_samples, len(self.y))
        self.own = 0  # passes this process made alone (sensitivity cells under torchrun)
        self.shared = 0  # passes all ranks made together (images sharded)

    @property
    def evaluations(self) -> int:
        """Validation passes of the whole run, counted once however many ranks ran it."""
        return current().all_sum(self.own) + self.shared

    def profile(self, model, alone: bool = True) -> float:
        """Accuracy on the profile subset: one sensitivity cell, which under torchrun one
        rank measures alone (cells are shared out, not images); ``alone=False`` for a pass
        every rank needs (the profile's baseline), its images sharded."""
        n = self.profile_samples
        return self._measure(model, n, sharded=not alone)

    def check(self, model) -> float:
        return self._measure(model, self.check_samples, sharded=True)

    def _measure(self, model, n: int, sharded: bool) -> float:
        if sharded:
            self.shared += 1
        else:
            self.own += 1
        return accuracy(model, self.ds, self.x[:n], self.y[:n], sharded=sharded)


# ----------------------------------------------------------------------------- profiling

_PROFILE_CALLS = itertools.count()  # names each profiling's work queue in a torchrun job


def profile_sensitivity(loaded: LoadedModel, ir: IR, groups: list[Group], val: Validator,
                        max_drop: float, cache_dir: Path | None, ladder=LADDER,
                        progress=None) -> dict[str, list[dict]]:
    """Accuracy drop (points, profile subset) of pruning each group alone at each rate.

    A group's ladder stops early once the drop is well past ``max_drop``: more
    aggressive rates would never be chosen. Cached on disk keyed by model and data; a
    profile made for a larger ``max_drop`` holds every row a smaller one needs, so it is
    reused for it. Every measured cell is also cached on its own, so an interrupted
    profiling resumes where it stopped. Under torchrun the groups are shared out through
    a work queue (a group's ladder stays on one rank: its early stop depends on its own
    rows) and the rows gathered on every rank.
    """
    rt = current()
    key = hashlib.sha256(json.dumps([loaded.fingerprint(), val.ds.fingerprint(),
                                     val.profile_samples, list(ladder)]).encode()
                         ).hexdigest()[:20]
    cache = cache_dir / f"sensitivity-{key}.json" if cache_dir is not None else None
    cached = None
    if cache is not None and cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("max_drop", -1) < max_drop:
            cached = None
    if rt.all_true(cached is not None):
        return {space: _truncated(rows, max_drop) for space, rows in cached["groups"].items()}
    cells = cache.with_suffix(".cells") if cache is not None else None

    def measure(g: Group, k: int) -> dict:
        """Accuracy of ``g`` pruned to ``k`` units (or why it cannot be), cached."""
        path = cells / f"{hashlib.sha1(g.space.encode()).hexdigest()[:12]}-{k}.json" \
            if cells is not None else None
        if path is not None and path.is_file():
            return json.loads(path.read_text())
        try:
            model, _ = pruned_copy(loaded, ir, g, k)
            cell = {"accuracy": val.profile(model.model)}
        except SvtError as e:
            cell = {"error": str(e)}
        if path is not None:
            atomic_write_bytes(path, json.dumps(cell).encode())
        if progress is not None:
            progress(1)
        return cell

    base = val.profile(loaded.model, alone=False)

    def ladder_rows(g: Group) -> list[dict]:
        rows, seen = [], set()
        for rate in ladder:
            k = keep_count(g.units, rate)
            if k >= g.units or k in seen:
                continue
            seen.add(k)
            cell = measure(g, k)
            if "error" in cell:
                rows.append({"keep": k, "rate": 1 - k / g.units, "drop": None,
                             "error": cell["error"]})
                break
            drop = (base - cell["accuracy"]) * 100
            rows.append({"keep": k, "rate": 1 - k / g.units, "drop": round(drop, 3)})
            if drop > max_drop + NOISE_ALLOWANCE:
                break
        return rows

    if rt.distributed:
        queue, mine = f"profile-{key}-{next(_PROFILE_CALLS)}", {}
        while (i := rt.next_ticket(queue)) < len(groups):
            mine[groups[i].space] = ladder_rows(groups[i])
        gathered = {space: rows for part in rt.all_gather(mine) for space, rows in part.items()}
        result = {g.space: gathered[g.space] for g in groups}
    else:
        result = {g.space: ladder_rows(g) for g in groups}
    if cache is not None and rt.is_main:
        atomic_write_bytes(cache, json.dumps({"max_drop": max_drop, "groups": result},
                                             indent=1).encode())
    return result


def _truncated(rows: list[dict], max_drop: float) -> list[dict]:
    """The rows a profile for ``max_drop`` would have measured: up to the first one past
    the drop (the ladder stops there)."""
    for i, r in enumerate(rows):
        if r["drop"] is None or r["drop"] > max_drop + NOISE_ALLOWANCE:
            return rows[:i + 1]
    return rows


# ----------------------------------------------------------------------------- policies

@dataclass
class State:
    loaded: LoadedModel
    ir: IR
    plan: MemoryPlan
    accuracy: float  # check-subset accuracy


@dataclass
class PruneResult:
    state: State
    baseline: State
    groups: list[dict] = field(default_factory=list)  # per group: before/after, rate, drops
    explored: list[dict] = field(default_factory=list)  # every candidate measured
    finetune: dict | None = None
    pruned_accuracy: float | None = None  # check accuracy before fine-tuning
    before_finetune: State | None = None  # the pruned model before the final fine-tune


def state_of(loaded: LoadedModel, ir: IR, acc: float) -> State:
    return State(loaded, ir, plan_memory(ir), acc)


def _drop(base: State, acc: float) -> float:
    return (base.accuracy - acc) * 100


def _units(ir: IR, g: Group) -> int:
    return ir.spaces[g.space].size // g.step if g.space in ir.spaces else 0


def _group_row(g: Group, before: State, after: State, rate: float, profiled, measured):
    return {"group": g.label, "space": g.space, "units_before": _units(before.ir, g),
            "units_after": _units(after.ir, g),
            "params_before": touching_params(before.ir, g.spaces),
            "params_after": touching_params(after.ir, g.spaces), "rate": round(rate, 4),
            "profiled_drop": profiled, "measured_drop": measured}


ALLOCATIONS = ("proportional", "greedy")


def prioritized(start: State, base: State, budget: Budget, val: Validator, profile: dict,
                log, explored: list, rows: list, groups: list[Group],
                allocation: str = "proportional") -> State:
    """The prioritized policy: groups largest first, each pruned as far as its drop
    allowance and the profile allow, re-measured, backed off on failure, stopping as soon
    as the budget is met.

    ``greedy`` is the paper's rule as literally stated: every group may spend all of the
    remaining drop. ``proportional`` gives each group a share of the remaining drop
    proportional to its size among the groups still to come (the largest group is often
    the most sensitive per byte, e.g. the embedding), then, if the budget is still not
    met, runs a greedy pass with whatever drop is left.
    """
    if allocation not in ALLOCATIONS:
        raise SvtError(f"unknown allocation {allocation!r}; use one of {ALLOCATIONS}")
    cur = prioritized_pass(start, base, budget, val, profile, log, explored, rows, groups,
                           proportional=allocation == "proportional")
    if allocation == "proportional" and not budget.fits(cur.plan):
        cur = prioritized_pass(cur, base, budget, val, profile, log, explored, rows, groups)
    return cur


def prioritized_pass(start: State, base: State, budget: Budget, val: Validator,
                     profile: dict, log, explored: list, rows: list, all_groups: list[Group],
                     proportional: bool = False) -> State:
    """One pass over the groups (sized as in ``start``), largest first."""
    cur = start
    groups = sized_groups(cur.ir, all_groups)
    for i, g in enumerate(groups):
        if budget.fits(cur.plan):
            break
        spent = _drop(base, cur.accuracy)
        limit = budget.max_drop
        if proportional:
            share = g.params / sum(h.params for h in groups[i:])
            limit = spent + max(0.0, budget.max_drop - spent) * share
        cands = []
        for row in profile.get(g.space, []):
            if row.get("drop") is None or row["keep"] >= g.units:
                continue
            if spent + row["drop"] <= limit:
                model, ir = pruned_copy(cur.loaded, cur.ir, g, row["keep"])
                cands.append((row, model, ir, plan_memory(ir)))
        if not cands:
            log(f"  {g.label}: every profiled rate would exceed the drop; kept as is")
            rows.append(_group_row(g, cur, cur, 0.0, None, None))
            continue
        meeting = [c for c in cands if budget.fits(c[3])]
        if meeting:  # the mildest rate that meets the budget, then milder ones
            first = min(meeting, key=lambda c: c[0]["rate"])
            order = [first] + sorted((c for c in cands if c[0]["rate"] < first[0]["rate"]),
                                     key=lambda c: -c[0]["rate"])
        else:  # the most aggressive rate within the drop, backing off on failure
            order = sorted(cands, key=lambda c: -c[0]["rate"])
        accepted = None
        for row, model, ir, plan in order:
            acc = val.check(model.model)
            drop = _drop(base, acc)
            explored.append({"group": g.label, "rate": round(row["rate"], 4),
                             "keep": row["keep"], "params": plan.params,
                             "weight_bytes": plan.weight_bytes, "arena_bytes": plan.arena_bytes,
                             "val_accuracy": round(acc, 5), "drop": round(drop, 3),
                             "accepted": drop <= budget.max_drop})
            if drop <= budget.max_drop:
                accepted = (row, State(model, ir, plan, acc))
                break
            log(f"  {g.label}: rate {row['rate']:.0%} measured {drop:.2f} pt > "
                f"{budget.max_drop:g}; backing off")
        if accepted is None:
            rows.append(_group_row(g, cur, cur, 0.0, cands[0][0]["drop"], None))
            continue
        row, new = accepted
        rows.append(_group_row(g, cur, new, row["rate"], row["drop"],
                               round(_drop(base, new.accuracy), 3)))
        log(f"  {g.label}: {g.units} -> {row['keep']} units (rate {row['rate']:.0%}), "
            f"weights {new.plan.weight_bytes:,} B, val drop {_drop(base, new.accuracy):.2f} pt")
        cur = new
    return cur


def uniform_rate_state(start: State, budget: Budget, groups: list[Group],
                       log) -> tuple[float, LoadedModel, IR]:
    """The smallest single rate (1 % steps) that, applied to every group, meets the budget."""
    groups = sized_groups(start.ir, groups)

    def apply(rate: float):
        loaded, ir = start.loaded, start.ir
        for g in groups:
            loaded, ir = pruned_copy(loaded, ir, g, keep_count(g.units, rate))
        return loaded, ir

    lo, hi = 0, 99  # percent; memory shrinks monotonically with the rate
    loaded, ir = apply(hi / 100)
    if not budget.fits(plan_memory(ir)):
        return -1.0, loaded, ir
    best = (hi, loaded, ir)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        loaded, ir = apply(mid / 100)
        if budget.fits(plan_memory(ir)):
            hi, best = mid, (mid, loaded, ir)
        else:
            lo = mid
    rate, loaded, ir = best
    log(f"  uniform rate {rate}% meets the budget")
    return rate / 100, loaded, ir


class Pruner:
    """Runs a policy from a baseline model to a model that meets ``budget``."""

    def __init__(self, loaded: LoadedModel, ds: Dataset, budget: Budget, *,
                 policy: str = "prioritized", profile_samples: int = 1000,
                 check_samples: int = 2500, cache_dir: Path | None = None,
                 finetune_epochs: float = 0, finetune_samples: int = 20000,
                 finetune_lr: float = 5e-4, recovery_epochs: float = 1.0,
                 stage_shrink: float = 0.72, ladder=LADDER, allocation: str = "proportional",
                 log=print, progress=None):
        if policy not in ("prioritized", "uniform"):
            raise SvtError(f"unknown policy {policy!r}; use prioritized or uniform")
        self.ds, self.budget, self.policy = ds, budget, policy
        self.val = Validator(ds, profile_samples, check_samples)
        self.cache_dir = cache_dir
        self.ft_epochs, self.ft_samples, self.ft_lr = finetune_epochs, finetune_samples, finetune_lr
        self.recovery_epochs, self.stage_shrink = recovery_epochs, stage_shrink
        self.ladder, self.log, self.progress = ladder, log, progress
        self.allocation = allocation
        self.timings: dict[str, float] = {}
        t = time.time()
        ir = extract_ir(loaded.model, ds.input_shape)
        self.baseline = state_of(loaded, ir, self.val.check(loaded.model))
        self.groups = discover_groups(loaded, ir, log)
        self.timings["baseline"] = time.time() - t

    def profile(self, state: State, max_drop: float) -> dict:
        """Sensitivity of every group of ``state`` (cached on disk)."""
        t = time.time()
        groups = sized_groups(state.ir, self.groups)
        prof = profile_sensitivity(state.loaded, state.ir, groups, self.val, max_drop,
                                   self.cache_dir, self.ladder, self.progress)
        self.timings["profiling"] = self.timings.get("profiling", 0) + time.time() - t
        return prof

    def _finetune(self, state: State, epochs: float, seed: int) -> State:
        from .training import train_steps

        t = time.time()
        x, y = self.ds.split("train", self.ft_samples)
        loaded = copy.deepcopy(state.loaded)
        train_steps(loaded.model, self.ds, x, y, epochs=epochs, lr=self.ft_lr, seed=seed,
                    progress=self.progress)
        ir = extract_ir(loaded.model, self.ds.input_shape)
        new = state_of(loaded, ir, self.val.check(loaded.model))
        self.timings["finetuning"] = self.timings.get("finetuning", 0) + time.time() - t
        return new

    def run(self) -> PruneResult:
        base, budget = self.baseline, self.budget
        result = PruneResult(state=base, baseline=base)
        if budget.fits(base.plan):
            self.log("the model already meets the budget; nothing to prune")
            return result
        if self.policy == "uniform":
            result.state = self._uniform(base, result)
        elif self.ft_epochs > 0:
            result.state = self._staged(base, result)
        else:
            self.log(f"profiling sensitivity of {len(self.groups)} groups on "
                     f"{self.val.profile_samples} validation images")
            profile = self.profile(base, budget.max_drop)
            t = time.time()
            result.state = prioritized(base, base, budget, self.val, profile, self.log,
                                       result.explored, result.groups, self.groups,
                                       self.allocation)
            self.timings["pruning"] = time.time() - t
        if not budget.fits(result.state.plan):
            s = result.state
            raise InfeasibleBudget(
                f"cannot meet {budget.describe()}: the smallest model reached within the drop "
                f"has {s.plan.weight_bytes:,} B of weights and a {s.plan.arena_bytes:,} B arena "
                f"at a {_drop(base, s.accuracy):.2f} pt validation drop; allow a larger "
                "--max-drop, add --finetune-epochs, or pick a larger board")
        result.pruned_accuracy = result.pruned_accuracy or result.state.accuracy
        if self.ft_epochs > 0 and result.finetune is None:
            before = result.before_finetune = result.state
            self.log(f"fine-tuning {self.ft_epochs:g} epochs on {self.ft_samples} training images")
            result.state = self._finetune(before, self.ft_epochs, seed=99)
            result.finetune = {"epochs": self.ft_epochs, "samples": self.ft_samples,
                               "lr": self.ft_lr, "stages": 0,
                               "val_before": round(before.accuracy, 5),
                               "val_after": round(result.state.accuracy, 5)}
        if _drop(base, result.state.accuracy) > budget.max_drop:
            raise InfeasibleBudget(
                f"cannot meet {budget.describe()}: the pruned model's validation drop is "
                f"{_drop(base, result.state.accuracy):.2f} pt; allow a larger --max-drop or "
                "more --finetune-epochs")
        return result

    def _uniform(self, base: State, result: PruneResult) -> State:
        t = time.time()
        rate, loaded, ir = uniform_rate_state(base, self.budget, self.groups, self.log)
        if rate < 0:
            raise InfeasibleBudget(f"cannot meet {self.budget.describe()} with the uniform "
                                   "policy even at a 99 % rate")
        acc = self.val.check(loaded.model)
        new = state_of(loaded, ir, acc)
        if self.ft_epochs > 0:
            result.pruned_accuracy = acc
            result.before_finetune = new
            self.log(f"fine-tuning {self.ft_epochs:g} epochs on {self.ft_samples} images")
            new = self._finetune(new, self.ft_epochs, seed=99)
            result.finetune = {"epochs": self.ft_epochs, "samples": self.ft_samples,
                               "lr": self.ft_lr, "stages": 0, "val_before": round(acc, 5),
                               "val_after": round(new.accuracy, 5)}
        for g in self.groups:
            result.groups.append(_group_row(g, base, new, 1 - keep_count(g.units, rate) / g.units,
                                            None, round(_drop(base, new.accuracy), 3)))
        result.explored.append({"group": "all", "rate": rate, "params": new.plan.params,
                                "weight_bytes": new.plan.weight_bytes,
                                "arena_bytes": new.plan.arena_bytes,
                                "val_accuracy": round(new.accuracy, 5),
                                "drop": round(_drop(base, new.accuracy), 3), "accepted": True})
        self.timings["pruning"] = time.time() - t
        return new

    def _staged(self, base: State, result: PruneResult) -> State:
        """Prune in stages, each followed by a short recovery fine-tune, so that budgets
        one-shot pruning cannot reach within the drop become reachable. Every stage is held
        to ``max_drop`` against the original baseline: the recovery fine-tune is what buys
        the headroom for the next stage, and the model before the final fine-tune is
        itself within the drop."""
        budget, cur, stage = self.budget, base, 0
        while not budget.fits(cur.plan):
            stage += 1
            target = Budget(
                flash_bytes=None if budget.flash_bytes is None else max(
                    budget.flash_bytes, int(cur.plan.weight_bytes * self.stage_shrink)),
                sram_bytes=budget.sram_bytes, max_drop=budget.max_drop, source=f"stage {stage}")
            self.log(f"stage {stage}: prune to {target.describe()}")
            profile = self.profile(cur, budget.max_drop)
            t = time.time()
            rows: list = []
            pruned = prioritized(cur, base, target, self.val, profile, self.log,
                                 result.explored, rows, self.groups, self.allocation)
            self.timings["pruning"] = self.timings.get("pruning", 0) + time.time() - t
            if pruned.plan.weight_bytes >= cur.plan.weight_bytes and \
                    pruned.plan.arena_bytes >= cur.plan.arena_bytes:
                self.log(f"stage {stage}: no group can be pruned further within the drop")
                return cur
            result.groups.extend(dict(r, stage=stage) for r in rows)
            result.pruned_accuracy = pruned.accuracy
            if budget.fits(pruned.plan):
                cur = pruned
                break
            self.log(f"stage {stage}: recovery fine-tune ({self.recovery_epochs:g} epoch)")
            cur = self._finetune(pruned, self.recovery_epochs, seed=stage)
            self.log(f"stage {stage}: val accuracy {pruned.accuracy:.4f} -> {cur.accuracy:.4f}")
        before = result.before_finetune = cur
        self.log(f"fine-tuning {self.ft_epochs:g} epochs on {self.ft_samples} training images")
        final = self._finetune(before, self.ft_epochs, seed=99)
        result.finetune = {"epochs": self.ft_epochs, "samples": self.ft_samples,
                           "lr": self.ft_lr, "stages": stage,
                           "recovery_epochs": self.recovery_epochs,
                           "val_before": round(before.accuracy, 5),
                           "val_after": round(final.accuracy, 5)}
        result.pruned_accuracy = before.accuracy
        return final


# ----------------------------------------------------------------------------- outputs

def summarize_groups(result: PruneResult, groups: list[Group]) -> list[dict]:
    """One row per group: its state in the baseline and in the final model."""
    final = result.state
    by_space: dict[str, dict] = {}
    for r in result.groups:
        by_space.setdefault(r["space"], r)
    rows = []
    for g in groups:
        first = by_space.get(g.space, {})
        after = _units(final.ir, g)
        rows.append({"group": g.label, "space": g.space, "units_before": g.units,
                     "units_after": after, "params_before": g.params,
                     "params_after": touching_params(final.ir, g.spaces),
                     "rate": round(1 - after / g.units, 4),
                     "profiled_drop": first.get("profiled_drop"),
                     "measured_drop": first.get("measured_drop")})
    return rows


def layer_rows(base_ir: IR, final_ir: IR) -> list[dict]:
    """Per synaptic layer: parameters before and after (BN folded)."""
    after = {n.name: n.params for n in final_ir.nodes if n.op in SYNAPTIC}
    rows = []
    for n in base_ir.nodes:
        if n.op in SYNAPTIC:
            a = after.get(n.name, 0)
            rows.append({"name": n.name, "params_before": n.params, "params_after": a,
                         "rate": round(1 - a / n.params, 4) if n.params else 0.0})
    return rows


def format_table(result: PruneResult, budget: Budget, groups: list[Group],
                 test: dict | None = None) -> str:
    base, final = result.baseline, result.state
    lines = [f"{'group':34s} {'units':>11s} {'params':>19s} {'rate':>6s} {'profiled':>9s} "
             f"{'measured':>9s}"]
    lines.append("-" * len(lines[0]))
    for r in summarize_groups(result, groups):
        prof = "-" if r["profiled_drop"] is None else f"{r['profiled_drop']:.2f}"
        meas = "-" if r["measured_drop"] is None else f"{r['measured_drop']:.2f}"
        lines.append(f"{r['group'][:34]:34s} {r['units_before']:>5d} -> {r['units_after']:<3d} "
                     f"{r['params_before']:>8,} -> {r['params_after']:<8,} {r['rate']:>6.0%} "
                     f"{prof:>9s} {meas:>9s}")
    lines.append("-" * len(lines[0]))
    lines.append("drops in points on the validation split (profiled: the group alone; "
                 "measured: cumulative)")
    bp, fp = base.plan, final.plan
    lines.append(f"weights {bp.weight_bytes:,} B -> {fp.weight_bytes:,} B "
                 f"({1 - fp.weight_bytes / bp.weight_bytes:.1%} smaller); arena "
                 f"{bp.arena_bytes:,} B -> {fp.arena_bytes:,} B; budget: {budget.describe()}")
    pre = result.pruned_accuracy if result.pruned_accuracy is not None else final.accuracy
    lines.append(f"validation accuracy {base.accuracy:.4f} -> {pre:.4f} "
                 f"({(base.accuracy - pre) * 100:+.2f} pt drop)"
                 + (f", after fine-tuning {final.accuracy:.4f} "
                    f"({(base.accuracy - final.accuracy) * 100:+.2f} pt)"
                    if result.finetune else ""))
    if test:
        lines.append(f"test accuracy {test['baseline']:.4f} -> {test['final']:.4f} "
                     f"({(test['baseline'] - test['final']) * 100:+.2f} pt drop) on "
                     f"{test['samples']:,} images")
    return "\n".join(lines)


def plan_json(result: PruneResult, budget: Budget, policy: str, groups: list[Group],
              timings: dict, test: dict | None, extra: dict | None = None) -> dict:
    base, final = result.baseline, result.state

    def summary(state: State, acc: float | None):
        return {"val_accuracy": None if acc is None else round(acc, 5),
                "params": state.plan.params, "weight_bytes": state.plan.weight_bytes,
                "arena_bytes": state.plan.arena_bytes}

    return {
        "policy": policy,
        "budget": asdict(budget),
        "baseline": summary(base, base.accuracy),
        "pruned": summary(final, result.pruned_accuracy),
        "finetuned": None if result.finetune is None else dict(
            summary(final, final.accuracy), **result.finetune),
        "test": test,
        "groups": summarize_groups(result, groups),
        "group_steps": result.groups,
        "layers": layer_rows(base.ir, final.ir),
        "explored": result.explored,
        "totals": {"params_before": base.plan.params, "params_after": final.plan.params,
                   "weight_reduction": round(1 - final.plan.weight_bytes
                                             / base.plan.weight_bytes, 5)},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        **(extra or {}),
    }


def write_outputs(out_dir: Path, result: PruneResult, plan: dict) -> None:
    """Model first, plan last: a prune_plan.json only ever describes a saved model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.state.loaded.save(out_dir / "pruned_model.pt", extra={"prune_plan": "prune_plan.json"})
    atomic_write_bytes(out_dir / "prune_plan.json", (json.dumps(plan, indent=2) + "\n").encode())
