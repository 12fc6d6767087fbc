#!/usr/bin/env python3
"""Event-driven vs dense kernels on the same deployed model, and host latency (issue 13).

    .venv/bin/python benchmarks/kernel_speed.py --weights out/stm32h7/pruned_model.pt

In one run, on the same test images:

* per board (default stm32h7 on QEMU mps2-an500, Cortex-M7, and stm32f405 on
  netduinoplus2, Cortex-M4): the model generated with the event-driven kernels and with
  `--kernels dense`, built with the same flags, run on the emulator under `-icount`:
  instructions per inference in total and per step (the firmware's PROFILE);
* the work the model does on those images (`svt-deploy analyze`'s counts): dense MACs,
  SOPs, neuron updates, and the ratio of measured instructions to SOPs + neuron updates;
* host latency at batch 1, one thread: our C (gcc -O2, event-driven kernels), PyTorch
  eager, LiteRT fp32 and LiteRT int8 (TFLite's own int8 of the same model).

Writes docs/kernel_speed.json (--json-out) and prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="out/stm32h7/pruned_model.pt")
    p.add_argument("--boards", nargs="+", default=["stm32h7", "stm32f405"])
    p.add_argument("--device-samples", type=int, default=10,
                   help="test images run on each emulated build (default 10)")
    p.add_argument("--latency-samples", type=int, default=500)
    p.add_argument("--json-out", default=str(REPO / "docs" / "kernel_speed.json"))
    p.add_argument("--no-litert", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np
    import torch

    from svt_deploy.analysis import analyze
    from svt_deploy.boards import load_board
    from svt_deploy.data import load_dataset
    from svt_deploy.hostemu import build_host
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model
    from svt_deploy.pipeline.generation import generate_project, generate_sources
    from svt_deploy.profiling import profile_on_qemu
    from svt_deploy.quant.reference import c_images

    sys.path.insert(0, str(REPO / "benchmarks"))
    from tflite_compare import c_latency, torch_latency

    torch.set_num_threads(1)
    t0 = time.time()
    loaded = load_model(weights=args.weights)
    ds = load_dataset()
    x, _ = ds.split("test", max(args.device_samples, args.latency_samples))
    images = ds.as_tensor(x)
    c_in = c_images(loaded, images)
    result = {"weights": args.weights, "precision": loaded.precision, "boards": {},
              "device_samples": args.device_samples}

    work = analyze(loaded, load_board(args.boards[0]), images[:args.device_samples], None)
    w = work["work"]
    result["work"] = {k: w[k] for k in ("macs", "sops", "neuron_updates", "floor")}
    floor = w["floor"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.boards:
            board = load_board(name)
            rows = {}
            for style in ("event", "dense"):
                project = Path(tmp) / f"{name}-{style}"
                generate_project(loaded, ds.input_shape, board, project, style)
                print(f"{name} {style}: QEMU {board.emulator.machine}, "
                      f"{args.device_samples} images", file=sys.stderr)
                prof = profile_on_qemu(project, board, c_in[:args.device_samples])
                rows[style] = prof.as_dict()
            rows["event_vs_dense"] = (rows["dense"]["instructions_per_inference"]
                                      / rows["event"]["instructions_per_inference"])
            rows["event_vs_floor"] = rows["event"]["instructions_per_inference"] / floor
            result["boards"][name] = {"machine": board.emulator.machine, "core": board.core,
                                      **rows}

        print("host C and PyTorch latency", file=sys.stderr)
        n = args.latency_samples
        _, _, gen = generate_sources(loaded, ds.input_shape, Path(tmp) / "host")
        binary = build_host(gen.directory)
        ir = extract_ir(loaded.model, ds.input_shape)
        lat = {"host C (event-driven, gcc -O2)": c_latency(binary, c_in[:n], ir.num_classes),
               "PyTorch eager": torch_latency(loaded.model, ds, x[:n], 1)}
        if not args.no_litert:
            from svt_deploy import tflite_export as te
            te.require_tensorflow(1)
            conv, _ = te.export(ir, ds, Path(tmp) / "tflite", threads=1)
            nhwc = te.to_nhwc(images[:n].numpy())
            lat["LiteRT fp32"] = te.LiteRTModel(conv.fp32, 1).latency(nhwc)
            if conv.int8 is not None:
                lat["LiteRT int8"] = te.LiteRTModel(conv.int8, 1).latency(nhwc)
        result["host_latency_ms"] = {k: round(v * 1e3, 3) for k, v in lat.items()}
        result["host_latency_samples"] = n
    result["seconds"] = round(time.time() - t0, 1)
    result["date"] = time.strftime("%Y-%m-%d")
    Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")

    print(f"\nModel {args.weights} ({loaded.precision}); work on {args.device_samples} test "
          f"images: dense MACs {w['macs']:,.0f}, SOPs {w['sops']:,.0f}, neuron updates "
          f"{w['neuron_updates']:,.0f}, floor {floor:,.0f}\n")
    print("| board (emulator) | event-driven instr./inference | dense instr./inference | "
          "dense / event | event / (SOPs + updates) |")
    print("|---|---:|---:|---:|---:|")
    for name, b in result["boards"].items():
        print(f"| {name} ({b['machine']}, {b['core']}) | "
              f"{b['event']['instructions_per_inference']:,.0f} | "
              f"{b['dense']['instructions_per_inference']:,.0f} | {b['event_vs_dense']:.2f}x | "
              f"{b['event_vs_floor']:.2f}x |")
    print(f"\nHost latency, batch 1, 1 thread, {result['host_latency_samples']} test images\n")
    print("| runtime | ms / image |")
    print("|---|---:|")
    for k, v in result["host_latency_ms"].items():
        print(f"| {k} | {v:.3f} |")
    first = next(iter(result["boards"]))
    print(f"\nPer step on {first} (event-driven vs dense, instructions per inference)\n")
    print("| step | kernel | event-driven | dense |")
    print("|---|---|---:|---:|")
    b = result["boards"][first]
    for e, d in zip(b["event"]["steps"], b["dense"]["steps"]):
        print(f"| {e['name']} | {e['kernel']} | {e['instructions']:,.0f} | "
              f"{d['instructions']:,.0f} |")
    print(f"\n{result['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
