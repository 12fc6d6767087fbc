"""What a pruning run reports and writes: the group table, prune_plan.json and the pruned
model."""

from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import atomic_write_bytes
from ..ir import IR
from ..memory import plan_memory
from .groups import Group, group_units, touching_params
from .importance import SYNAPTIC
from .options import Budget
from .precision import group_precision
from .policies import State
from .pruner import PruneResult


def summarize_groups(result: PruneResult, groups: list[Group]) -> list[dict]:
    """One row per group: its state in the baseline and in the final model."""
    final = result.state
    by_space: dict[str, dict] = {}
    for r in result.groups:
        by_space.setdefault(r["space"], r)
    rows = []
    for g in groups:
        first = by_space.get(g.space, {})
        after = group_units(final.ir, g)
        rows.append({"group": g.label, "space": g.space, "units_before": g.units,
                     "units_after": after, "params_before": g.params,
                     "params_after": touching_params(final.ir, g.spaces),
                     "rate": round(1 - after / g.units, 4),
                     "precision": group_precision(final.loaded, final.ir, g.spaces) or "-",
                     "profiled_drop": first.get("profiled_drop"),
                     "measured_drop": first.get("measured_drop")})
    return rows


def layer_rows(base_ir: IR, final_ir: IR) -> list[dict]:
    """Per synaptic layer: parameters before and after (BN folded), the precision it is
    deployed at and its flash bytes before and after (packed as the kernels store them)."""
    after = {n.name: n for n in final_ir.nodes if n.op in SYNAPTIC}
    bytes_before = {s.name: s.weight_bytes for s in plan_memory(base_ir).steps}
    bytes_after = {s.name: s.weight_bytes for s in plan_memory(final_ir).steps}
    rows = []
    for n in base_ir.nodes:
        if n.op in SYNAPTIC:
            a = after[n.name].params if n.name in after else 0
            precision = (after[n.name].attrs.get("precision", "fp32") if n.name in after
                         else "-")
            rows.append({"name": n.name, "params_before": n.params, "params_after": a,
                         "rate": round(1 - a / n.params, 4) if n.params else 0.0,
                         "precision": precision, "bytes_before": bytes_before.get(n.name, 0),
                         "bytes_after": bytes_after.get(n.name, 0)})
    return rows


def format_table(result: PruneResult, budget: Budget, groups: list[Group],
                 test: dict | None = None) -> str:
    base, final = result.baseline, result.state
    lines = [f"{'group':34s} {'units':>11s} {'params':>19s} {'rate':>6s} {'weights':>9s} "
             f"{'profiled':>9s} {'measured':>9s}"]
    lines.append("-" * len(lines[0]))
    for r in summarize_groups(result, groups):
        prof = "-" if r["profiled_drop"] is None else f"{r['profiled_drop']:.2f}"
        meas = "-" if r["measured_drop"] is None else f"{r['measured_drop']:.2f}"
        lines.append(f"{r['group'][:34]:34s} {r['units_before']:>5d} -> {r['units_after']:<3d} "
                     f"{r['params_before']:>8,} -> {r['params_after']:<8,} {r['rate']:>6.0%} "
                     f"{r['precision']:>9s} {prof:>9s} {meas:>9s}")
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
    latency = latency_json(result, budget)
    if latency is not None:
        lines.append(f"predicted instructions per inference ({latency['images']} validation "
                     f"images): {latency['start_instructions']:,} -> "
                     f"{latency['predicted_instructions']:,} ({latency['predicted_ms']:g} ms); "
                     f"budget {latency['max_instructions']:,} ({budget.latency.describe()})")
    return "\n".join(lines)


def latency_json(result: PruneResult, budget: Budget) -> dict | None:
    """Under a latency budget: the budget and the predicted instructions per inference of
    the model pruning started from and of the result."""
    if budget.latency is None or result.instructions is None:
        return None
    lat = budget.latency
    final = result.instructions["final"]
    return {**lat.as_dict(), "start_instructions": result.instructions["start"],
            "predicted_instructions": final, "predicted_ms": round(lat.ms(final), 3),
            "images": len(budget.predictor.images), "split": "validation",
            "costs": budget.predictor.costs.source,
            "calibrated": budget.predictor.costs.calibration.date}


def plan_json(result: PruneResult, budget: Budget, policy: str, groups: list[Group],
              timings: dict, test: dict | None, extra: dict | None = None) -> dict:
    base, final = result.baseline, result.state

    def summary(state: State, acc: float | None):
        return {"val_accuracy": None if acc is None else round(acc, 5),
                "params": state.plan.params, "weight_bytes": state.plan.weight_bytes,
                "arena_bytes": state.plan.arena_bytes}

    return {
        "policy": policy,
        "budget": budget.as_dict(),
        "latency": latency_json(result, budget),
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
