"""CLI command that measures a board's kernel costs for the latency budget.

    svt-deploy calibrate --board stm32h7 [--weights W] [--samples 20] [--variants 3]

It writes ``boards/costs/BOARD.toml`` (the committed costs users predict with); rerun it
whenever the C kernels change, which the latency budget detects and asks for.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from . import cli_args as num
from .boards import costs_path, load_board
from .calibration import VARIANT_RATES, calibrate, format_calibration, write_costs
from .cli_args import (
    ArgParser,
    Commands,
    add_common,
    add_kernel_args,
    add_model_args,
    model_inputs,
)
from .pipeline import load_inputs
from .pipeline.common import stderr_log
from .quant.packing import PRECISIONS
from .resources import BOARDS_DIR

COMMANDS = Commands()

variant_count = num._number(int, 1, 1 + len(VARIANT_RATES))


@COMMANDS.register("calibrate", "measure a board's kernel costs on its emulator "
                                "(for --max-latency-ms)")
def cmd_calibrate(argv):
    p = ArgParser(prog="svt-deploy calibrate",
                  description="Run the model and pruned variants of it on the board's "
                              "emulator, fit each kernel's instructions per step to the "
                              "step's work (SOPs, neuron updates, ...) and write the costs "
                              "beside the board profiles, where --max-latency-ms reads them.")
    p.add_argument("--board", required=True)
    p.add_argument("--samples", type=num.count, default=20, metavar="N",
                   help="validation images run on each variant (default 20)")
    p.add_argument("--variants", type=variant_count, default=1 + len(VARIANT_RATES),
                   metavar="N", help="the model and N-1 pruned variants of it (default "
                                     f"{1 + len(VARIANT_RATES)}; 1: the model alone)")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["int8"],
                   help="weight precisions to calibrate (default int8)")
    p.add_argument("--out", metavar="FILE",
                   help="costs file to write (default costs/BOARD.toml in the board directory)")
    p.add_argument("--json", action="store_true", help="print the costs as JSON")
    add_kernel_args(p)
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    board = load_board(args.board)
    loaded, ds = load_inputs(model_inputs(args))
    log = stderr_log(args.quiet)
    log(f"calibrating {board.name} on QEMU: {args.variants} variants x {args.samples} images, "
        f"{', '.join(args.precision)}, {args.kernels} kernels")
    result = calibrate(loaded, ds, board, args.samples, args.variants,
                       tuple(dict.fromkeys(args.precision)), args.kernels, log)
    written = write_costs(result.costs, args.out or costs_path(board.name, BOARDS_DIR))
    if args.json:
        print(json.dumps(dict(asdict(written), path=str(written.path)), indent=2))
    else:
        print(format_calibration(result))
        print(f"wrote {written.path}")
    return 0
