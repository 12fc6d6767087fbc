"""CLI command for the TFLite export and the TensorFlow Lite Micro comparison.

    svt-deploy export-tflite --weights out/stm32h7/pruned_model.pt --out out/tflite

TensorFlow, LiteRT and tflite-micro are optional (``pip install .[tflite]``) and are
imported only when this command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import cli_args as num
from .cli import add_common, add_model_args, command, load_inputs, progress_bar
from .cli_args import ArgParser
from .tflite_export import REPRESENTATIVE_SAMPLES  # light: TF is imported on use


def _fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B"


def format_checks(checks: list[dict], reference: dict) -> str:
    lines = [(f"{'runtime':14s} {'images':>7s} {'accuracy':>9s} {'agreement':>10s} "
              f"{'max|diff|':>10s} {'TFLM arena':>13s}"),
             (f"{'PyTorch':14s} {reference['samples']:7d} {reference['accuracy']:9.4f} "
              f"{'-':>10s} {'-':>10s} {'-':>13s}")]
    for c in checks:
        lines.append(f"{c['runtime']:14s} {c['samples']:7d} {c['accuracy']:9.4f} "
                     f"{c['agreement']:10.4f} {c['max_abs_score_diff']:10.3g} "
                     f"{_fmt_bytes(c.get('arena_bytes')):>13s}")
    return "\n".join(lines)


def run_checks(loaded, ds, ir, out_dir: Path, conv, samples, tflm_samples, threads, quiet,
               log) -> tuple[dict, list[dict]]:
    """LiteRT on ``samples`` and TFLM on ``tflm_samples`` test images, against PyTorch."""

    from .evaluate import predict
    from .tflite_export import FP32_FILE, INT8_FILE, check_litert, check_tflm, to_nhwc

    x, y = ds.split("test", samples)
    with progress_bar(len(y), "pytorch", quiet) as bar:
        ref = predict(loaded.model, ds, x, progress=bar.update)
    images = to_nhwc(ds.as_tensor(x).numpy())
    reference = {"samples": len(y), "accuracy": float((ref.argmax(1) == y).mean())}
    variants = [("fp32", conv.fp32, FP32_FILE)]
    if conv.int8 is not None:
        variants.append(("int8", conv.int8, INT8_FILE))
    checks = []
    for name, model, _ in variants:
        with progress_bar(len(y), f"LiteRT {name}", quiet) as bar:
            checks.append(check_litert(f"LiteRT {name}", model, images, y, ref, threads,
                                       progress=bar.update))
    n = min(tflm_samples, len(y))
    if n > 0:
        for name, _, file in variants:
            log(f"TFLM {name}: searching the smallest arena (one process per probe)")
            checks.append(check_tflm(f"TFLM {name}", out_dir / file, images[:n], y[:n],
                                     ref[:n], log=log))
    return reference, [c.as_dict() for c in checks]


@command("export-tflite", "TFLite export (fp32 + int8) checked with LiteRT and TFLM")
def cmd_export_tflite(argv):
    p = ArgParser(
        prog="svt-deploy export-tflite",
        description="Build the network in TensorFlow from the IR (BN folded, T timesteps "
                    "unrolled, builtin ops only), convert it to float32 and int8 .tflite "
                    "(int8 calibrated on training images), then check both with LiteRT "
                    "(accuracy, agreement with PyTorch) and TensorFlow Lite Micro (smallest "
                    "arena, accuracy). Needs: pip install .[tflite]")
    p.add_argument("--out", required=True, help="output directory for the .tflite files")
    p.add_argument("--representative", type=num.count0, default=REPRESENTATIVE_SAMPLES,
                   metavar="N",
                   help="training images for the int8 calibration (default "
                        f"{REPRESENTATIVE_SAMPLES}; 0: fp32 only)")
    p.add_argument("--samples", type=num.count, default=1000, metavar="N",
                   help="test images for the LiteRT check (default 1000)")
    p.add_argument("--tflm-samples", type=num.count0, default=200, metavar="N",
                   help="test images run through TFLM (default 200; 0: skip TFLM)")
    p.add_argument("--no-check", action="store_true", help="only export, run nothing")
    p.add_argument("--threads", type=num.count, default=1,
                   help="CPU threads for TensorFlow and LiteRT (default 1)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    from .tflite_export import META_FILE, _require, export, require_tensorflow

    require_tensorflow(args.threads)  # fail fast, with the install hint, before any work
    if not args.no_check:
        _require("ai_edge_litert.interpreter", "ai-edge-litert (LiteRT)")
        if args.tflm_samples:
            _require("tflite_micro", "tflite-micro")
    import torch

    from .ir import extract_ir

    torch.set_num_threads(args.threads)
    log = (lambda *a: None) if args.quiet or args.json else (
        lambda msg: print(msg, file=sys.stderr))
    loaded, ds = load_inputs(args)
    ir = extract_ir(loaded.model, ds.input_shape)
    out_dir = Path(args.out)
    log(f"converting ({ir.params:,} parameters, T={ir.timesteps})")
    conv, meta = export(ir, ds, out_dir, args.representative, args.threads, log)
    if not args.no_check:
        reference, checks = run_checks(loaded, ds, ir, out_dir, conv, args.samples,
                                       args.tflm_samples, args.threads,
                                       args.quiet or args.json, log)
        meta["checks"] = {"pytorch": reference, "runtimes": checks}
        (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    if args.json:
        print(json.dumps(meta))
        return 0
    sizes = ", ".join(f"{name} {n:,} B" for name, n in meta["bytes"].items())
    print(f"wrote {out_dir}: {sizes}; int8: {meta['int8_mode']} "
          f"(calibrated on {meta['representative']['images']} training images)")
    if "checks" in meta:
        print(format_checks(meta["checks"]["runtimes"], meta["checks"]["pytorch"]))
    return 0
