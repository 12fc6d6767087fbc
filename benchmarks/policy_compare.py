#!/usr/bin/env python3
"""PrimeSVT prioritized policy vs the uniform baseline at fixed flash-reduction targets.

    python benchmarks/policy_compare.py --finetune-epochs 2

For each target (percent of the fp32 weight bytes removed) x {prioritized, uniform} x
{no fine-tuning, fine-tuning}: the test accuracy and its drop (all 10,000 test images;
pruning decisions use the validation split only). The prioritized policy runs under
``--max-drop``; where it cannot reach a target within it, the drop limit is raised step by
step (noted in the table) so both policies are compared at the same memory. The uniform
policy has no drop limit: one rate for every group, the smallest that meets the target.
Writes a markdown table to stdout, the raw rows to docs/policy_compare.json and a plot to
docs/policy_compare.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from svt_deploy.pipeline.evaluation import cached_test_accuracy  # noqa: E402
from svt_deploy.data import load_dataset  # noqa: E402
from svt_deploy.errors import InfeasibleBudget  # noqa: E402
from svt_deploy.ir import extract_ir  # noqa: E402
from svt_deploy.loading import load_model  # noqa: E402
from svt_deploy.memory import plan_memory  # noqa: E402
from svt_deploy.prune import Budget, Pruner  # noqa: E402
from svt_deploy.stages import StageCache, stage_key  # noqa: E402

PAPER = {"target": 26.68, "baseline": 73.3, "no_ft": 70.3, "ft": 72.9,
         "note": "PrimeSVT paper: Spikformer-8-512 on ImageNet"}
ESCALATION = (6.0, 10.0, 20.0, 50.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="default: the reference model")
    p.add_argument("--model-def", default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--targets", type=float, nargs="+", default=[15, 26.7, 35, 50])
    p.add_argument("--max-drop", type=float, default=3.0)
    p.add_argument("--finetune-epochs", type=float, default=2.0)
    p.add_argument("--finetune-samples", type=int, default=20000)
    p.add_argument("--profile-samples", type=int, default=1000,
                   help="validation images per sensitivity measurement")
    p.add_argument("--check-samples", type=int, default=2500,
                   help="validation images to check each applied step")
    p.add_argument("--greedy", action="store_true",
                   help="also run the prioritized policy with the paper's literal greedy rule")
    p.add_argument("--cache", default=str(REPO / "out" / "bench" / ".cache"))
    p.add_argument("--table-only", action="store_true",
                   help="print the table of the cells finished so far; compute nothing")
    p.add_argument("--json-out", default=str(REPO / "docs" / "policy_compare.json"))
    p.add_argument("--plot", default=str(REPO / "docs" / "policy_compare.png"))
    args = p.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data)
    loaded = load_model(args.model_def, args.weights)
    base_weights = plan_memory(extract_ir(loaded.model, ds.input_shape)).weight_bytes
    base_acc, n_test = cached_test_accuracy(loaded.model, ds, loaded.fingerprint(), None,
                                            cache, True, "baseline")
    # One deep sensitivity profile serves every drop limit below (the cache hands a
    # shallower limit the rows it would have measured), so escalating never re-profiles.
    sampling = {"profile_samples": args.profile_samples, "check_samples": args.check_samples}
    if not args.table_only:
        warm = Pruner(loaded, ds, Budget(None, None, ESCALATION[-1]), cache_dir=cache,
                      log=lambda *_: None, **sampling)
        warm.profile(warm.baseline, ESCALATION[-1])
    cells = StageCache(cache)  # each finished cell is kept: an interrupted run resumes
    model_fp = loaded.fingerprint()
    rows, missing = [], []
    for target in args.targets:
        for ft in (0.0, args.finetune_epochs):
            variants = [("prioritized", "proportional"), ("uniform", None)]
            if not ft and args.greedy:  # the paper's literal rule (without fine-tuning)
                variants.insert(1, ("prioritized", "greedy"))
            for policy, allocation in variants:
                label = f"{policy} ({allocation})" if allocation else policy
                name = f"cell-{target:g}-{policy}-{allocation or 'one-rate'}-ft{ft:g}"
                key = stage_key(model_fp, ds.fingerprint(), target, label, ft,
                                args.max_drop, args.finetune_samples, sampling)
                row = cells.get(name, key)
                if row is not None:
                    rows.append(row)
                    continue
                if args.table_only:
                    missing.append(f"{target:g} % {label} ft={ft:g}")
                    continue
                row = run_cell(loaded, ds, args, cache, sampling, base_weights, base_acc,
                               target, policy, allocation, label, ft)
                cells.put(name, key, row)
                rows.append(row)
                print(f"# {row}", file=sys.stderr, flush=True)
    out = {"baseline_test_accuracy": base_acc, "test_samples": n_test,
           "baseline_weight_bytes": base_weights, "max_drop": args.max_drop,
           "finetune_epochs": args.finetune_epochs, "finetune_samples": args.finetune_samples,
           **sampling,
           "rows": rows, "missing": missing, "paper": PAPER}
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    print_table(out)
    plot(out, Path(args.plot))
    return 0


def run_cell(loaded, ds, args, cache, sampling, base_weights, base_acc, target, policy,
             allocation, label, ft) -> dict:
    """One table cell: prune to ``target`` % fewer weight bytes and measure test accuracy."""
    t0 = time.time()
    flash = int(base_weights * (1 - target / 100))
    limits = [args.max_drop, *[d for d in ESCALATION if d > args.max_drop]] \
        if policy == "prioritized" else [100.0]
    result, used = None, None
    for limit in limits:
        try:
            result = Pruner(loaded, ds, Budget(flash, None, limit, f"{target}%"),
                            policy=policy, cache_dir=cache, finetune_epochs=ft,
                            finetune_samples=args.finetune_samples,
                            allocation=allocation or "proportional", **sampling,
                            log=lambda *_: None).run()
            used = limit
            break
        except InfeasibleBudget as e:
            print(f"# {policy} {target}% ft={ft:g}: {e}", file=sys.stderr)
    final = result.state.loaded
    acc, _ = cached_test_accuracy(final.model, ds, final.fingerprint(), None, cache, True,
                                  "pruned")
    row = {"target_pct": target, "policy": label, "finetune_epochs": ft, "max_drop_used": used if policy == "prioritized" else None,
           "weight_bytes": result.state.plan.weight_bytes,
           "reduction_pct": round(100 * (1 - result.state.plan.weight_bytes / base_weights), 2),
           "test_accuracy": round(acc, 5), "drop_pt": round((base_acc - acc) * 100, 2),
           "seconds": round(time.time() - t0, 1)}
    if result.before_finetune is not None:
        pre = result.before_finetune.loaded
        row["test_accuracy_before_ft"] = round(cached_test_accuracy(
            pre.model, ds, pre.fingerprint(), None, cache, True, "pre-ft")[0], 5)
    return row


def print_table(out: dict) -> None:
    print(f"Baseline test accuracy {out['baseline_test_accuracy'] * 100:.2f} % on "
          f"{out['test_samples']:,} images; weights {out['baseline_weight_bytes']:,} B. "
          f"Fine-tuning: {out['finetune_epochs']:g} epoch(s) on {out['finetune_samples']:,} "
          f"training images. Validation: {out['profile_samples']:,} images per sensitivity "
          f"measurement, {out['check_samples']:,} to check each step.\n")
    print("| target cut | policy | fine-tuning | weights | cut | test acc. | drop (pt) | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        ft = f"{r['finetune_epochs']:g} ep" if r["finetune_epochs"] else "none"
        note = ""
        if r["max_drop_used"] is not None and r["max_drop_used"] != out["max_drop"]:
            note = f"infeasible within {out['max_drop']:g} pt; ran with {r['max_drop_used']:g}"
        if "test_accuracy_before_ft" in r:
            note += (" " if note else "") + f"before FT {r['test_accuracy_before_ft'] * 100:.2f} %"
        print(f"| {r['target_pct']:g} % | {r['policy']} | {ft} | {r['weight_bytes']:,} B | "
              f"{r['reduction_pct']:.1f} % | {r['test_accuracy'] * 100:.2f} % | "
              f"{r['drop_pt']:+.2f} | {note} |")
    pp = out["paper"]
    for m in out.get("missing", []):
        print(f"| {m} | not measured yet | | | | | | |")
    print(f"| {pp['target']} % | PrimeSVT (paper) | none / yes | - | {pp['target']} % | "
          f"{pp['no_ft']} % / {pp['ft']} % | {pp['baseline'] - pp['no_ft']:+.1f} / "
          f"{pp['baseline'] - pp['ft']:+.1f} | {pp['note']}, baseline {pp['baseline']} % |")


def plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {("prioritized (proportional)", False): ("o-", "prioritized"),
              ("prioritized (proportional)", True): ("o--", "prioritized + FT"),
              ("prioritized (greedy)", False): ("^:", "prioritized, paper's greedy rule"),
              ("uniform", False): ("s-", "uniform"), ("uniform", True): ("s--", "uniform + FT")}
    for (policy, ft), (style, label) in styles.items():
        pts = sorted((r["weight_bytes"] / 1024, r["test_accuracy"] * 100) for r in out["rows"]
                     if r["policy"] == policy and bool(r["finetune_epochs"]) == ft)
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ax.scatter([out["baseline_weight_bytes"] / 1024], [out["baseline_test_accuracy"] * 100],
               marker="*", s=150, color="k", label="unpruned", zorder=5)
    ax.set_xlabel("fp32 weights (KiB)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs flash: prioritized (PrimeSVT) vs uniform pruning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
