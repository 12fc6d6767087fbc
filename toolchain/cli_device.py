"""CLI commands for the firmware stage: build, run on QEMU, flash, validate over serial.

    svt-deploy firmware --board stm32h7 --weights out/prune-stm32h7/pruned_model.pt
    svt-deploy run-qemu --board stm32f405 --weights W.pt --samples 20
    svt-deploy flash    --board stm32h7 --dir out/firmware-stm32h7
    svt-deploy validate --port /dev/ttyACM0 --board stm32h7 --weights W.pt --samples 100
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from . import cli_args as num
from .cli import add_common, add_model_args, command, load_inputs, progress_bar
from .cli_args import ArgParser
from .errors import SvtError


def _out_dir(args, board) -> Path:
    return Path(args.out or f"out/firmware-{board.name}")


def generate_project(loaded, input_shape, board, out_dir: Path):
    """IR, memory plan, C sources and firmware/ for ``board`` in ``out_dir``."""
    from .firmware import generate_firmware
    from .ir import extract_ir
    from .memory import plan_memory

    if input_shape is None:
        raise SvtError("the model's input shape is unknown; pass --data")
    ir = extract_ir(loaded.model, tuple(input_shape))
    plan = plan_memory(ir)
    gen = generate_firmware(ir, plan, board, out_dir, source=str(loaded.weights))
    return ir, plan, gen


def _log(args):
    return (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))


# ----------------------------------------------------------------------------- firmware

@command("firmware", "generate and cross-build firmware for a board; check that it fits")
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
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    from .boards import load_board
    from .firmware import build_firmware, format_build, require_cross_toolchain

    board = load_board(args.board)
    require_cross_toolchain()
    loaded, _ = load_inputs(args, need_data=args.data is not None)
    out = _out_dir(args, board)
    _, _, gen = generate_project(loaded, loaded.input_shape, board, out)
    builds = [build_firmware(out, board, emulated=False)]
    if args.qemu:
        builds.append(build_firmware(out, board, emulated=True))
    if args.json:
        print(json.dumps({"dir": str(out), "model_hash": gen.model_hash,
                          "builds": [b.as_dict() for b in builds]}, indent=2))
    else:
        for b in builds:
            print(format_build(b))
        print(f"project {out} (model {gen.model_hash}): `make -C {out} firmware` rebuilds it")
    return 0


# ----------------------------------------------------------------------------- run-qemu

@command("run-qemu", "run the firmware on the board's QEMU machine and check its accuracy")
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
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    from .boards import load_board
    from .device_check import device_check, format_check
    from .firmware import build_firmware, require_cross_toolchain, require_tool
    from .qemu import FaultyProxy, QemuDevice

    board = load_board(args.board)
    if board.emulator is None:
        raise SvtError(f"board {board.name} has no emulator; run-qemu supports stm32h7 "
                       "(mps2-an500) and stm32f405 (netduinoplus2)")
    require_cross_toolchain()
    require_tool("qemu-system-arm")
    loaded, ds = load_inputs(args)
    out = _out_dir(args, board)
    generate_project(loaded, ds.input_shape, board, out)
    build = build_firmware(out, board, emulated=True)
    proxy = FaultyProxy(args.corrupt, args.corrupt, seed=0) if args.corrupt else None
    log = _log(args)
    # a damaged line needs more resends: at RATE, a frame of n bytes survives (1-RATE)^n
    retries = 20 if args.corrupt else 5
    with QemuDevice(build.elf, board, proxy=proxy, retries=retries,
                    log=log if args.corrupt else None) as dev:
        with progress_bar(args.samples, f"QEMU {board.emulator.machine}",
                          args.quiet or args.json) as bar:
            check = device_check(dev.link, dev.info, loaded, ds, args.samples, out,
                                 progress=bar.update)
    if proxy is not None:
        proxy.close()
    if args.json:
        print(json.dumps(dict(check.as_dict(), machine=board.emulator.machine,
                              elf=str(build.elf)), indent=2))
    else:
        print(format_check(check))
        if proxy is not None:
            print(f"  corruption        {len(proxy.down.damaged)} damaged requests, "
                  f"{len(proxy.up.damaged)} damaged device frames, all detected: every "
                  "accepted reply passed its CRC-32")
    return 0


# ----------------------------------------------------------------------------- flash

@command("flash", "write the built firmware to a board (openocd, st-flash or pyocd)")
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
    from .boards import load_board
    from .flashing import flash

    board = load_board(args.board)
    project = Path(args.dir or f"out/firmware-{board.name}")
    cmd = flash(board, project, tool=args.tool, dry_run=args.dry_run)
    print(("would run: " if args.dry_run else "flashed: ") + " ".join(cmd))
    return 0


# ----------------------------------------------------------------------------- validate

def host_project(loaded, ds, info, project: Path, scratch: str) -> Path:
    """A generated project of this model for the host build: ``project`` when it holds
    this model (its firmware build is left alone), else fresh sources in ``scratch``.
    The device must run this model too."""
    from .codegen import generate, model_hash
    from .device_check import check_identity, project_hash
    from .ir import extract_ir
    from .memory import plan_memory

    ir = extract_ir(loaded.model, ds.input_shape)
    expected = model_hash(ir)
    size = int(ds.input_shape[0] * ds.input_shape[1] * ds.input_shape[2])
    check_identity(info, expected, size, ir.num_classes, "the board")
    if (project / "model.h").is_file() and project_hash(project) == expected:
        return project
    generate(ir, plan_memory(ir), scratch, source=str(loaded.weights))
    return Path(scratch)


@command("validate", "check the firmware on a connected board over its serial port")
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
    from .boards import load_board
    from .device_check import device_check, format_check
    from .serial_link import SerialLink, open_port

    board = load_board(args.board)
    port = open_port(args.port, args.baud)  # first: a missing board fails fast
    try:
        link = SerialLink(port, name=args.port, timeout=args.timeout, baud=args.baud,
                          log=_log(args))
        info = link.handshake(attempts=3, timeout=args.timeout)
        if info.board != board.name:
            raise SvtError(f"{args.port} runs firmware for {info.board}, not {board.name}")
        loaded, ds = load_inputs(args)
        with tempfile.TemporaryDirectory(prefix="svt_validate_") as tmp:
            project = host_project(loaded, ds, info, Path(args.dir or
                                                          f"out/firmware-{board.name}"), tmp)
            with progress_bar(args.samples, args.port, args.quiet or args.json) as bar:
                check = device_check(link, info, loaded, ds, args.samples, project,
                                     progress=bar.update)
    finally:
        port.close()
    if args.json:
        print(json.dumps(check.as_dict(), indent=2))
    else:
        print(format_check(check, clock_hz=info.counter_hz))  # cycles: the core clock
    return 0
