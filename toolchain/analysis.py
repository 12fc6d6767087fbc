"""`svt-deploy analyze`: the memory model's table for one model on one board."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .boards import Board, fmt_bytes
from .codegen import model_hash
from .errors import SvtError
from .latency import predict_work, usable_costs
from .quant.reference import deployed_ir
from .loading import LoadedModel
from .manifest import read_manifest
from .memory import check_fit, plan_memory, time_major_state_bytes
from .pipeline.deploy import PROJECT
from .work import count_work


def measured_instructions(deploy_dir: str | Path, expected_hash: str) -> dict:
    """The instructions per inference a deploy measured on its device, from its
    report.json, checked to be of the same model (the project manifest's hash)."""
    deploy_dir = Path(deploy_dir)
    report_path = deploy_dir / "report.json"
    if not report_path.is_file():
        raise SvtError(f"{report_path} not found; --measured takes the output directory of "
                       "a finished `svt-deploy --board B` run")
    try:
        report = json.loads(report_path.read_text())
    except ValueError:
        raise SvtError(f"{report_path} is not valid JSON; rerun the deploy") from None
    manifest = read_manifest(deploy_dir / PROJECT)
    if manifest.model.model_hash != expected_hash:
        raise SvtError(f"{deploy_dir} deployed another model (hash "
                       f"{manifest.model.model_hash}, this one is {expected_hash}); pass the "
                       "model it deployed (--weights DIR/pruned_model.pt)")
    device = report.get("device") or {}
    if device.get("instructions_per_inference") is None:
        raise SvtError(f"{report_path} holds no on-device instruction count (no device "
                       "check was run); rerun the deploy without --no-device")
    return {"instructions_per_inference": device["instructions_per_inference"],
            "counter": device.get("counter"), "target": device.get("target"),
            "from": str(report_path)}


def analyze(loaded: LoadedModel, board: Board, images: torch.Tensor | None = None,
            measured_from: str | Path | None = None) -> dict:
    """The memory model of ``loaded`` against ``board``; with ``images`` (validation
    images) also the work per inference; with ``measured_from`` (a deploy's output
    directory) the instructions its device check measured."""
    if loaded.input_shape is None:
        raise SvtError("the model's input shape is unknown; pass --data so it can be traced")
    ir = deployed_ir(loaded, loaded.input_shape)
    plan = plan_memory(ir)
    work = count_work(ir, plan, images) if images is not None and len(images) else None
    work_of = {s.name: s for s in work.steps} if work else {}
    predicted, unavailable = None, None
    if work is not None:
        try:
            costs = usable_costs(board)
            predicted = predict_work(costs, ir, plan, work)
        except SvtError as e:  # analyze still shows the work; the reason goes in the table
            unavailable = str(e)
    predicted_of = {s.name: s.instructions for s in predicted.steps} if predicted else {}
    fit = check_fit(plan, board)
    region = board.largest_sram
    layers = [{"name": s.name, "kernel": s.kernel,
               "output": f"{s.channels}x{s.height}x{s.width}", "params": s.params,
               "precision": ir.node(s.name).attrs.get("precision", "-"),
               "weight_bytes": s.weight_bytes, "activation_bytes": s.out_bytes,
               "scratch_bytes": s.scratch_bytes, "in_place": s.in_place,
               **({"macs": round(work_of[s.name].macs), "sops": round(work_of[s.name].sops),
                   "neuron_updates": round(work_of[s.name].neuron_updates),
                   "input_event_rate": work_of[s.name].input_rate,
                   "predicted_instructions": round(predicted_of[s.name])
                   if predicted else None} if work else {})}
              for s in plan.steps]
    measured = measured_instructions(measured_from, model_hash(ir)) if measured_from else None
    return {
        "model": str(loaded.weights), "board": board.name, "mcu": board.mcu,
        "timesteps": ir.timesteps, "input_shape": list(ir.input_shape),
        "params_model": sum(p.numel() for p in loaded.model.parameters()),
        "params_folded": plan.params, "layers": layers,
        "flash": {"weights": plan.weight_bytes, "reserve": board.reserve_flash,
                  "total": board.flash_bytes or None, "budget": fit.flash_budget,
                  "over": fit.flash_over},
        "sram": {"arena": plan.arena_bytes, "region": region.name if region else None,
                 "region_size": region.size if region else None,
                 "reserve": board.reserve_sram, "budget": fit.sram_budget,
                 "over": fit.sram_over, "time_major_state": time_major_state_bytes(ir)},
        "fits": fit.fits,
        "work": None if work is None else {
            "images": work.images, "split": "validation", "macs": round(work.macs),
            "sops": round(work.sops), "neuron_updates": round(work.neuron_updates),
            "floor": round(work.floor),
            "predicted_instructions": round(predicted.total) if predicted else None,
            "costs": costs.source if predicted else None,
            "prediction_unavailable": unavailable},
        "measured": measured,
    }


def format_analysis(a: dict) -> str:
    out = [f"model  {a['model']}: {a['params_model']:,} parameters "
           f"({a['params_folded']:,} with BatchNorm folded), T={a['timesteps']}, input "
           f"{'x'.join(map(str, a['input_shape']))}",
           f"board  {a['board']} ({a['mcu']})", ""]
    head = (f"{'layer':30s} {'kernel':20s} {'output':>11s} {'params':>9s} {'prec.':>5s} "
            f"{'flash (B)':>11s} {'activations (B)':>16s} {'scratch (B)':>12s}")
    out += [head, "-" * len(head)]
    for r in a["layers"]:
        act = f"{r['activation_bytes']:,}" + (" (in place)" if r["in_place"] else "")
        out.append(f"{r['name']:30s} {r['kernel']:20s} {r['output']:>11s} {r['params']:>9,} "
                   f"{r['precision']:>5s} {r['weight_bytes']:>11,} {act:>16s} "
                   f"{r['scratch_bytes']:>12,}")
    out.append("-" * len(head))
    f, s = a["flash"], a["sram"]
    out.append(f"{'total':30s} {'':20s} {'':>11s} {a['params_folded']:>9,} {'':>5s} "
               f"{f['weights']:>11,} "
               f"{'arena ' + format(s['arena'], ','):>16s}")
    out.append("")
    out.append(f"schedule: layer-major, spike trains bit-packed at T={a['timesteps']} bits per "
               f"neuron; a time-major schedule would keep {s['time_major_state']:,} B of "
               "membrane state alive")
    if f["budget"] is None:
        out.append("flash: no limit on this board")
    else:
        verdict = (f"MISSES by {f['over']:,} B" if f["over"]
                   else f"fits ({f['budget'] - f['weights']:,} B to spare)")
        out.append(f"flash: weights {f['weights']:,} B vs budget {f['budget']:,} B "
                   f"({fmt_bytes(f['total'])} less {f['reserve']:,} B reserved for code): {verdict}")
    if s["budget"] is None:
        out.append("SRAM:  no limit on this board")
    else:
        verdict = (f"MISSES by {s['over']:,} B" if s["over"]
                   else f"fits ({s['budget'] - s['arena']:,} B to spare)")
        out.append(f"SRAM:  arena {s['arena']:,} B vs budget {s['budget']:,} B (region "
                   f"{s['region']} {fmt_bytes(s['region_size'])} less {s['reserve']:,} B for "
                   f"stack and I/O): {verdict}")
    out.append("verdict: " + ("fits" if a["fits"] else "does NOT fit"))
    if a["work"] is not None:
        out += ["", *format_work(a)]
    return "\n".join(out)


def format_work(a: dict) -> list[str]:
    w, m = a["work"], a["measured"]
    out = [f"work per inference (mean of {w['images']} validation images): dense MACs, "
           "synaptic operations (input spikes x fan-out), neuron updates; 'active in' is "
           "the share of the input's neuron-timesteps that carry spikes"]
    predicted = w["predicted_instructions"] is not None
    head = (f"{'layer':30s} {'kernel':20s} {'active in':>12s} {'dense MACs':>14s} "
            f"{'SOPs':>12s} {'neuron upd.':>12s}" + (f" {'pred. instr.':>13s}" if predicted
                                                     else ""))
    out += [head, "-" * len(head)]
    for r in a["layers"]:
        rate = "-" if r["input_event_rate"] is None else f"{r['input_event_rate']:.1%}"
        out.append(f"{r['name']:30s} {r['kernel']:20s} {rate:>12s} {r['macs']:>14,} "
                   f"{r['sops']:>12,} {r['neuron_updates']:>12,}"
                   + (f" {r['predicted_instructions']:>13,}" if predicted else ""))
    out.append("-" * len(head))
    out.append(f"{'total':30s} {'':20s} {'':>12s} {w['macs']:>14,} {w['sops']:>12,} "
               f"{w['neuron_updates']:>12,}"
               + (f" {w['predicted_instructions']:>13,}" if predicted else ""))
    out.append(f"floor (SOPs + neuron updates): {w['floor']:,}")
    if predicted:
        out.append(f"predicted: {w['predicted_instructions']:,} instructions per inference "
                   f"(kernel costs {w['costs']})")
    else:
        out.append(f"no predicted instructions: {w['prediction_unavailable']}")
    if m is not None:
        ipi = m["instructions_per_inference"]
        out.append(f"measured: {ipi:,} {m['counter'] or 'instructions'} per inference on "
                   f"{m['target']} ({ipi / w['floor']:.1f}x the floor, "
                   f"{ipi / w['macs']:.2f} per dense MAC"
                   + (f"; predicted {(w['predicted_instructions'] - ipi) / ipi:+.1%}"
                      if predicted else "") + f"; {m['from']})")
    return out
