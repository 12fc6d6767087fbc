"""CLI commands for the firmware stage: build, run on QEMU, flash, validate over serial.

    svt-deploy firmware --board stm32h7 --weights out/prune-stm32h7/pruned_model.pt
    svt-deploy run-qemu --board stm32f405 --weights W.pt --samples 20
    svt-deploy flash    --board stm32h7 --dir out/firmware-stm32h7
    svt-deploy validate --port /dev/ttyACM0 --board stm32h7 --weights W.pt --samples 100
"""

from __future__ import annotations

import json
from pathlib import Path

from . import cli_args as num
from .boards import load_board
from .cli_args import (ArgParser, Commands, add_common, add_kernel_args, add_model_args,
                       model_inputs)
from .device_check import format_check
from .firmware import format_build
from .flashing import flash
from .pipeline.common import stderr_log
from .pipeline.firmware_build import build_project
from .pipeline.on_device import PortLink, run_qemu, validate

COMMANDS = Commands()


def _out_dir(args, board) -> Path:
    return Path(args.out or f"out/firmware-{board.name}")


# ----------------------------------------------------------------------------- firmware

@COMMANDS.register("firmware", "generate and cross-build firmware for a board; check that it fits")
def cmd_firmware(argv):
    p = ArgParser(
        prog="svt-deploy firmware",
        description="Generate the model's C with start-up code, UART driver and serial "
                    "protocol for a board, build it with arm-none-eabi-gcc, and check flash "
                    "and SRAM per region with the linker. Refuses a model that does not fit.")
    p.add_argument("--board", required=True)
    p.add_argument("--out", help="project directory (default out/firmware-BOARD)")
    p.add_argument("--qemu", action="store_true",
                   help="also build the image for the board's QEMU machine")
    p.add_argument("--json", action="store_true", help="print the build summary as JSON")
    add_kernel_args(p)
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    board = load_board(args.board)
    project = build_project(board, model_inputs(args), _out_dir(args, board), args.qemu,
                            args.kernels)
    out, gen = project.directory, project.generated
    if args.json:
        print(json.dumps({"dir": str(out), "model_hash": gen.model_hash,
                          "builds": [b.as_dict() for b in project.builds]}, indent=2))
    else:
        for b in project.builds:
            print(format_build(b))
        print(f"project {out} (model {gen.model_hash}): `make -C {out} firmware` rebuilds it")
    return 0


# ----------------------------------------------------------------------------- run-qemu

@COMMANDS.register("run-qemu", "run the firmware on the board's QEMU machine and check its accuracy")
def cmd_run_qemu(argv):
    p = ArgParser(
        prog="svt-deploy run-qemu",
        description="Build the firmware for the board's emulator (stm32h7: mps2-an500, "
                    "stm32f405: netduinoplus2), stream test images to it over the serial "
                    "protocol, and compare with PyTorch and the host C build. Reports "
                    "instructions per inference (QEMU -icount).")
    p.add_argument("--board", required=True)
    p.add_argument("--samples", type=num.count, default=20, help="test images (default 20)")
    p.add_argument("--out", help="project directory (default out/firmware-BOARD)")
    p.add_argument("--corrupt", type=num.corrupt_rate, default=0.0, metavar="RATE",
                   help="damage this fraction of the bytes on the serial line (flip or drop), "
                        "to exercise the protocol's error detection and retries")
    p.add_argument("--json", action="store_true")
    add_kernel_args(p)
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    board = load_board(args.board)
    run = run_qemu(board, model_inputs(args), _out_dir(args, board), args.samples,
                   args.corrupt, args.quiet or args.json, stderr_log(args.quiet), args.kernels)
    if args.json:
        print(json.dumps(dict(run.check.as_dict(), machine=board.emulator.machine,
                              elf=str(run.build.elf)), indent=2))
    else:
        print(format_check(run.check))
        if run.damaged_requests is not None:
            print(f"  corruption        {run.damaged_requests} damaged requests, "
                  f"{run.damaged_replies} damaged device frames, all detected: every "
                  "accepted reply passed its CRC-32")
    return 0


# ----------------------------------------------------------------------------- flash

@COMMANDS.register("flash", "write the built firmware to a board (openocd, st-flash or pyocd)")
def cmd_flash(argv):
    p = ArgParser(
        prog="svt-deploy flash",
        description="Flash firmware/build/svt_firmware.* of a project built with "
                    "`svt-deploy firmware` using the first installed tool of the board "
                    "file's [flashing] tools.")
    p.add_argument("--board", required=True)
    p.add_argument("--dir", help="project directory (default out/firmware-BOARD)")
    p.add_argument("--tool", choices=("openocd", "st-flash", "pyocd"),
                   help="use this tool instead of the first installed one")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    add_common(p)
    args = p.parse_args(argv)
    board = load_board(args.board)
    project = Path(args.dir or f"out/firmware-{board.name}")
    cmd = flash(board, project, tool=args.tool, dry_run=args.dry_run)
    print(("would run: " if args.dry_run else "flashed: ") + " ".join(cmd))
    return 0


# ----------------------------------------------------------------------------- validate

@COMMANDS.register("validate", "check the firmware on a connected board over its serial port")
def cmd_validate(argv):
    p = ArgParser(
        prog="svt-deploy validate",
        description="Stream test images to a board running svt-deploy firmware and compare "
                    "its predictions with PyTorch and the host C build; reports cycles per "
                    "inference (DWT). Also works against `make run-qemu` with --port "
                    "socket://127.0.0.1:4444 (then it reports instructions).")
    p.add_argument("--port", required=True, help="serial device (/dev/ttyACM0, COM3) or a "
                                                 "pyserial URL (socket://host:port)")
    p.add_argument("--baud", type=num.positive_int, default=115200)
    p.add_argument("--board", required=True)
    p.add_argument("--samples", type=num.count, default=100, help="test images (default 100)")
    p.add_argument("--timeout", type=num.positive, default=2.0,
                   help="seconds to wait for an answer before resending (default 2)")
    p.add_argument("--dir", help="project directory for the host build "
                                 "(default out/firmware-BOARD)")
    p.add_argument("--json", action="store_true")
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    board = load_board(args.board)
    check, info = validate(board, PortLink(args.port, args.baud, args.timeout),
                           model_inputs(args), args.samples,
                           Path(args.dir or f"out/firmware-{board.name}"),
                           args.quiet or args.json, stderr_log(args.quiet))
    if args.json:
        print(json.dumps(check.as_dict(), indent=2))
    else:
        print(format_check(check, clock_hz=info.counter_hz))  # cycles: the core clock
    return 0
