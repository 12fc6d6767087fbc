#!/usr/bin/env python
"""Side by side on one (pruned) model: svt-deploy's C against TFLite / TensorFlow Lite Micro.

    .venv/bin/python benchmarks/tflite_compare.py --weights out/stm32h7/pruned_model.pt

Measures, on the same model and the same test images:

* flash: svt-deploy's fp32 weight bytes (``plan_memory``) vs the .tflite flatbuffer
  (fp32 and int8; weights plus graph, which is what TFLM keeps in flash);
* RAM: svt-deploy's static arena vs the smallest TFLM tensor arena that runs the model
  (binary search, one process per probe);
* accuracy / agreement with PyTorch: PyTorch, our C built on the host (gcc -O2), LiteRT
  fp32, LiteRT int8, TFLM fp32, TFLM int8;
* latency per image at batch 1, one thread for every runtime (``--threads``).

Writes ``OUT/tflite_compare.json`` and replaces the section "## TFLite / TFLM side by
side" of docs/benchmarks.md (``--no-docs`` to leave it alone). The int8 model is
calibrated on training images only. Needs ``pip install .[tflite]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_WEIGHTS = "out/stm32h7/pruned_model.pt"
SECTION = "## TFLite / TFLM side by side"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=DEFAULT_WEIGHTS,
                   help=f"model checkpoint (default {DEFAULT_WEIGHTS}, the pruned model of "
                        "svt-deploy --board stm32h7)")
    p.add_argument("--model-def", help="FILE.py:FACTORY for a third-party model")
    p.add_argument("--data", help="dataset (default: Fashion-MNIST)")
    p.add_argument("--normalize", nargs=2, type=float, metavar=("MEAN", "STD"))
    p.add_argument("--samples", type=int, default=2000,
                   help="test images for PyTorch / C / LiteRT accuracy (default 2000; "
                        "10000 = the whole Fashion-MNIST test split)")
    p.add_argument("--tflm-samples", type=int, default=300,
                   help="test images run through TFLM (slow reference kernels; default 300)")
    p.add_argument("--latency-samples", type=int, default=200,
                   help="images timed per runtime at batch 1 (default 200)")
    p.add_argument("--representative", type=int, default=1000,
                   help="training images for the int8 calibration (default 1000, the first "
                        "of the training split)")
    p.add_argument("--flip-samples", type=int, default=20,
                   help="images for the int8-vs-fp32 spike comparison (default 20)")
    p.add_argument("--calibration-sets", type=int, default=0, metavar="K",
                   help="also measure the int8 validation accuracy for K disjoint "
                        "calibration sets (default 0: skip; each costs one conversion)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for every runtime (default 1; TFLM is single-threaded)")
    p.add_argument("--out", default="out/tflite_compare",
                   help="directory for the .tflite files, the C build and the JSON")
    p.add_argument("--docs", default=str(REPO / "docs" / "benchmarks.md"),
                   help="markdown file whose TFLite section is replaced")
    p.add_argument("--no-docs", action="store_true", help="do not touch the docs")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def torch_latency(model, ds, images, threads: int) -> float:
    import torch

    from svt_deploy.forward import run_model

    torch.set_num_threads(threads)
    x = ds.as_tensor(images)
    with torch.no_grad():
        run_model(model, x[:1])  # warm-up
        start = time.perf_counter()
        for i in range(len(x)):
            run_model(model, x[i:i + 1])
    return (time.perf_counter() - start) / len(x)


def c_latency(binary, images, classes: int, repeat: int = 3) -> float:
    """Seconds per image of the host build, one process, minus its start-up (timed on an
    empty input); best of ``repeat``."""
    from svt_deploy.hostemu import run_host

    best = float("inf")
    for _ in range(repeat):
        _, empty = run_host(binary, images[:0], classes, workers=1)
        _, full = run_host(binary, images, classes, workers=1)
        best = min(best, (full - empty) / len(images))
    return best


def int8_text(torch_acc: float, row: dict, flips: dict, spread: dict | None) -> str:
    drop = (torch_acc - row["accuracy"]) * 100
    steps = ", ".join(f"t={t} {pct(f)}" for t, f in enumerate(flips["by_timestep"]))
    text = (f"LiteRT int8 accuracy minus PyTorch's: {-drop:+.2f} pt on {row['samples']:,} test "
            f"images ({'within' if drop <= 2 else 'outside'} the 2 pt target), top-1 agreement "
            f"{pct(row['agreement'])}. Where it departs: spikes that differ from the fp32 "
            f"model, over all {flips['layers']} LIF layers, on {flips['images']} images: "
            f"{steps}. Each LIF step's membrane potential is a per-tensor int8 value, so "
            "neurons near the threshold flip, and the potential carries its rounding into "
            "the next step"
            + ("; the flips grow with t" if flips["by_timestep"][-1] > flips["by_timestep"][0]
               else "")
            + ". (16x8 quantisation, int16 activations, would be the remedy, but TF 2.21 "
            "cannot quantise GREATER_EQUAL/SELECT_V2 to 16x8.)")
    if spread:
        accs = [a * 100 for a in spread["val_accuracy"]]
        text += (f" Calibration sensitivity: {len(accs)} disjoint sets of "
                 f"{spread['images']:,} training images give int8 validation accuracy "
                 f"{min(accs):.2f}-{max(accs):.2f} % (PyTorch {spread['pytorch'] * 100:.2f} %, "
                 f"{spread['samples']:,} validation images).")
    return text


def calibration_spread(ir, ds, ref_model, args, log) -> dict:
    """int8 validation accuracy for several disjoint calibration sets of training images."""
    from svt_deploy import tflite_export as te
    from svt_deploy.evaluate import predict

    n = args.representative
    xt, _ = ds.split("train", n * args.calibration_sets)
    xv, yv = ds.split("val", args.samples)
    val = te.to_nhwc(ds.as_tensor(xv).numpy())
    accs = []
    for k in range(args.calibration_sets):
        log(f"calibration set {k + 1}/{args.calibration_sets}: training images "
            f"{k * n}-{(k + 1) * n - 1}")
        conv = te.convert(ir, te.to_nhwc(ds.as_tensor(xt[k * n:(k + 1) * n]).numpy()),
                          threads=args.threads)
        scores = te.LiteRTModel(conv.int8, args.threads).predict(val)
        accs.append(float((scores.argmax(1) == yv).mean()))
    ref = predict(ref_model, ds, xv)
    return {"images": n, "samples": len(yv), "val_accuracy": accs,
            "pytorch": float((ref.argmax(1) == yv).mean())}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "spikingjelly", "numpy", "tensorflow-cpu", "ai-edge-litert",
                "tflite-micro"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} KiB"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f} %"


def markdown(r: dict, command: str) -> str:
    m, rows, tfl = r["model"], r["rows"], r["tflite"]
    c = next(x for x in rows if x["runtime"].startswith("svt-deploy C"))
    tflm = {x["runtime"]: x for x in rows if x["runtime"].startswith("TFLM")}
    lines = [
        SECTION, "",
        (f"Model: `{m['weights']}` ({m['params']:,} parameters, T={m['timesteps']}, input "
         f"{'x'.join(map(str, m['input_shape']))}); data: {m['data']}. Measured "
         f"{r['date']} on {r['machine']['cpu']} ({r['machine']['cores']} cores), "
         f"{r['threads']} thread(s) for every runtime, batch 1."), "",
        ("| runtime | flash (model bytes) | RAM (arena) | test accuracy | agreement with "
         "PyTorch | images | latency / image |"),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['runtime']} | {kb(row.get('flash_bytes'))} | {kb(row.get('ram_bytes'))} "
            f"| {pct(row['accuracy'])} | {pct(row.get('agreement'))} "
            f"| {row['samples']:,} | {row['latency_ms']:.2f} ms |")
    flash = f"flatbuffer fp32 {tfl['bytes']['model_fp32.tflite']:,} B"
    if "model_int8.tflite" in tfl["bytes"]:
        flash += (f", int8 {tfl['bytes']['model_int8.tflite']:,} B ({tfl['int8_mode']}, "
                  f"calibrated on the first {tfl['representative']:,} training images)")
    arenas = ", ".join(f"{k.split()[1]} {v['ram_bytes']:,} B" for k, v in tflm.items())
    agree = ", ".join(f"{k} {pct(v)}" for k, v in r["tflm_vs_litert"].items())
    ops = ", ".join(f"{k} {v}" for k, v in tfl["ops"]["fp32"].items())
    lines += [
        "",
        (f"- Flash: our fp32 weights (BN folded) {c['flash_bytes']:,} B; {flash}. Neither "
         "counts code (our kernels; the TFLM interpreter and its op kernels)."),
        (f"- RAM: our static arena {c['ram_bytes']:,} B; the smallest TFLM tensor arena that "
         f"runs the model: {arenas} (binary search to 16 B, each probe in its own process). "
         "Stack not counted for either. TFLM holds every spike as a float32/int8 tensor "
         "element (we pack T spikes in one byte), keeps the unrolled per-step LIF tensors, "
         "and gives each BATCH_MATMUL a private scratch buffer."),
        (f"- TFLite graph (fp32): {sum(tfl['ops']['fp32'].values())} builtin ops ({ops})."),
        ("- Accuracy rows use the first N test images (column *images*); TFLM runs fewer "
         "because the Python-wrapped TFLM uses the portable reference kernels (slow on a "
         f"PC). TFLM top-1 agreement with LiteRT of the same precision: {agree}."),
        ("- Latency: host x86 numbers, not MCU timings. Our C: gcc -O2, one process, "
         "start-up subtracted. LiteRT: its default CPU kernels (XNNPACK). TFLM: reference "
         "kernels (no CMSIS-NN) behind the Python wrapper. PyTorch: eager, one image per "
         "call. Other load on the machine shows up in all of them."),
        f"- int8: {r['int8_note']}",
        "",
        "Command:", "", "```", command, "```", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".", "",
    ]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace (or append) our section; other sections stay as they are."""
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("" if end < 0 else "\n" + old[end + 1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new.rstrip("\n") + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch

    from svt_deploy import tflite_export as te
    from svt_deploy.codegen import generate
    from svt_deploy.data import load_dataset
    from svt_deploy.errors import SvtError
    from svt_deploy.evaluate import predict
    from svt_deploy.hostemu import build_host, run_host
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model
    from svt_deploy.memory import plan_memory

    torch.set_num_threads(args.threads)
    t_start = time.time()
    try:
        if not Path(args.weights).is_file():
            raise SvtError(f"{args.weights} does not exist; pass --weights (e.g. the pruned "
                           "model written by svt-deploy --board stm32h7)")
        te.require_tensorflow(args.threads)
        loaded = load_model(args.model_def, args.weights)
        ds = load_dataset(args.data, tuple(args.normalize) if args.normalize else None)
    except SvtError as e:
        print(f"tflite_compare: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    ir = extract_ir(loaded.model, ds.input_shape)
    plan = plan_memory(ir)

    log(f"model {args.weights}: {ir.params:,} parameters; converting to TFLite")
    conv, meta = te.export(ir, ds, out / "tflite", args.representative, args.threads, log)

    x, y = ds.split("test", args.samples)
    images_nchw = ds.as_tensor(x).numpy()
    images = te.to_nhwc(images_nchw)
    n_lat = min(args.latency_samples, len(y))

    log(f"PyTorch on {len(y)} test images")
    ref = predict(loaded.model, ds, x)
    rows = [{"runtime": "PyTorch fp32 (reference)", "samples": len(y),
             "accuracy": float((ref.argmax(1) == y).mean()), "agreement": 1.0,
             "latency_ms": 1e3 * torch_latency(loaded.model, ds, x[:n_lat], args.threads)}]

    log("our C: generate, gcc -O2, run")
    gen = generate(ir, plan, out / "c", source=str(args.weights))
    binary = build_host(gen.directory)
    c_scores, _ = run_host(binary, images_nchw, ir.num_classes)
    rows.append({"runtime": "svt-deploy C fp32 (host gcc -O2)", "samples": len(y),
                 "flash_bytes": plan.weight_bytes, "ram_bytes": plan.arena_bytes,
                 "accuracy": float((c_scores.argmax(1) == y).mean()),
                 "agreement": float((c_scores.argmax(1) == ref.argmax(1)).mean()),
                 "latency_ms": 1e3 * c_latency(binary, images_nchw[:n_lat], ir.num_classes)})

    variants = [("fp32", conv.fp32, te.FP32_FILE)]
    if conv.int8 is not None:
        variants.append(("int8", conv.int8, te.INT8_FILE))
    litert_scores = {}
    for name, model, _ in variants:
        log(f"LiteRT {name} on {len(y)} test images")
        rt = te.LiteRTModel(model, args.threads)
        scores = rt.predict(images)
        litert_scores[name] = scores
        rows.append({"runtime": f"LiteRT {name}", "samples": len(y),
                     "flash_bytes": len(model),
                     "accuracy": float((scores.argmax(1) == y).mean()),
                     "agreement": float((scores.argmax(1) == ref.argmax(1)).mean()),
                     "max_abs_score_diff": float(np.abs(scores - ref).max()),
                     "latency_ms": 1e3 * rt.latency(images[:n_lat])})

    n_tflm = min(args.tflm_samples, len(y))
    tflm_vs_litert = {}
    for name, model, file in variants:
        log(f"TFLM {name}: smallest arena, then {n_tflm} test images")
        arena = te.tflm_min_arena(out / "tflite" / file)
        scores, sec = te.tflm_predict(out / "tflite" / file, arena, images[:n_tflm])
        tflm_vs_litert[name] = float(
            (scores.argmax(1) == litert_scores[name][:n_tflm].argmax(1)).mean())
        rows.append({"runtime": f"TFLM {name}", "samples": n_tflm, "flash_bytes": len(model),
                     "ram_bytes": arena,
                     "accuracy": float((scores.argmax(1) == y[:n_tflm]).mean()),
                     "agreement": float((scores.argmax(1) == ref[:n_tflm].argmax(1)).mean()),
                     "max_abs_score_diff": float(np.abs(scores - ref[:n_tflm]).max()),
                     "latency_ms": 1e3 * sec})

    int8_note, flips, spread = f"no int8 model ({conv.int8_mode}).", None, None
    int8_row = next((r for r in rows if r["runtime"] == "LiteRT int8"), None)
    if int8_row is not None:
        log("int8 vs fp32 spikes, per timestep (LiteRT, all tensors kept)")
        flips = te.spike_flips(conv.fp32, conv.int8, images[:args.flip_samples])
        if args.calibration_sets:
            spread = calibration_spread(ir, ds, ref_model=loaded.model, args=args, log=log)
        int8_note = int8_text(rows[0]["accuracy"], int8_row, flips, spread)
    command = f"OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/tflite_compare.py {shlex.join(argv if argv is not None else sys.argv[1:])}"
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "threads": args.threads,
        "model": {"weights": str(args.weights), "model_def": args.model_def,
                  "params": ir.params, "timesteps": ir.timesteps,
                  "input_shape": list(ir.input_shape),
                  "data": ds.name + (f", normalize {args.normalize}" if args.normalize else "")},
        "ours": {"weight_bytes": plan.weight_bytes, "arena_bytes": plan.arena_bytes},
        "tflite": {"bytes": meta["bytes"], "int8_mode": meta["int8_mode"],
                   "representative": meta["representative"]["images"], "ops": meta["ops"]},
        "rows": rows, "tflm_vs_litert": tflm_vs_litert, "int8_note": int8_note,
        "int8_spike_flips": flips, "int8_calibration_spread": spread,
        "versions": versions(), "command": command,
        "seconds": round(time.time() - t_start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tflite_compare.json").write_text(json.dumps(result, indent=1))
    text = markdown(result, command)
    print(text)
    if not args.no_docs:
        write_section(Path(args.docs), text)
        log(f"updated {args.docs}")
    log(f"done in {result['seconds']:.0f} s; JSON in {out / 'tflite_compare.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
