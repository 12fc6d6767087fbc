"""svt-deploy command line.

    svt-deploy --board stm32h7 --max-drop 3        # the whole pipeline (deploy)
    svt-deploy boards | analyze | evaluate | prune | generate | emulate | firmware | ...

The commands only parse their arguments into the pipeline's typed options, call the
pipeline (``svt_deploy.pipeline``) and print what it returns. Errors caused by input or
environment print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import shlex
import sys
import traceback
from pathlib import Path

from . import cli_args as num
from . import cli_calibrate, cli_device, cli_tflite
from .analysis import analyze, format_analysis
from .boards import all_boards, fmt_bytes, load_board
from .cli_args import (ArgParser, Commands, add_budget_args, add_common, add_kernel_args,
                       add_model_args, model_inputs, prune_options)
from .errors import SvtError
from .pipeline import DeployOptions, deploy, load_inputs
from .pipeline.common import silent, stderr_log
from .pipeline.evaluation import evaluate_model
from .pipeline.generation import generate_checked
from .pipeline.host_check import host_emulation
from .pipeline.on_device import DeviceTarget
from .pipeline.pruning import run_prune
from .prune import format_table
from .report import format_summary
from .runtime import current

COMMANDS = Commands()


# ----------------------------------------------------------------------------- boards

@COMMANDS.register("boards", "list the board profiles and their memory limits")
def cmd_boards(argv):
    p = ArgParser(prog="svt-deploy boards", description="List board profiles.")
    add_common(p)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    boards = all_boards()
    if args.json:
        print(json.dumps([{"name": b.name, "mcu": b.mcu, "core": b.core, "fpu": b.fpu,
                           "clock_hz": b.clock_hz, "flash_bytes": b.flash_bytes,
                           "sram": {r.name: r.size for r in b.sram},
                           "emulator": b.emulator.machine if b.emulator else None}
                          for b in boards], indent=2))
        return 0
    print(f"{'board':14s} {'mcu':12s} {'core / fpu':24s} {'clock':>8s} {'flash':>7s}  "
          f"{'SRAM regions':44s} emulator")
    for b in boards:
        core = f"{b.core} / {b.fpu}"
        clock = f"{b.clock_hz // 1_000_000} MHz" if b.clock_hz else "-"
        sram = ", ".join(f"{r.name} {fmt_bytes(r.size)}" for r in b.sram) or "-"
        print(f"{b.name:14s} {b.mcu:12s} {core:24s} {clock:>8s} {fmt_bytes(b.flash_bytes or None):>7s}"
              f"  {sram:44s} {b.emulator.machine if b.emulator else '-'}")
    return 0


# ----------------------------------------------------------------------------- analyze

@COMMANDS.register("analyze", "per-layer flash and SRAM of a model against a board's limits")
def cmd_analyze(argv):
    p = ArgParser(prog="svt-deploy analyze",
                  description="Flash (weights packed at their precision, BN folded) and peak SRAM "
                              "(layer-major schedule) per layer, against a board.")
    p.add_argument("--board", required=True)
    p.add_argument("--work-samples", type=num.count0, default=100, metavar="N",
                   help="validation images whose spikes the work per inference (dense MACs, "
                        "synaptic operations, neuron updates) is counted on (default 100; "
                        "0: memory only)")
    p.add_argument("--measured", metavar="DIR",
                   help="output directory of a deploy of this model: show the instructions "
                        "per inference its device check measured beside the work")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    board = load_board(args.board)
    want_work = args.work_samples > 0
    loaded, ds = load_inputs(model_inputs(args), need_data=want_work or args.data is not None)
    images = ds.as_tensor(ds.split("val", args.work_samples)[0]) if want_work else None
    result = analyze(loaded, board, images, args.measured)
    print(json.dumps(result, indent=2) if args.json else format_analysis(result))
    return 0


# ----------------------------------------------------------------------------- evaluate

@COMMANDS.register("evaluate", "top-1 test accuracy of a model")
def cmd_evaluate(argv):
    p = ArgParser(prog="svt-deploy evaluate",
                  description="Top-1 accuracy on the test split.")
    add_model_args(p)
    add_common(p)
    p.add_argument("--samples", "--test-samples", dest="samples", type=num.count, default=None,
                   help="first N test images (default: all; --test-samples as in prune)")
    p.add_argument("--json", action="store_true",
                   help='print {"accuracy": ..., "samples": ..., "params": ...}')
    args = p.parse_args(argv)
    loaded, ds = load_inputs(model_inputs(args))
    e = evaluate_model(loaded, ds, args.samples, args.quiet or args.json)
    if args.json:
        print(json.dumps({"accuracy": round(e.accuracy, 6), "samples": e.samples,
                          "params": e.params, "structure": e.structure}))
    else:
        print(f"accuracy {e.accuracy:.4f} on {e.samples} test images ({e.params:,} parameters)")
        print(f"structure: {e.structure}")
    return 0


# ----------------------------------------------------------------------------- prune

@COMMANDS.register("prune", "PrimeSVT pruning to a board's budget within an accuracy drop")
def cmd_prune(argv):
    p = ArgParser(prog="svt-deploy prune",
                  description="Prioritized memory-aware structured pruning "
                              "(PrimeSVT) to a flash/SRAM budget.")
    add_budget_args(p)
    add_model_args(p)
    add_common(p)
    p.add_argument("--out", default=None, help="output directory (default out/prune-<board>)")
    args = p.parse_args(argv)
    options = prune_options(args)
    loaded, ds = load_inputs(model_inputs(args))
    out_dir = args.out or f"out/prune-{args.board or 'custom'}"
    main_rank = current().is_main  # under torchrun, rank 0 speaks for all
    log = stderr_log(args.quiet) if main_rank else silent
    outcome = run_prune(loaded, ds, options, out_dir, log, args.quiet)
    if main_rank:
        print(format_table(outcome.result, outcome.budget, outcome.groups, outcome.test))
        print(f"wrote {out_dir}/pruned_model.pt and {out_dir}/prune_plan.json")
    return 0


# ----------------------------------------------------------------------------- generate

@COMMANDS.register("generate", "emit C sources (weights, kernels, model) for a model")
def cmd_generate(argv):
    p = ArgParser(prog="svt-deploy generate",
                  description="Generate dense C weight arrays (BN folded), the "
                              "spiking kernels and svt_model_run().")
    p.add_argument("--board", default="host", help="board whose limits are checked (default host)")
    p.add_argument("--out", required=True, help="output directory for the C sources")
    add_kernel_args(p)
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    board = load_board(args.board)
    loaded, _ = load_inputs(model_inputs(args), need_data=args.data is not None)
    checked = generate_checked(loaded, board, args.out, args.kernels)
    gen, fit = checked.generated, checked.fit
    print(f"wrote {len(gen.files)} files to {args.out}: weights {gen.weight_bytes:,} B, "
          f"arena {gen.arena_bytes:,} B, model hash {gen.model_hash}")
    if not fit.fits:
        print(f"warning: does not fit {board.name}: weights over by {fit.flash_over:,} B, "
              f"arena over by {fit.sram_over:,} B (prune first: svt-deploy prune --board "
              f"{board.name})", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- emulate

@COMMANDS.register("emulate", "build the generated C on the host and compare it with PyTorch")
def cmd_emulate(argv):
    p = ArgParser(prog="svt-deploy emulate",
                  description="Host emulation: gcc build of the generated C run "
                              "over test images, compared image by image with "
                              "the PyTorch model.")
    p.add_argument("--samples", type=num.count, default=None,
                   help="first N test images (default all)")
    p.add_argument("--out", default="out/emulate", help="directory for the sources and binary")
    p.add_argument("--sanitize", action="store_true",
                   help="build with -fsanitize=address,undefined (slower)")
    p.add_argument("--json", action="store_true")
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    loaded, ds = load_inputs(model_inputs(args))
    emu = host_emulation(loaded, ds, args.out, args.samples, args.quiet, args.sanitize)
    result, seconds, gen = emu.comparison, emu.seconds, emu.generated
    if args.json:
        print(json.dumps(dict(result.as_dict(), seconds=round(seconds, 2),
                              weight_bytes=gen.weight_bytes, arena_bytes=gen.arena_bytes)))
    else:
        print(f"host C accuracy {result.accuracy:.4f}, PyTorch {result.reference_accuracy:.4f}, "
              f"agreement {result.agreement:.4f} on {result.samples} test images "
              f"({seconds:.1f} s; max |score diff| {result.max_abs_score_diff:.2g})")
    return 0


# ----------------------------------------------------------------------------- device, TFLite

COMMANDS.update(cli_device.COMMANDS)  # firmware, run-qemu, flash, validate
COMMANDS.update(cli_tflite.COMMANDS)  # export-tflite
COMMANDS.update(cli_calibrate.COMMANDS)  # calibrate (kernel costs for --max-latency-ms)


# ----------------------------------------------------------------------------- deploy

@COMMANDS.register("deploy", "the whole pipeline (also: svt-deploy --board B --max-drop D)")
def cmd_deploy(argv):
    p = ArgParser(
        prog="svt-deploy",
        description="Prune a spiking ViT to fit a board within an accuracy drop, generate "
                    "C, check it on the host, build the firmware and validate it on the "
                    "emulated board (or a real one with --port).")
    add_budget_args(p)
    add_model_args(p)
    add_common(p)
    p.add_argument("--out", help="output directory (default out/<board>)")
    p.add_argument("--host-samples", type=num.count, default=10000, metavar="N",
                   help="test images for the host emulation check (default 10000)")
    p.add_argument("--device-samples", type=num.count, default=500, metavar="N",
                   help="test images streamed to the device (default 500)")
    p.add_argument("--port", help="serial port of a real board (e.g. /dev/ttyACM0): flash it "
                                  "and validate there instead of on the emulator")
    p.add_argument("--flash-tool", choices=("openocd", "st-flash", "pyocd"),
                   help="flash tool for --port (default: the first one installed)")
    p.add_argument("--no-device", action="store_true", help="skip the on-device check")
    add_kernel_args(p)
    args = p.parse_args(argv)
    if not args.board:
        raise SvtError("--board is required (svt-deploy boards lists them)")
    options = DeployOptions(
        board=args.board, prune=prune_options(args), inputs=model_inputs(args), out=args.out,
        host_samples=args.host_samples,
        device=DeviceTarget(args.device_samples, args.port, args.flash_tool),
        no_device=args.no_device, kernels=args.kernels, quiet=args.quiet,
        command="svt-deploy " + " ".join(shlex.quote(a) for a in argv))
    result = deploy(options)
    if not args.quiet:
        print(format_summary(result.report, Path(args.out or f"out/{args.board}")))
    return 0


# ----------------------------------------------------------------------------- main

def _usage() -> str:
    lines = ["usage: svt-deploy --board BOARD --max-drop PTS [options]   (full pipeline)",
             "       svt-deploy COMMAND [options]", "", "commands:"]
    lines += [f"  {name:14s} {text}" for name, (_, text) in COMMANDS.items()]
    lines.append("\n'svt-deploy COMMAND --help' for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if hasattr(sys.stdout, "reconfigure"):  # progress lines reach a log or a pipe as they happen
        sys.stdout.reconfigure(line_buffering=True)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name = argv[0]
    if name in COMMANDS:
        fn, argv = COMMANDS[name][0], argv[1:]
    elif name.startswith("-"):
        fn = COMMANDS["deploy"][0]
    else:
        print(f"svt-deploy: error: unknown command {name!r}; commands: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return fn(argv) or 0
    except SvtError as e:
        if debug:
            traceback.print_exc()
        print(f"svt-deploy: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("svt-deploy: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
