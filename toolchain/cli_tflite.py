"""CLI command for the TFLite export and the TensorFlow Lite Micro comparison.

    svt-deploy export-tflite --weights out/stm32h7/pruned_model.pt --out out/tflite

TensorFlow, LiteRT and tflite-micro are optional (``pip install .[tflite]``) and are
imported only when this command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import cli_args as num
from .cli_args import ArgParser, Commands, add_common, add_model_args, model_inputs
from .pipeline.common import silent, stderr_log
from .pipeline.tflite import TfliteOptions, export_tflite
from .tflite_export import REPRESENTATIVE_SAMPLES  # light: TF is imported on use

COMMANDS = Commands()


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


@COMMANDS.register("export-tflite", "TFLite export (fp32 + int8) checked with LiteRT and TFLM")
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
    quiet = args.quiet or args.json
    options = TfliteOptions(out=Path(args.out), representative=args.representative,
                            samples=args.samples, tflm_samples=args.tflm_samples,
                            check=not args.no_check, threads=args.threads)
    meta = export_tflite(model_inputs(args), options, quiet, silent if quiet else stderr_log())
    if args.json:
        print(json.dumps(meta))
        return 0
    out_dir = options.out
    sizes = ", ".join(f"{name} {n:,} B" for name, n in meta["bytes"].items())
    print(f"wrote {out_dir}: {sizes}; int8: {meta['int8_mode']} "
          f"(calibrated on {meta['representative']['images']} training images)")
    if "checks" in meta:
        print(format_checks(meta["checks"]["runtimes"], meta["checks"]["pytorch"]))
    return 0
