"""Weight precision as a budget knob, chosen before any channel is pruned.

``auto`` tries fp32, int8, int4 in that order on the unpruned model and keeps the first
whose integer reference stays within the drop and meets the budget: quantizing costs
little accuracy (weights are rounded, the arithmetic after them is exact) and divides the
bytes of every layer at once by 4 or 8, where pruning removes the bytes of one group at a
time, each at a measured cost. When no precision meets the budget unpruned, the one with
the fewest bytes within the drop is pruned further (largest groups first, as ever). Every
drop is measured against the fp32 model on the validation split.
"""

from __future__ import annotations

import dataclasses

from ..errors import SvtError
from ..loading import LoadedModel
from ..memory import plan_memory
from ..quant.packing import PRECISIONS
from ..quant.reference import deployed_ir, reference_model
from .options import Budget

CHOICES = ("auto",) + PRECISIONS


def at_precision(loaded: LoadedModel, precision: str, normalize) -> LoadedModel:
    """The same model (shared weights) deploying at ``precision``."""
    return dataclasses.replace(loaded, precision=precision,
                               normalize=normalize if precision != "fp32" else None)


def choose_precision(loaded: LoadedModel, requested: str, budget: Budget, val, ds,
                     fp32_accuracy: float, log) -> tuple[LoadedModel, float, list[dict]]:
    """(the model at the chosen precision, its validation accuracy, one row per precision
    tried) for ``requested`` (auto or a precision)."""
    if requested not in CHOICES:
        raise SvtError(f"unknown precision {requested!r}; choose one of {', '.join(CHOICES)}")
    tried, within = [], []
    for precision in (PRECISIONS if requested == "auto" else (requested,)):
        candidate = at_precision(loaded, precision, ds.normalize)
        try:
            plan = plan_memory(deployed_ir(candidate, ds.input_shape))
        except SvtError as e:
            if requested != "auto":
                raise
            log(f"  {precision}: not available for this model ({e})")
            continue
        acc = fp32_accuracy if precision == "fp32" else val.check(reference_model(candidate))
        drop = (fp32_accuracy - acc) * 100
        fits = budget.fits(plan)
        tried.append({"precision": precision, "weight_bytes": plan.weight_bytes,
                      "arena_bytes": plan.arena_bytes, "val_accuracy": round(acc, 5),
                      "drop": round(drop, 3), "fits": fits})
        log(f"  {precision}: weights {plan.weight_bytes:,} B, val drop {drop:.2f} pt"
            + (", meets the budget" if fits else ""))
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
