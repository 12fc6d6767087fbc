"""The deploy report: report.json (machine-readable), report.md and its plots, and the
summary the deploy prints.

matplotlib is imported where a plot is drawn: the Agg backend must be chosen before
pyplot is imported, and no other command pays for it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from .checkpoint import atomic_write_bytes


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:.2f} %"


def _bytes(x) -> str:
    return "-" if x is None else f"{x:,} B"


def _save_png(fig, path: Path) -> None:
    """Through memory and a rename, like every other output: savefig writes the file in
    place, so a run killed while plotting left a truncated PNG beside the last report."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def plot_layers(layers: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in layers]
    before = [r.get("bytes_before", r["params_before"] * 4) / 1024 for r in layers]
    after = [r.get("bytes_after", r["params_after"] * 4) / 1024 for r in layers]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], before, height=0.4, label="before", color="#bbbbbb")
    ax.barh([i - 0.2 for i in y], after, height=0.4, label="after", color="#1f77b4")
    ax.set_yticks(list(y), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("weights in flash (KiB, BN folded; after: at the deployed precision)")
    ax.set_title("Flash per layer before and after pruning")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def plot_explored(explored: list[dict], baseline: dict, budget_bytes: int | None,
                  path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = [e for e in explored if e.get("accepted")]
    bad = [e for e in explored if not e.get("accepted")]
    for group, marker, label in ((ok, "o", "accepted"), (bad, "x", "rejected (over the drop)")):
        if group:
            ax.scatter([e["weight_bytes"] / 1024 for e in group],
                       [e["val_accuracy"] * 100 for e in group], marker=marker, label=label)
    if baseline.get("val_accuracy") is not None:
        ax.scatter([baseline["weight_bytes"] / 1024], [baseline["val_accuracy"] * 100],
                   marker="*", s=150, color="k", label="baseline")
    if budget_bytes is not None:
        ax.axvline(budget_bytes / 1024, ls="--", color="r", label="flash budget")
    ax.set_xlabel("fp32 weights (KiB)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Explored pruning steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def write_report(out_dir: Path, report: dict, prune_plan: dict) -> None:
    out_dir = Path(out_dir)
    plot_layers(report["layers"], out_dir / "memory_per_layer.png")
    plot_explored(prune_plan.get("explored", []), prune_plan.get("baseline", {}),
                  report["budget"]["flash_bytes"], out_dir / "explored_steps.png")
    atomic_write_bytes(out_dir / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(out_dir / "report.md", render_markdown(report).encode())


def render_markdown(r: dict) -> str:
    b, p, f = r["baseline"], r["pruned"], r["finetuned"]
    lines = [f"# svt-deploy report: {r['board']}", "",
             f"Model: `{r['model']}`; data: `{r['data']}`; command: `{r['command']}`", "",
             "## Summary", "",
             "| | test accuracy | params | flash (weights) | SRAM (arena) |",
             "|---|---|---|---|---|"]
    for name, s in (("baseline", b), ("pruned", p), ("fine-tuned", f)):
        if s is not None:
            lines.append(f"| {name} | {_pct(s['accuracy'])} | {s['params']:,} | "
                         f"{_bytes(s['flash_bytes'])} | {_bytes(s['sram_bytes'])} |")
    bud = r["budget"]
    if r.get("precision"):
        lines += ["", f"Weight precision: **{r['precision']}**"
                  + (" (integer-only: uint8 pixels in, int32 scores out, no float code)"
                     if r["precision"] != "fp32" else "") + "."]
    lat_budget = bud.get("latency")
    lines += ["", f"Budget: weights <= {_bytes(bud['flash_bytes'])}, arena <= "
              f"{_bytes(bud['sram_bytes'])}, "
              + (f"predicted instructions <= {lat_budget['max_instructions']:,} "
                 f"({lat_budget['max_ms']:g} ms), " if lat_budget else "")
              + f"accuracy drop <= {bud['max_drop']:g} points.", ""]
    fw, host, dev = r["firmware"], r["host_emulation"], r["device"]
    if fw:
        lines += ["## Firmware", "",
                  f"text {fw['text']:,} B, data {fw['data']:,} B, bss {fw['bss']:,} B; "
                  f"flash used {fw['flash_used']:,} B, SRAM used {fw['sram_used']:,} B; "
                  f"fits: **{fw['fits']}**", ""]
    if host:
        lines += ["## Checks", "",
                  f"- Host emulation (gcc): {host['samples']:,} test images, accuracy "
                  f"{_pct(host['accuracy'])}, agreement with PyTorch {_pct(host['agreement'])}"
                  + (f", identical integer scores on {_pct(host['identical_scores'])}"
                     if r.get("precision", "fp32") != "fp32" and "identical_scores" in host
                     else "")]
    if dev:
        lines.append(f"- Device ({dev['target']}): {dev['samples']:,} test images, accuracy "
                     f"{_pct(dev['accuracy'])}, agreement with PyTorch {_pct(dev['agreement'])}, "
                     f"{dev['instructions_per_inference']:,} instructions per inference"
                     + ("; scores identical to PyTorch's and the host C's"
                        if dev.get("identical_to_reference") and dev.get("identical_to_host")
                        else ""))
    lines += latency_markdown(r.get("latency"))
    lines += ["", "## Layers", "",
              "| layer | params before | params after | pruned | precision | flash before | "
              "flash after |", "|---|---|---|---|---|---|---|"]
    for row in r["layers"]:
        lines.append(f"| {row['name']} | {row['params_before']:,} | {row['params_after']:,} | "
                     f"{row['rate'] * 100:.1f} % | {row.get('precision', 'fp32')} | "
                     f"{_bytes(row.get('bytes_before'))} | {_bytes(row.get('bytes_after'))} |")
    lines += ["", "![memory per layer](memory_per_layer.png)", "",
              "![explored steps](explored_steps.png)", "", "## Stage timings", "",
              "| stage | seconds |", "|---|---|"]
    reused = set(r.get("reused_stages") or [])
    for stage, sec in r["timings_s"].items():
        if stage == "total":
            lines.append(f"| total (this run) | {sec:.1f} |")
        else:
            note = " (cached from an earlier run)" if stage in reused else ""
            lines.append(f"| {stage} | {sec:.1f}{note} |")
    return "\n".join(lines) + "\n"


def _count(n) -> str:
    return "-" if n is None else f"{n:,}"


def _ms(n) -> str:
    return "-" if n is None else f"{n:g}"


def latency_markdown(lat: dict | None) -> list[str]:
    """The latency section: budget, prediction and measurement side by side."""
    if lat is None:
        return []
    lines = ["", "## Latency", ""]
    if lat["predicted_instructions"] is None and lat["budget_ms"] is None:
        return lines + [f"No predicted instructions: {lat['unavailable']}"]
    mhz = lat["clock_hz"] / 1e6
    lines += [f"| | instructions per inference | ms at {mhz:g} MHz (one instruction a cycle) |",
              "|---|---|---|"]
    if lat["budget_ms"] is not None:
        lines.append(f"| budget | {_count(lat['budget_instructions'])} | "
                     f"{_ms(lat['budget_ms'])} |")
    lines.append(f"| predicted ({lat['predicted_on'] or '-'}) | "
                 f"{_count(lat['predicted_instructions'])} | {_ms(lat['predicted_ms'])} |")
    if lat["measured_instructions"] is not None:
        lines.append(f"| measured ({lat['measured_on']}; {lat['counter']}) | "
                     f"{_count(lat['measured_instructions'])} | {_ms(lat['measured_ms'])} |")
    lines.append("")
    if lat["prediction_error_pct"] is not None:
        lines.append(f"Prediction error: {lat['prediction_error_pct']:+.2f} % of the measured "
                     "count. ")
    if lat.get("meets_budget") is not None:
        lines.append(f"Budget met: **{lat['meets_budget']}**. ")
    if lat["costs"]:
        lines.append(f"Kernel costs: `{lat['costs']}` (calibrated {lat['calibrated']}).")
    return lines


def format_summary(r: dict, out: Path) -> str:
    """The deploy's closing lines: accuracy and memory before and after, the firmware, the
    checks, and where the report is."""
    b, p, f = r["baseline"], r["pruned"], r["finetuned"]
    final = f or p
    lines = [f"{r['board']}: test accuracy {b['accuracy']:.4f} -> {final['accuracy']:.4f} "
             f"({(b['accuracy'] - final['accuracy']) * 100:+.2f} pt drop"
             + (f"; {p['accuracy']:.4f} before fine-tuning" if f else "") + ")",
             f"  weights {b['flash_bytes']:,} B -> {final['flash_bytes']:,} B "
             f"at {r.get('precision') or 'fp32'} (budget {r['budget']['flash_bytes']:,} B), "
             f"arena {b['sram_bytes']:,} B -> {final['sram_bytes']:,} B"]
    fw, host, dev = r["firmware"], r["host_emulation"], r["device"]
    if fw:
        lines.append(f"  firmware: text {fw['text']:,} data {fw['data']:,} bss {fw['bss']:,}; "
                     f"flash used {fw['flash_used']:,} B, SRAM used {fw['sram_used']:,} B; "
                     f"fits {fw['fits']}")
    same = (f", identical integer scores on {host['identical_scores']:.2%}"
            if r.get("precision", "fp32") != "fp32" and "identical_scores" in host else "")
    lines.append(f"  host C: accuracy {host['accuracy']:.4f}, agreement with PyTorch "
                 f"{host['agreement']:.4f} on {host['samples']:,} images{same}")
    if dev:
        ipi = dev["instructions_per_inference"]
        lines.append(f"  device ({dev['target']}): accuracy {dev['accuracy']:.4f}, agreement "
                     f"{dev['agreement']:.4f} on {dev['samples']:,} images"
                     + (", scores identical to PyTorch's and the host C's"
                        if dev.get("identical_to_reference") and dev.get("identical_to_host")
                        else "")
                     + (f", {ipi:,} {dev['counter'].split(' ')[0]} per inference" if ipi else ""))
    lat = r.get("latency")
    if lat and lat["predicted_instructions"] is not None:
        lines.append(
            f"  latency: predicted {lat['predicted_instructions']:,} instructions per inference"
            f" ({lat['predicted_ms']:g} ms at {lat['clock_hz'] / 1e6:g} MHz)"
            + (f", measured {lat['measured_instructions']:,} (prediction "
               f"{lat['prediction_error_pct']:+.1f} %)"
               if lat["prediction_error_pct"] is not None else "")
            + (f"; budget {lat['budget_instructions']:,} ({lat['budget_ms']:g} ms): "
               + ("met" if lat["meets_budget"] else "NOT met")
               if lat["budget_ms"] is not None else ""))
    reused = f" ({len(r['reused_stages'])} stages reused from the cache)" \
        if r["reused_stages"] else ""
    lines.append(f"  total {r['timings_s']['total']:.0f} s{reused}; report: {out / 'report.md'}")
    return "\n".join(lines)
