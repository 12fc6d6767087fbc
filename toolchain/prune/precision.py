"""Weight precision as a budget knob: the model's starting precision, and the per-group
precision knob the prioritized loop turns together with each group's pruning rate.

``auto`` starts from the unpruned model at fp32 when it meets the budget as it is (the
user's model, untouched), else at int8 when its integer reference stays within the drop
(rounding weights to int8 costs almost nothing and divides every layer's bytes by about 4:
no pruning step comes close), else at fp32. From an int8 start, each group the prioritized
loop reaches (largest first, as PrimeSVT orders them) may also move the layers that produce
its channels to int4 (``lower``), alone or together with a pruning rate: the sensitivity
profile measures both knobs on the validation split, each candidate is checked by its
integer reference before it is taken and backed off on failure, and the loop stops as
soon as the budget is met. Every drop is measured against the fp32 model on the
validation split.
"""

from __future__ import annotations

import dataclasses

from ..errors import SvtError
from ..ir import IR
from ..loading import LoadedModel
from ..memory import plan_memory
from ..quant.packing import PRECISIONS
from ..quant.quantize import uniform_precision, weighted_layers
from ..quant.reference import deployed_ir, reference_model
from .options import Budget

CHOICES = ("auto",) + PRECISIONS
LOWER = {"int8": "int4"}  # the precision a group's layers may move to in the loop


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


def owned_layers(ir: IR, spaces) -> list[str]:
    """The weighted layers whose output channels lie in ``spaces``: the layers a group's
    precision knob sets (every weighted layer has one output space, so no two groups
    share one; the head's classes belong to none)."""
    weighted, spaces = set(weighted_layers(ir)), set(spaces)
    return [n.name for n in ir.nodes if n.name in weighted and n.space in spaces]


def layer_precisions(loaded: LoadedModel, ir: IR) -> dict[str, str]:
    """layer -> precision of ``loaded`` (a uniform precision spelled out per layer)."""
    p = loaded.precision
    return uniform_precision(ir, p) if isinstance(p, str) else dict(p)


def group_precision(loaded: LoadedModel, ir: IR, spaces) -> str | None:
    """The precision of the layers a group owns (None when it owns none)."""
    layers = owned_layers(ir, spaces)
    if not layers:
        return None
    per_layer = layer_precisions(loaded, ir)
    return precision_label({name: per_layer[name] for name in layers})


def lowered(loaded: LoadedModel, ir: IR, spaces) -> LoadedModel | None:
    """``loaded`` with the layers a group owns moved one precision down (int8 -> int4;
    shared weights), or None when the knob has nowhere to go."""
    current = group_precision(loaded, ir, spaces)
    if current not in LOWER:
        return None
    per_layer = layer_precisions(loaded, ir)
    per_layer.update({name: LOWER[current] for name in owned_layers(ir, spaces)})
    used = set(per_layer.values())
    return dataclasses.replace(loaded, precision=used.pop() if len(used) == 1 else per_layer)


def choose_precision(loaded: LoadedModel, requested: str, budget: Budget, val, ds,
                     fp32_accuracy: float, log) -> tuple[LoadedModel, float, list[dict]]:
    """(the model at its starting precision, its validation accuracy, one row per
    precision tried) for ``requested`` (auto or a precision)."""
    if requested not in CHOICES:
        raise SvtError(f"unknown precision {requested!r}; choose one of {', '.join(CHOICES)}")
    tried = []
    for precision in (("fp32", "int8") if requested == "auto" else (requested,)):
        candidate = at_precision(loaded, precision, ds.normalize)
        try:
            ir = deployed_ir(candidate, ds.input_shape)
        except SvtError as e:
            if requested != "auto":
                raise
            log(f"  {precision}: not available for this model ({e})")
            continue
        plan = plan_memory(ir)
        try:
            fits = budget.fits(plan, ir)
        except SvtError as e:  # a latency budget without kernel costs for this precision
            if requested != "auto":
                raise
            log(f"  {precision}: skipped ({e})")
            continue
        acc = fp32_accuracy if precision == "fp32" else val.check(reference_model(candidate))
        drop = (fp32_accuracy - acc) * 100
        predicted = (round(budget.instructions(ir, plan))
                     if budget.latency is not None and budget.fit(plan).fits else None)
        tried.append({"precision": precision, "weight_bytes": plan.weight_bytes,
                      "arena_bytes": plan.arena_bytes, "val_accuracy": round(acc, 5),
                      "drop": round(drop, 3), "fits": fits,
                      **({"instructions": predicted} if predicted is not None else {})})
        log(f"  {precision}: weights {plan.weight_bytes:,} B, "
            + (f"predicted {predicted:,} instructions, " if predicted is not None else "")
            + f"val drop {drop:.2f} pt" + (", meets the budget" if fits else ""))
        if requested != "auto" or (precision == "fp32" and fits):
            return candidate, acc, tried
        if precision == "int8" and drop <= budget.max_drop:
            if not fits:
                log("  int8 misses the budget: each group may also go to int4 while it is "
                    "pruned")
            return candidate, acc, tried
    return at_precision(loaded, "fp32", None), fp32_accuracy, tried
