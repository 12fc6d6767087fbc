"""`svt-deploy analyze`: the memory model's table for one model on one board."""

from __future__ import annotations

from .boards import Board, fmt_bytes
from .errors import SvtError
from .ir import extract_ir
from .loading import LoadedModel
from .memory import check_fit, plan_memory, time_major_state_bytes


def analyze(loaded: LoadedModel, board: Board) -> dict:
    if loaded.input_shape is None:
        raise SvtError("the model's input shape is unknown; pass --data so it can be traced")
    ir = extract_ir(loaded.model, loaded.input_shape)
    plan = plan_memory(ir)
    fit = check_fit(plan, board)
    region = board.largest_sram
    layers = [{"name": s.name, "kernel": s.kernel,
               "output": f"{s.channels}x{s.height}x{s.width}", "params": s.params,
               "weight_bytes": s.weight_bytes, "activation_bytes": s.out_bytes,
               "scratch_bytes": s.scratch_bytes, "in_place": s.in_place}
              for s in plan.steps]
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
    }


def format_analysis(a: dict) -> str:
    out = [f"model  {a['model']}: {a['params_model']:,} parameters "
           f"({a['params_folded']:,} with BatchNorm folded), T={a['timesteps']}, input "
           f"{'x'.join(map(str, a['input_shape']))}",
           f"board  {a['board']} ({a['mcu']})", ""]
    head = (f"{'layer':30s} {'kernel':20s} {'output':>11s} {'params':>9s} {'flash (B)':>11s} "
            f"{'activations (B)':>16s} {'scratch (B)':>12s}")
    out += [head, "-" * len(head)]
    for r in a["layers"]:
        act = f"{r['activation_bytes']:,}" + (" (in place)" if r["in_place"] else "")
        out.append(f"{r['name']:30s} {r['kernel']:20s} {r['output']:>11s} {r['params']:>9,} "
                   f"{r['weight_bytes']:>11,} {act:>16s} {r['scratch_bytes']:>12,}")
    out.append("-" * len(head))
    f, s = a["flash"], a["sram"]
    out.append(f"{'total':30s} {'':20s} {'':>11s} {a['params_folded']:>9,} {f['weights']:>11,} "
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
    return "\n".join(out)
