"""Weight precision as a budget knob, chosen before any channel is pruned.

``auto`` tries, on the unpruned model, fp32, then int8, then int8 with its largest layers
in int4 (largest first, as few as the budget needs), then int4, and keeps the first whose
integer reference stays within the drop and meets the budget: quantizing costs little
accuracy (weights are rounded, the arithmetic after them is exact) and divides the bytes
of every layer it touches by 4 or 8 at once, where pruning removes the bytes of one group
at a time, each at a measured cost. When no precision meets the budget unpruned, the one
with the fewest bytes within the drop is pruned further (largest groups first, as ever).
Every drop is measured against the fp32 model on the validation split.
"""

from __future__ import annotations

import dataclasses

from ..errors import SvtError
from ..ir import IR
from ..loading import LoadedModel
from ..memory import MemoryPlan, plan_memory
from ..quant.packing import PRECISIONS
from ..quant.reference import deployed_ir, reference_model
from .options import Budget

CHOICES = ("auto",) + PRECISIONS
MIXED = "int8+int4"


def at_precision(loaded: LoadedModel, precision, normalize) -> LoadedModel:
    """The same model (shared weights) deploying at ``precision``: one precision, or a map
    layer -> precision (int8/int4 mixed)."""
    return dataclasses.replace(loaded, precision=precision,
                               normalize=normalize if precision != "fp32" else None)


def precision_label(precision) -> str:
    """"fp32", "int8", "int4", or "int8+int4" for a per-layer mix."""
    if isinstance(precision, str):
        return precision
    used = {p for p in precision.values()}
    return "+".join(p for p in PRECISIONS if p in used)


def _mixed(int8: MemoryPlan, int4: MemoryPlan, budget: Budget) -> dict[str, str] | None:
    """int8 with the layers holding the most int8 bytes in int4, largest first, until the
    weights meet the flash budget (None when int8 already does or int4 does not)."""
    if budget.flash_bytes is None:
        return None
    bytes4 = {s.name: s.weight_bytes for s in int4.steps}
    layers = sorted((s for s in int8.steps if s.params), key=lambda s: -s.weight_bytes)
    total = int8.weight_bytes
    chosen = {s.name: "int8" for s in layers}
    for s in layers:
        if total <= budget.flash_bytes:
            break
        chosen[s.name] = "int4"
        total -= s.weight_bytes - bytes4[s.name]
    if total > budget.flash_bytes or "int4" not in chosen.values():
        return None
    return chosen


def choose_precision(loaded: LoadedModel, requested: str, budget: Budget, val, ds,
                     fp32_accuracy: float, log) -> tuple[LoadedModel, float, list[dict]]:
    """(the model at the chosen precision, its validation accuracy, one row per precision
    tried) for ``requested`` (auto or a precision)."""
    if requested not in CHOICES:
        raise SvtError(f"unknown precision {requested!r}; choose one of {', '.join(CHOICES)}")
    irs: dict[str, IR] = {}
    for precision in (PRECISIONS if requested == "auto" else (requested,)):
        try:
            irs[precision] = deployed_ir(at_precision(loaded, precision, ds.normalize),
                                         ds.input_shape)
        except SvtError as e:
            if requested != "auto":
                raise
            log(f"  {precision}: not available for this model ({e})")
    plans: dict[str, MemoryPlan] = {p: plan_memory(ir) for p, ir in irs.items()}
    order: list[tuple[str, object]] = [(p, p) for p in plans]
    if "int8" in plans and "int4" in plans:
        mix = _mixed(plans["int8"], plans["int4"], budget)
        if mix is not None:
            order.insert(order.index(("int8", "int8")) + 1, (MIXED, mix))
    tried, within = [], []
    for label, precision in order:
        candidate = at_precision(loaded, precision, ds.normalize)
        ir = irs.get(label) or deployed_ir(candidate, ds.input_shape)
        plan = plans.get(label) or plan_memory(ir)
        try:
            fits = budget.fits(plan, ir)
        except SvtError as e:  # a latency budget without kernel costs for this precision
            if requested != "auto":
                raise
            log(f"  {label}: skipped ({e})")
            continue
        acc = fp32_accuracy if label == "fp32" else val.check(reference_model(candidate))
        drop = (fp32_accuracy - acc) * 100
        predicted = (round(budget.instructions(ir, plan))
                     if budget.latency is not None and budget.fit(plan).fits else None)
        row = {"precision": label, "weight_bytes": plan.weight_bytes,
               "arena_bytes": plan.arena_bytes, "val_accuracy": round(acc, 5),
               "drop": round(drop, 3), "fits": fits,
               **({"instructions": predicted} if predicted is not None else {})}
        if label == MIXED:
            row["int4_layers"] = sorted(k for k, v in precision.items() if v == "int4")
        tried.append(row)
        detail = f" ({len(row['int4_layers'])} largest layers in int4)" if label == MIXED else ""
        log(f"  {label}{detail}: weights {plan.weight_bytes:,} B, "
            + (f"predicted {predicted:,} instructions, " if predicted is not None else "")
            + f"val drop {drop:.2f} pt" + (", meets the budget" if fits else ""))
        if requested != "auto":
            return candidate, acc, tried
        if drop <= budget.max_drop:
            if fits:
                return candidate, acc, tried
            within.append((plan.weight_bytes, candidate, acc))
    if not within:
        return at_precision(loaded, "fp32", None), fp32_accuracy, tried
    _, best, acc = min(within, key=lambda w: w[0])
    return best, acc, tried
