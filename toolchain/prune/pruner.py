"""The pruner: the prioritized loop with back-off, staged pruning with recovery
fine-tunes, and the final fine-tune.

Decisions use a validation split carved from the training data; the test split is only
used to report.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data import Dataset
from ..errors import InfeasibleBudget, SvtError
from ..quant.aware import quantization_aware
from ..quant.reference import deployed_ir, reference_model
from ..loading import LoadedModel
from ..ir import IR
from ..memory import MemoryPlan, plan_memory
from ..stages import StageCache
from ..training import train_steps
from .groups import (Group, discover_groups, group_units, keep_count, pruned_copy, sized_groups,
                     touching_params, touching_steps)
from .options import Budget, PruneOptions
from .precision import at_precision, choose_precision, group_precision, lowered
from .policies import (State, allocation_passes, check_policy, drop_limit, drop_points,
                       state_of, uniform_rate_state)
from .profile import Validator, profile_sensitivity


@dataclass
class PruneResult:
    state: State
    baseline: State
    groups: list[dict] = field(default_factory=list)  # per group: before/after, rate, drops
    explored: list[dict] = field(default_factory=list)  # every candidate measured
    finetune: dict | None = None
    pruned_accuracy: float | None = None  # check accuracy before fine-tuning
    before_finetune: State | None = None  # the pruned model before the final fine-tune
    # under a latency budget: predicted instructions per inference of the model pruning
    # started from ("start") and of the result ("final")
    instructions: dict | None = None


def _group_row(g: Group, before: State, after: State, rate: float, profiled, measured):
    return {"group": g.label, "space": g.space, "units_before": group_units(before.ir, g),
            "units_after": group_units(after.ir, g),
            "precision_before": group_precision(before.loaded, before.ir, g.spaces),
            "precision_after": group_precision(after.loaded, after.ir, g.spaces),
            "params_before": touching_params(before.ir, g.spaces),
            "params_after": touching_params(after.ir, g.spaces), "rate": round(rate, 4),
            "profiled_drop": profiled, "measured_drop": measured}


def _fits(budget: Budget, state: State) -> bool:
    return budget.fits(state.plan, state.ir)


def ranked_groups(cur: State, groups: list[Group], budget: Budget, log
                  ) -> tuple[list[Group], list[float]]:
    """The groups in the order a pass prunes them and their sizes (the drop shares): by
    parameters, largest first, while memory binds; when only the latency budget does, by
    the predicted instructions of the steps each group shrinks, so the first cuts are the
    ones that save the most time."""
    sized = sized_groups(cur.ir, groups)
    if not budget.only_latency_binds(cur.ir, cur.plan):
        return sized, [float(g.params) for g in sized]
    per_step = {s.name: s.instructions
                for s in budget.predictor.predict(cur.ir, cur.plan).steps}
    cost = {g.space: sum(per_step[n] for n in touching_steps(cur.ir, cur.plan, g.spaces))
            for g in sized}
    log("  only the latency budget binds: groups by the predicted instructions of the "
        "steps they shrink")
    ranked = sorted(sized, key=lambda g: (-cost[g.space], g.label))
    return ranked, [cost[g.space] for g in ranked]


def prioritized(start: State, base: State, budget: Budget, val: Validator, profile: dict,
                log, explored: list, rows: list, groups: list[Group],
                allocation: str = "proportional") -> State:
    """The prioritized policy: groups largest first (by the instructions they touch when
    only a latency budget binds), each pruned as far as its drop allowance
    (``policies.allocation_passes``) and the profile allow, re-measured, backed off on
    failure, stopping as soon as the budget is met."""
    cur = start
    for i, proportional in enumerate(allocation_passes(allocation)):
        if i and _fits(budget, cur):
            break
        cur = prioritized_pass(cur, base, budget, val, profile, log, explored, rows, groups,
                               proportional=proportional)
    return cur


@dataclass
class Candidate:
    """One way to cut a group: a profiled pruning rate, optionally with the group's layers
    one precision down (``precision``), and its estimated drop (the profile's, the two
    knobs' drops added)."""

    row: dict  # the profile row of its pruning rate
    loaded: LoadedModel
    ir: IR
    plan: MemoryPlan
    drop: float
    precision: str | None = None  # the group's layers' new precision (None: unchanged)

    @property
    def rate(self) -> float:
        return self.row["rate"]


def candidates(cur: State, g: Group, rows: list[dict], budget: Budget, spent: float,
               limit: float, log) -> list[Candidate]:
    """Every cut of ``g`` whose estimated drop stays within ``limit``: each profiled rate
    and, where the profile measured the precision knob, each rate (none included) with the
    group's layers one precision down."""
    ladder = [r for r in rows if "precision" not in r and r.get("drop") is not None]
    knob = next((r for r in rows if "precision" in r and r.get("drop") is not None), None)
    out = []
    for row in ladder:
        if row["keep"] < g.units and spent + row["drop"] <= limit:
            model, ir = pruned_copy(cur.loaded, cur.ir, g, row["keep"])
            out.append(Candidate(row, model, ir, plan_memory(ir), row["drop"]))
    lower = lowered(cur.loaded, cur.ir, g.spaces) if knob is not None else None
    if lower is None or budget.only_latency_binds(cur.ir, cur.plan):
        return out  # (a group lowered in an earlier pass keeps its profile's knob row)
    for row in [{"keep": g.units, "rate": 0.0, "drop": 0.0}] + ladder:
        drop = row["drop"] + knob["drop"]
        if spent + drop > limit:
            continue
        if row["keep"] < g.units:
            model, ir = pruned_copy(lower, cur.ir, g, row["keep"])
        else:
            model, ir = lower, deployed_ir(lower, cur.ir.input_shape)
        c = Candidate(row, model, ir, plan_memory(ir), drop, knob["precision"])
        try:
            budget.fits(c.plan, c.ir)
        except SvtError as e:  # no kernel costs at that precision under a latency budget
            log(f"  {g.label}: {knob['precision']} not considered ({e})")
            break
        out.append(c)
    return out


def try_order(cands: list[Candidate], cur: State, budget: Budget, cut,
              resolution: float) -> list[Candidate]:
    """The order candidates are measured in until one stays within the drop.

    Pruning alone (PrimeSVT): the mildest cut that meets the budget, then milder ones; or,
    when none meets it, the largest cut first. With the precision knob among them, the
    cheapest bytes first: by estimated drop per byte of what the budget still needs
    (savings past the budget are worth nothing; a drop below ``resolution``, one image of
    the profile subset, counts as that; equal costs: the milder cut), so a group goes to
    int4 alone when that is cheaper than also pruning it, and the next groups cut the
    rest."""
    if any(c.precision for c in cands):
        fit = budget.fit(cur.plan)

        def cost(c: Candidate) -> float:
            needed = (min(cur.plan.weight_bytes - c.plan.weight_bytes, fit.flash_over)
                      + min(cur.plan.arena_bytes - c.plan.arena_bytes, fit.sram_over))
            return max(c.drop, resolution) / needed if needed > 0 else float("inf")
        return sorted(cands, key=lambda c: (cost(c), cut(c)))  # ties: the milder cut
    meeting = [c for c in cands if budget.fits(c.plan, c.ir)]
    others = sorted((c for c in cands if c not in meeting), key=lambda c: -cut(c))
    if not meeting:
        return others
    first = min(meeting, key=cut)
    return [first] + [c for c in others if cut(c) < cut(first)]


def prioritized_pass(start: State, base: State, budget: Budget, val: Validator,
                     profile: dict, log, explored: list, rows: list, all_groups: list[Group],
                     proportional: bool = False) -> State:
    """One pass over the groups (sized as in ``start``), largest first."""
    cur = start
    groups, sizes = ranked_groups(cur, all_groups, budget, log)
    for i, g in enumerate(groups):
        if _fits(budget, cur):
            break
        spent = drop_points(base, cur.accuracy)
        limit = drop_limit(sizes, i, spent, budget.max_drop, proportional)
        cands = candidates(cur, g, _with_aligned(profile.get(g.space, []), g, budget, cur),
                           budget, spent, limit, log)
        if not cands:
            log(f"  {g.label}: every profiled rate would exceed the drop; kept as is")
            rows.append(_group_row(g, cur, cur, 0.0, None, None))
            continue
        cut = _cut_measure(cur, budget)
        cands = [c for c in cands if cut(c) > 0]
        if not cands:
            log(f"  {g.label}: no profiled cut within the drop saves what the budget needs; "
                "kept as is")
            rows.append(_group_row(g, cur, cur, 0.0, None, None))
            continue
        accepted = None
        for c in try_order(cands, cur, budget, cut, 100 / val.profile_samples):
            acc = val.check(reference_model(c.loaded))
            drop = drop_points(base, acc)
            explored.append({"group": g.label, "rate": round(c.rate, 4), "keep": c.row["keep"],
                             **({"precision": c.precision} if c.precision else {}),
                             "params": c.plan.params, "weight_bytes": c.plan.weight_bytes,
                             "arena_bytes": c.plan.arena_bytes,
                             **_predicted(budget, c.ir, c.plan),
                             "val_accuracy": round(acc, 5), "drop": round(drop, 3),
                             "accepted": drop <= budget.max_drop})
            if drop <= budget.max_drop:
                accepted = (c, State(c.loaded, c.ir, c.plan, acc))
                break
            log(f"  {g.label}: {_describe(c)} measured {drop:.2f} pt > "
                f"{budget.max_drop:g}; backing off")
        if accepted is None:
            rows.append(_group_row(g, cur, cur, 0.0, cands[0].drop, None))
            continue
        c, new = accepted
        rows.append(_group_row(g, cur, new, c.rate, c.drop,
                               round(drop_points(base, new.accuracy), 3)))
        predicted = _predicted(budget, new.ir, new.plan)
        log(f"  {g.label}: {g.units} -> {c.row['keep']} units (rate {c.rate:.0%}"
            + (f", layers in {c.precision}" if c.precision else "") + "), "
            f"weights {new.plan.weight_bytes:,} B, "
            + (f"predicted {predicted['instructions']:,} instructions, " if predicted else "")
            + f"val drop {drop_points(base, new.accuracy):.2f} pt")
        cur = new
    return cur


def _describe(c: Candidate) -> str:
    return f"rate {c.rate:.0%}" + (f" in {c.precision}" if c.precision else "")


def _with_aligned(rows: list[dict], g: Group, budget: Budget, cur: State) -> list[dict]:
    """The profiled rows and, when only latency binds, each one's keep rounded down to
    whole passes of the kernels' column add (``width`` channels; 128 -> 115 channels can
    be slower than 128, 112 is faster). An added row's drop is that of the nearest profiled
    row at least as aggressive (an upper bound where drops grow with the rate); the
    candidate is measured before it is taken, as every other."""
    width = budget.predictor.alignment() if budget.latency is not None else 1
    if width == 1 or not budget.only_latency_binds(cur.ir, cur.plan):
        return rows
    lcm = math.lcm(width, g.step)
    profiled = {r["keep"] for r in rows}
    out = list(rows)
    for r in (r for r in rows if "precision" not in r):
        keep = r["keep"] * g.step // lcm * lcm // g.step
        bound = [b for b in rows if b["keep"] <= keep and b.get("drop") is not None]
        if keep < 1 or keep in profiled or not bound:
            continue
        profiled.add(keep)
        out.append({"keep": keep, "rate": 1 - keep / g.units, "aligned": True,
                    "drop": max(bound, key=lambda b: b["keep"])["drop"]})
    return out


def _cut_measure(cur: State, budget: Budget):
    """How much a candidate cuts: the bytes it saves where the memory budget binds (weights
    when flash does, the arena when SRAM does); the predicted instructions it saves when
    only latency does (a narrower layer is not always faster: a column add past its vector
    width runs a scalar tail)."""
    if not budget.only_latency_binds(cur.ir, cur.plan):
        fit = budget.fit(cur.plan)
        flash, sram = fit.flash_over > 0, fit.sram_over > 0
        return lambda c: (flash * (cur.plan.weight_bytes - c.plan.weight_bytes)
                          + sram * (cur.plan.arena_bytes - c.plan.arena_bytes))
    now = budget.instructions(cur.ir, cur.plan)
    return lambda c: now - budget.instructions(c.ir, c.plan)


def _predicted(budget: Budget, ir, plan) -> dict:
    """{"instructions": predicted per inference} under a latency budget, else {}. Only a
    candidate within the memory budget is predicted (the others are out anyway)."""
    if budget.latency is None or not budget.fit(plan).fits:
        return {}
    return {"instructions": round(budget.instructions(ir, plan))}


class Pruner:
    """Runs a policy from a baseline model to a model that meets ``budget``.

    Settings come as ``options`` (``PruneOptions``) or, as before, as keywords named like
    its fields (``policy=``, ``profile_samples=``, ...; ``max_drop`` is the budget's).
    Profiles are cached in ``cache`` (a keyed ``StageCache``, e.g. ``StageCache.work(out)``)
    or, given a directory, in a keyed cache there (``cache_dir``)."""

    def __init__(self, loaded: LoadedModel, ds: Dataset, budget: Budget,
                 options: PruneOptions | None = None, *, cache: StageCache | None = None,
                 cache_dir: Path | None = None, log=print, progress=None, **settings):
        if options is None:
            options = PruneOptions(max_drop=budget.max_drop, **settings)
        elif settings:
            raise TypeError(f"Pruner: give {', '.join(settings)} in the options, not as "
                            "keywords")
        check_policy(options.policy)
        if cache is None and cache_dir is not None:
            cache = StageCache(cache_dir, None, keyed=True)
        self.ds, self.budget, self.options, self.policy = ds, budget, options, options.policy
        self.val = Validator(ds, options.profile_samples, options.check_samples)
        self.cache = cache
        self.ladder, self.log, self.progress = options.ladder, log, progress
        self.allocation = options.allocation
        self.timings: dict[str, float] = {}
        t = time.time()
        fp32 = at_precision(loaded, "fp32", None)
        fp32_accuracy = self.val.check(fp32.model)
        log(f"weight precision ({options.precision}):")
        loaded, accuracy, self.precisions = choose_precision(
            fp32, options.precision, budget, self.val, ds, fp32_accuracy, log)
        # auto from int8: each group's layers may also go to int4 as it is pruned
        self.precision_knob = options.precision == "auto" and loaded.precision == "int8"
        ir = deployed_ir(loaded, ds.input_shape)
        # drops and savings are measured from the fp32 model; pruning starts from the
        # model at the chosen precision
        self.baseline = (state_of(fp32, deployed_ir(fp32, ds.input_shape), fp32_accuracy)
                         if loaded.precision != "fp32" else state_of(loaded, ir, accuracy))
        self.start = state_of(loaded, ir, accuracy)
        self.groups = discover_groups(loaded, ir, log)
        self.timings["baseline"] = time.time() - t

    def profile(self, state: State, max_drop: float) -> dict:
        """Sensitivity of every group of ``state`` (cached on disk)."""
        t = time.time()
        groups = sized_groups(state.ir, self.groups)
        prof = profile_sensitivity(state.loaded, state.ir, groups, self.val, max_drop,
                                   self.cache, self.ladder, self.progress,
                                   precision_knob=self.precision_knob)
        self.timings["profiling"] = self.timings.get("profiling", 0) + time.time() - t
        return prof

    def _finetune(self, state: State, epochs: float, seed: int) -> tuple[State, dict]:
        """``state`` fine-tuned, and which layers trained on their integer grid."""
        o = self.options
        t = time.time()
        x, y = self.ds.split("train", o.finetune_samples)
        loaded = copy.deepcopy(state.loaded)
        with quantization_aware(loaded, state.ir, self.log) as layers:
            train_steps(loaded.model, self.ds, x, y, epochs=epochs, lr=o.finetune_lr,
                        seed=seed, progress=self.progress)
        ir = deployed_ir(loaded, self.ds.input_shape)
        new = state_of(loaded, ir, self.val.check(reference_model(loaded)))
        self.timings["finetuning"] = self.timings.get("finetuning", 0) + time.time() - t
        return new, layers

    def _final_finetune(self, before: State, result: PruneResult, stages: int,
                        **record) -> State:
        """The closing fine-tune of ``before``, recorded in ``result.finetune``."""
        o = self.options
        after, layers = self._finetune(before, o.finetune_epochs, seed=o.finetune_seed)
        result.finetune = {"epochs": o.finetune_epochs, "samples": o.finetune_samples,
                           "lr": o.finetune_lr, "stages": stages, **record,
                           "val_before": round(before.accuracy, 5),
                           "val_after": round(after.accuracy, 5),
                           "quantization_aware": layers}
        return after

    def run(self) -> PruneResult:
        base, start, budget, o = self.baseline, self.start, self.budget, self.options
        result = PruneResult(state=start, baseline=base)
        if _fits(budget, start):
            self.log("the model already meets the budget; nothing to prune")
            result.pruned_accuracy = start.accuracy
            result.instructions = self._instructions(start, start)
            return result
        if self.policy == "uniform":
            result.state = self._uniform(start, result)
        elif o.finetune_epochs > 0:
            result.state = self._staged(result)
        else:
            self.log(f"profiling sensitivity of {len(self.groups)} groups on "
                     f"{self.val.profile_samples} validation images")
            profile = self.profile(start, budget.max_drop)
            t = time.time()
            result.state = prioritized(start, base, budget, self.val, profile, self.log,
                                       result.explored, result.groups, self.groups,
                                       self.allocation)
            self.timings["pruning"] = time.time() - t
        if not _fits(budget, result.state):
            s = result.state
            predicted = _predicted(budget, s.ir, s.plan)
            raise InfeasibleBudget(
                f"cannot meet {budget.describe()}: the smallest model reached within the drop "
                f"has {s.plan.weight_bytes:,} B of weights and a {s.plan.arena_bytes:,} B arena"
                + (f", {predicted['instructions']:,} predicted instructions" if predicted
                   else "")
                + f" at a {drop_points(base, s.accuracy):.2f} pt validation drop; allow a "
                "larger --max-drop, add --finetune-epochs, or pick a larger board"
                + (" or a longer --max-latency-ms" if budget.latency else ""))
        result.pruned_accuracy = result.pruned_accuracy or result.state.accuracy
        if o.finetune_epochs > 0 and result.finetune is None:
            before = result.before_finetune = result.state
            self.log(f"fine-tuning {o.finetune_epochs:g} epochs on {o.finetune_samples} "
                     "training images")
            result.state = self._final_finetune(before, result, stages=0)
        if drop_points(base, result.state.accuracy) > budget.max_drop:
            raise InfeasibleBudget(
                f"cannot meet {budget.describe()}: the pruned model's validation drop is "
                f"{drop_points(base, result.state.accuracy):.2f} pt; allow a larger "
                "--max-drop or more --finetune-epochs")
        if not _fits(budget, result.state):  # fine-tuning changes the spikes, not the bytes
            raise InfeasibleBudget(
                f"cannot meet {budget.describe()}: fine-tuning raised the predicted "
                f"instructions to {budget.instructions(result.state.ir, result.state.plan):,.0f}"
                "; allow a longer --max-latency-ms or fine-tune less")
        result.instructions = self._instructions(start, result.state)
        return result

    def _instructions(self, start: State, final: State) -> dict | None:
        if self.budget.latency is None:
            return None
        return {"start": round(self.budget.instructions(start.ir, start.plan)),
                "final": round(self.budget.instructions(final.ir, final.plan))}

    def _uniform(self, start: State, result: PruneResult) -> State:
        o, base = self.options, self.baseline
        t = time.time()
        rate, loaded, ir = uniform_rate_state(start, self.budget, self.groups, self.log)
        if rate < 0:
            raise InfeasibleBudget(f"cannot meet {self.budget.describe()} with the uniform "
                                   "policy even at a 99 % rate")
        acc = self.val.check(reference_model(loaded))
        new = state_of(loaded, ir, acc)
        if o.finetune_epochs > 0:
            result.pruned_accuracy = acc
            result.before_finetune = new
            self.log(f"fine-tuning {o.finetune_epochs:g} epochs on {o.finetune_samples} images")
            new = self._final_finetune(new, result, stages=0)
        for g in self.groups:
            result.groups.append(_group_row(g, base, new, 1 - keep_count(g.units, rate) / g.units,
                                            None, round(drop_points(base, new.accuracy), 3)))
        result.explored.append({"group": "all", "rate": rate, "params": new.plan.params,
                                "weight_bytes": new.plan.weight_bytes,
                                "arena_bytes": new.plan.arena_bytes,
                                "val_accuracy": round(new.accuracy, 5),
                                "drop": round(drop_points(base, new.accuracy), 3),
                                "accepted": True})
        self.timings["pruning"] = time.time() - t
        return new

    def _staged(self, result: PruneResult) -> State:
        """Prune in stages, each followed by a short recovery fine-tune, so that budgets
        one-shot pruning cannot reach within the drop become reachable. Every stage is held
        to ``max_drop`` against the original baseline: the recovery fine-tune is what buys
        the headroom for the next stage, and the model before the final fine-tune is
        itself within the drop."""
        o, base = self.options, self.baseline
        budget, cur, stage = self.budget, self.start, 0
        while not _fits(budget, cur):
            stage += 1
            target = dataclasses.replace(
                budget, flash_bytes=None if budget.flash_bytes is None else max(
                    budget.flash_bytes, int(cur.plan.weight_bytes * o.stage_shrink)),
                latency=None if budget.latency is None else dataclasses.replace(
                    budget.latency, max_ms=max(budget.latency.max_ms, budget.latency.ms(
                        budget.instructions(cur.ir, cur.plan) * o.stage_shrink))),
                source=f"stage {stage}")
            self.log(f"stage {stage}: prune to {target.describe()}")
            profile = self.profile(cur, budget.max_drop)
            t = time.time()
            rows: list = []
            pruned = prioritized(cur, base, target, self.val, profile, self.log,
                                 result.explored, rows, self.groups, self.allocation)
            self.timings["pruning"] = self.timings.get("pruning", 0) + time.time() - t
            if pruned.plan.weight_bytes >= cur.plan.weight_bytes and \
                    pruned.plan.arena_bytes >= cur.plan.arena_bytes and \
                    (budget.latency is None or budget.instructions(pruned.ir, pruned.plan)
                     >= budget.instructions(cur.ir, cur.plan)):
                self.log(f"stage {stage}: no group can be pruned further within the drop")
                return cur
            result.groups.extend(dict(r, stage=stage) for r in rows)
            result.pruned_accuracy = pruned.accuracy
            if _fits(budget, pruned):
                cur = pruned
                break
            self.log(f"stage {stage}: recovery fine-tune ({o.recovery_epochs:g} epoch)")
            cur, _ = self._finetune(pruned, o.recovery_epochs, seed=stage)
            self.log(f"stage {stage}: val accuracy {pruned.accuracy:.4f} -> {cur.accuracy:.4f}")
        before = result.before_finetune = cur
        self.log(f"fine-tuning {o.finetune_epochs:g} epochs on {o.finetune_samples} "
                 "training images")
        final = self._final_finetune(before, result, stages=stage,
                                     recovery_epochs=o.recovery_epochs)
        result.pruned_accuracy = before.accuracy
        return final
