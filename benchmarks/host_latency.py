#!/usr/bin/env python3
"""Host C vs PyTorch eager: per-image latency at batch 1 on one thread, and spike rates.

    python benchmarks/host_latency.py [--weights W.pt] [--samples 500]

Both run single-threaded on the same images in one invocation (PyTorch with
torch.set_num_threads(1), the C harness as one process). Spike rate per LIF layer is the
fraction of (neuron, timestep) pairs that fire, measured with the IR interpreter.
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from svt_deploy.codegen import generate  # noqa: E402
from svt_deploy.data import load_dataset  # noqa: E402
from svt_deploy.forward import run_model  # noqa: E402
from svt_deploy.hostemu import build_host, run_host  # noqa: E402
from svt_deploy.ir import extract_ir, run_ir  # noqa: E402
from svt_deploy.loading import load_model  # noqa: E402
from svt_deploy.memory import plan_memory  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", action="append", default=None,
                   help="checkpoint(s) to measure (default: the reference model)")
    p.add_argument("--model-def", default=None)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--data", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.data)
    x, _ = ds.split("test", args.samples)
    images = ds.as_tensor(x)
    rows, rates = [], {}
    for weights in args.weights or [None]:
        loaded = load_model(args.model_def, weights)
        name = Path(weights).name if weights else "reference_svit.pt"
        ir = extract_ir(loaded.model, ds.input_shape)
        plan = plan_memory(ir)
        with tempfile.TemporaryDirectory() as tmp:
            generate(ir, plan, Path(tmp) / "gen", source=name)
            binary = build_host(Path(tmp) / "gen")
            run_host(binary, images[:5].numpy(), ir.num_classes, workers=1)  # warm-up
            _, c_seconds = run_host(binary, images.numpy(), ir.num_classes, workers=1)
        loaded.model.eval()
        times = []
        with torch.no_grad():
            for i in range(5):
                run_model(loaded.model, images[i:i + 1])
            for i in range(len(images)):
                t = time.perf_counter()
                run_model(loaded.model, images[i:i + 1])
                times.append(time.perf_counter() - t)
        torch_ms = statistics.mean(times) * 1000
        c_ms = c_seconds / len(images) * 1000
        rows.append((name, plan.params, plan.weight_bytes, plan.arena_bytes, c_ms, torch_ms))
        _, vals = run_ir(ir, images[:200], collect=True)
        rates[name] = {n.name: float(vals[n.name].mean()) for n in ir.nodes if n.op == "lif"}
    print(f"{len(images)} test images, batch 1, 1 thread each, "
          f"{torch.__version__} eager vs gcc -O2\n")
    print("| model | params (folded) | weights | arena | host C ms/img | PyTorch ms/img | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, params, wb, ab, c_ms, t_ms in rows:
        print(f"| {name} | {params:,} | {wb:,} B | {ab:,} B | {c_ms:.2f} | {t_ms:.2f} | "
              f"{t_ms / c_ms:.1f}x |")
    names = list(rates)
    print("\nSpike rate per LIF layer (fraction of neuron-timesteps that fire, 200 images)\n")
    print("| layer | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    layers = list(dict.fromkeys(k for r in rates.values() for k in r))
    for layer in layers:
        cells = [f"{rates[n][layer]:.3f}" if layer in rates[n] else "-" for n in names]
        print(f"| {layer} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
