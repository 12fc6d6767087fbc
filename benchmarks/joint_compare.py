#!/usr/bin/env python3
"""Joint pruning and integer quantization on the reference model: test accuracy against
memory saved, per weight precision, pruning cut and fine-tuning.

    python benchmarks/joint_compare.py --finetune-epochs 1 --finetune-samples 5000 \
        --profile-samples 500 --check-samples 1500

Cells: precision {fp32, int8, int4, auto} x cut {0, 26.7, 50, 75} % x {no fine-tuning,
fine-tuning}. For fp32/int8/int4 the cut is PrimeSVT pruning of that precision's own
weight bytes (a fraction of the parameters), run under ``--max-drop`` and, where it cannot
reach the cut within it, with the drop limit raised step by step (noted in the table). For
auto the budget is the cut of the fp32 bytes and the engine chooses each group's
precision together with its pruning rate. Memory saved is always against
the fp32 baseline's weight bytes. Accuracy: the test split (the integer models measured
by their PyTorch integer reference, which the C matches score for score); every decision
uses the validation split. Finished cells are cached, so an interrupted run resumes;
``--reuse`` takes cells of the named precisions from an earlier run's JSON instead (marked
in the table), when its sampling, drop and fine-tuning settings are these.
Writes a markdown table to stdout, the rows to docs/joint_compare.json and a plot to
docs/joint_compare.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from svt_deploy.data import load_dataset  # noqa: E402
from svt_deploy.errors import InfeasibleBudget  # noqa: E402
from svt_deploy.loading import load_model  # noqa: E402
from svt_deploy.memory import plan_memory  # noqa: E402
from svt_deploy.pipeline.evaluation import cached_test_accuracy  # noqa: E402
from svt_deploy.prune import Budget, Pruner  # noqa: E402
from svt_deploy.prune.precision import at_precision  # noqa: E402
from svt_deploy.quant.reference import deployed_ir, reference_model  # noqa: E402
from svt_deploy.stages import StageCache, stage_key  # noqa: E402

ESCALATION = (6.0, 10.0, 20.0, 50.0)  # drop limits tried when a cut misses --max-drop
# Published operating points (different models and datasets: only the shape compares)
PUBLISHED = [
    {"label": "PrimeSVT (paper), fp32 pruning", "saved_pct": 26.68, "drop": "3.0 / 0.4 (FT)",
     "note": "Spikformer-8-512, ImageNet, baseline 73.3 %"},
    {"label": "AQ4SViT (paper), quantization", "saved_pct": 82.5, "drop": "<= 1.5",
     "note": "its largest memory saving at <= 1.5 pt"},
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8", "int4", "auto"])
    p.add_argument("--cuts", type=float, nargs="+", default=[0.0, 26.7, 50.0, 75.0])
    p.add_argument("--max-drop", type=float, default=3.0)
    p.add_argument("--escalation", type=float, nargs="*", default=list(ESCALATION),
                   help="larger drop limits tried, in order, when a cut is infeasible within "
                        "--max-drop (each try is a full pruning run; none: record it as "
                        "infeasible)")
    p.add_argument("--finetune-epochs", type=float, default=1.0,
                   help="0: no fine-tuned cells")
    p.add_argument("--finetune-samples", type=int, default=5000)
    p.add_argument("--finetune-cuts", type=float, nargs="+", default=None,
                   help="cuts that get a fine-tuned cell (default: every cut but 0)")
    p.add_argument("--profile-samples", type=int, default=500)
    p.add_argument("--check-samples", type=int, default=1500)
    p.add_argument("--test-samples", type=int, default=None, help="default: all 10,000")
    p.add_argument("--tflite", metavar="DIR",
                   help="the --out of `svt-deploy export-tflite` on the same model: adds its "
                        "LiteRT int8 row (flatbuffer bytes, test accuracy)")
    p.add_argument("--deploy", metavar="OUT", nargs="*", default=[],
                   help="full-pipeline output directories (out/BOARD) of the same model: "
                        "adds a row from each report.json")
    p.add_argument("--cache", default=str(REPO / "out" / "bench" / ".cache"))
    p.add_argument("--reuse", nargs="+", metavar=("JSON", "PRECISION"), default=None,
                   help="an earlier run's JSON and the precisions whose cells it supplies "
                        "(e.g. after a change that only concerns auto)")
    p.add_argument("--table-only", action="store_true",
                   help="print the table of the cells finished so far; compute nothing")
    p.add_argument("--json-out", default=str(REPO / "docs" / "joint_compare.json"))
    p.add_argument("--plot", default=str(REPO / "docs" / "joint_compare.png"))
    args = p.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data)
    fp32 = load_model(None, None)
    fp32.input_shape = ds.input_shape
    base_weights = plan_memory(deployed_ir(fp32, ds.input_shape)).weight_bytes
    base_acc, n_test = cached_test_accuracy(fp32.model, ds, fp32.fingerprint(),
                                            args.test_samples, cache, True, "baseline")
    sampling = {"profile_samples": args.profile_samples, "check_samples": args.check_samples}
    ft_cuts = args.finetune_cuts if args.finetune_cuts is not None else \
        [c for c in args.cuts if c > 0]
    cells = StageCache(cache)
    reused = reusable(args, sampling)
    rows, missing = [], []
    for precision in args.precisions:
        for cut in args.cuts:
            for ft in ((0.0, args.finetune_epochs) if args.finetune_epochs and cut in ft_cuts
                       else (0.0,)):
                name = f"joint-{precision}-{cut:g}-ft{ft:g}"
                key = stage_key(fp32.fingerprint(), ds.fingerprint(), precision, cut, ft,
                                args.max_drop, args.escalation, args.finetune_samples,
                                args.test_samples, sampling)
                row = cells.get(name, key) or reused.get((precision, cut, ft))
                if row is None and args.table_only:
                    missing.append(f"{precision} {cut:g} % ft={ft:g}")
                    continue
                if row is None:
                    row = run_cell(fp32, ds, args, cache, sampling, base_weights, base_acc,
                                   precision, cut, ft)
                    row["measured"] = time.strftime("%Y-%m-%d")
                    cells.put(name, key, row)
                    print(f"# {row}", file=sys.stderr, flush=True)
                rows.append(row)
    out = {"baseline_test_accuracy": base_acc, "test_samples": n_test,
           "baseline_weight_bytes": base_weights, "max_drop": args.max_drop,
           "finetune_epochs": args.finetune_epochs, "finetune_samples": args.finetune_samples,
           **sampling, "rows": rows, "missing": missing, "published": PUBLISHED,
           "measured_elsewhere": elsewhere(args, base_weights, base_acc)}
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    print_table(out)
    if rows:
        plot(out, Path(args.plot))
    return 0


def reusable(args, sampling: dict) -> dict:
    """(precision, cut, fine-tuning epochs) -> row of the ``--reuse`` JSON, for its named
    precisions; refused (one line) when that run's settings differ from these."""
    if not args.reuse:
        return {}
    if len(args.reuse) < 2:
        sys.exit("--reuse takes a JSON file and at least one precision")
    path, precisions = Path(args.reuse[0]), set(args.reuse[1:])
    old = json.loads(path.read_text())
    mine = {"max_drop": args.max_drop, "finetune_epochs": args.finetune_epochs,
            "finetune_samples": args.finetune_samples, **sampling}
    differ = {k: (old.get(k), v) for k, v in mine.items() if old.get(k) != v}
    if differ:
        sys.exit(f"--reuse {path}: that run's settings differ ({differ}); rerun those cells")
    return {(r["precision"], r["cut_pct"], r["finetune_epochs"]):
            {"reused_from": path.name, **r} for r in old["rows"] if r["precision"] in precisions}


def run_cell(fp32, ds, args, cache, sampling, base_weights, base_acc, precision, cut,
             ft) -> dict:
    """One cell: the model at ``precision``, pruned by ``cut`` % (auto: to ``cut`` % below
    the fp32 bytes), optionally fine-tuned; its test accuracy and memory."""
    t0 = time.time()
    if precision == "auto":
        flash = int(base_weights * (1 - cut / 100))
    else:
        own = plan_memory(deployed_ir(at_precision(fp32, precision, ds.normalize),
                                      ds.input_shape)).weight_bytes
        flash = int(own * (1 - cut / 100))
    result, used = None, None
    for limit in (args.max_drop, *[d for d in args.escalation if d > args.max_drop]):
        try:
            result = Pruner(fp32, ds, Budget(flash, None, limit, f"{cut}%"),
                            precision=precision, cache_dir=cache, finetune_epochs=ft,
                            finetune_samples=args.finetune_samples, **sampling,
                            log=lambda *_: None).run()
            used = limit
            break
        except InfeasibleBudget as e:
            print(f"# {precision} {cut}% ft={ft:g}: {e}", file=sys.stderr)
    if result is None:
        return {"precision": precision, "cut_pct": cut, "finetune_epochs": ft,
                "infeasible": True, "max_drop_tried": limit, "seconds": round(time.time() - t0, 1)}

    def test(lm):
        return cached_test_accuracy(reference_model(lm, ds.input_shape), ds, lm.fingerprint(),
                                    args.test_samples, cache, True, "test")[0]

    final = result.state
    acc = test(final.loaded)
    row = {"precision": precision, "chosen": final.loaded.precision, "cut_pct": cut,
           "finetune_epochs": ft, "max_drop_used": used,
           "weight_bytes": final.plan.weight_bytes,
           **_versus_baseline(final.plan.weight_bytes, acc, base_weights, base_acc),
           "params": final.plan.params, "test_accuracy": round(acc, 5),
           "seconds": round(time.time() - t0, 1)}
    if result.before_finetune is not None:
        row["test_accuracy_before_ft"] = round(test(result.before_finetune.loaded), 5)
    return row


def elsewhere(args, base_weights: int, base_acc: float) -> list[dict]:
    """Rows measured by other commands on the same model: the TFLite int8 export and the
    deploys named on the command line."""
    rows = []
    if args.tflite:
        meta = json.loads((Path(args.tflite) / "tflite_export.json").read_text())
        int8 = [c for c in meta.get("checks", {}).get("runtimes", [])
                if c["runtime"] == "LiteRT int8"]
        if int8:
            flatbuffer = meta["bytes"]["model_int8.tflite"]
            rows.append(_row("TFLite int8 (LiteRT)", flatbuffer, int8[0]["accuracy"],
                             int8[0]["samples"], "flatbuffer bytes, full-integer",
                             base_weights, base_acc))
    for out_dir in args.deploy:
        r = json.loads((Path(out_dir) / "report.json").read_text())
        final = r["finetuned"] or r["pruned"]
        ft = r.get("finetune")
        how = (f"{ft['epochs']:g} ep on {ft['samples']:,} images, "
               f"{r['pruned']['accuracy'] * 100:.2f} % before" if ft else "no fine-tuning")
        rows.append(_row(f"deploy {r['board']} ({_precision_label(r['precision'])})",
                         final["flash_bytes"], final["accuracy"], r["test_samples"],
                         f"`{r['command']}`; {how}", base_weights, base_acc,
                         finetuned=bool(ft)))
    return rows


def _row(label, weight_bytes, accuracy, samples, note, base_weights, base_acc,
         finetuned=False) -> dict:
    return {"label": label, "weight_bytes": weight_bytes, "test_accuracy": accuracy,
            "test_samples": samples, "finetuned": finetuned, "note": note,
            **_versus_baseline(weight_bytes, accuracy, base_weights, base_acc)}


def _versus_baseline(weight_bytes, accuracy, base_weights, base_acc) -> dict:
    """Memory saved (% of the fp32 weight bytes) and accuracy drop (points)."""
    return {"saved_pct": round(100 * (1 - weight_bytes / base_weights), 2),
            "drop_pt": round((base_acc - accuracy) * 100, 2)}


def print_table(out: dict) -> None:
    print(f"fp32 baseline: test accuracy {out['baseline_test_accuracy'] * 100:.2f} % on "
          f"{out['test_samples']:,} images; weights {out['baseline_weight_bytes']:,} B. "
          f"Fine-tuning: {out['finetune_epochs']:g} epoch(s) on {out['finetune_samples']:,} "
          f"training images. Validation: {out['profile_samples']:,} images per sensitivity "
          f"measurement, {out['check_samples']:,} to check each step.\n")
    print("| precision | cut | fine-tuning | weights | memory saved | test acc. | drop (pt) | "
          "note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        ft = f"{r['finetune_epochs']:g} ep" if r["finetune_epochs"] else "none"
        if r.get("infeasible"):
            print(f"| {r['precision']} | {r['cut_pct']:g} % | {ft} | - | - | - | - | "
                  f"infeasible up to a {r['max_drop_tried']:g} pt validation drop"
                  + (f"; from {r['reused_from']}" if "reused_from" in r else "") + " |")
            continue
        notes = []
        if r["precision"] == "auto":
            notes.append(f"chose {_precision_label(r['chosen'])}")
        if r["max_drop_used"] != out["max_drop"]:
            notes.append(f"infeasible within {out['max_drop']:g} pt; ran with "
                         f"{r['max_drop_used']:g}")
        if "test_accuracy_before_ft" in r:
            notes.append(f"before FT {r['test_accuracy_before_ft'] * 100:.2f} %")
        if "reused_from" in r:
            notes.append(f"from {r['reused_from']}"
                         + (f" ({r['measured']})" if "measured" in r else ""))
        print(f"| {r['precision']} | {r['cut_pct']:g} % | {ft} | {r['weight_bytes']:,} B | "
              f"{r['saved_pct']:.1f} % | {r['test_accuracy'] * 100:.2f} % | "
              f"{r['drop_pt']:+.2f} | {'; '.join(notes)} |")
    for m in out.get("missing", []):
        print(f"| {m} | not measured yet | | | | | | |")
    for r in out.get("measured_elsewhere", []):
        print(f"| {r['label']} | | | {r['weight_bytes']:,} B | {r['saved_pct']:.1f} % | "
              f"{r['test_accuracy'] * 100:.2f} % | {r['drop_pt']:+.2f} | {r['note']} "
              f"({r['test_samples']:,} test images) |")
    for pub in out["published"]:
        print(f"| {pub['label']} | | | | {pub['saved_pct']:g} % | | {pub['drop']} | "
              f"published, {pub['note']} |")


def _precision_label(chosen) -> str:
    """'int8', or for a per-layer mix {layer: precision} 'int8+int4 (2 of 18 layers int4)'."""
    if isinstance(chosen, str):
        return chosen
    int4 = sum(p == "int4" for p in chosen.values())
    return f"int8+int4 ({int4} of {len(chosen)} layers int4)"


def plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    marks = {"fp32": "o", "int8": "s", "int4": "^", "auto": "*"}
    for precision, mark in marks.items():
        for ft, style in ((False, "-"), (True, "--")):
            pts = sorted((r["saved_pct"], r["test_accuracy"] * 100) for r in out["rows"]
                         if r["precision"] == precision and not r.get("infeasible")
                         and bool(r["finetune_epochs"]) == ft)
            if pts:
                ax.plot(*zip(*pts), mark + style, label=precision + (" + FT" if ft else ""))
    for r in out.get("measured_elsewhere", []):
        ax.plot(r["saved_pct"], r["test_accuracy"] * 100, "D" if r["finetuned"] else "x",
                label=r["label"])
    for pub in out["published"]:
        ax.axvline(pub["saved_pct"], color="#999999", lw=0.8, ls=":")
        ax.text(pub["saved_pct"], ax.get_ylim()[0], " " + pub["label"].split(" (")[0],
                rotation=90, va="bottom", fontsize=7, color="#666666")
    ax.axhline(out["baseline_test_accuracy"] * 100, color="k", lw=0.8)
    ax.set_xlabel("memory saved vs the fp32 weights (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Joint pruning and quantization (reference SViT, Fashion-MNIST)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
