"""Device check stage: the firmware on QEMU or on a board over its serial port, image by
image against PyTorch and the host build. What model the device must run comes from the
project manifest."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..boards import Board
from ..codegen import generate, model_hash
from ..data import Dataset
from ..device_check import DeviceCheck, check_identity, device_check
from ..errors import SvtError
from ..firmware import FirmwareBuild, build_firmware
from ..flashing import flash
from ..quant.reference import deployed_ir
from ..loading import LoadedModel
from ..manifest import MANIFEST, read_manifest
from ..memory import plan_memory
from ..qemu import FaultyProxy, QemuDevice
from ..serial_link import DeviceInfo, SerialLink, open_port
from ..tools import require_cross_toolchain, require_tool
from .common import Log, progress_bar
from .generation import generate_project
from .inputs import ModelInputs, load_inputs

BAUD = 115200


@dataclass(frozen=True)
class DeviceTarget:
    """Where the deploy validates: QEMU (no port) or the board on ``port``."""

    samples: int = 500
    port: str | None = None
    flash_tool: str | None = None


@dataclass(frozen=True)
class DeviceResult:
    """The deploy's device stage."""

    target: str
    samples: int
    accuracy: float
    agreement: float  # with PyTorch
    agreement_host: float
    identical_to_host: bool
    instructions_per_inference: int | None  # or cycles, on a board (see counter)
    counter: str
    seconds_per_image: float
    link: dict
    identical_to_reference: bool = False  # every score equal to PyTorch's (integer models)


def _result(check: DeviceCheck, target: str) -> DeviceResult:
    d = check.as_dict()
    per_inference = check.instructions_mean if check.instructions_mean is not None \
        else check.cycles_mean
    return DeviceResult(
        target=target, samples=d["samples"], accuracy=d["accuracy"],
        agreement=d["agreement_torch"], agreement_host=d["agreement_host"],
        identical_to_host=d["identical_to_host"],
        instructions_per_inference=None if per_inference is None else int(per_inference),
        counter="instructions (QEMU -icount)" if check.instructions_mean is not None
        else "cycles (DWT CYCCNT)", seconds_per_image=d["seconds_per_image"], link=d["link"],
        identical_to_reference=d["max_abs_diff_torch"] == 0)


def device_stage(pruned: LoadedModel, ds: Dataset, board: Board, project: Path,
                 target: DeviceTarget, quiet: bool, log: Log) -> DeviceResult:
    """Flash and check the board on ``target.port``, else build the QEMU image and check
    it on the emulator."""
    if target.port:
        port = open_port(target.port, BAUD)  # a missing board fails before flashing
        try:
            log(f"flashing {board.name} ({target.flash_tool or 'first installed tool'})")
            flash(board, project, target.flash_tool)
            log(f"validating on {target.port}: {target.samples} test images")
            link = SerialLink(port, name=target.port, timeout=2.0, baud=BAUD)
            info = link.handshake(attempts=3, timeout=2.0)
            with progress_bar(target.samples, "device", quiet) as bar:
                check = device_check(link, info, pruned, ds, target.samples, project,
                                     progress=bar.update)
        finally:
            port.close()
        return _result(check, f"{board.name} on {target.port}")
    if board.emulator is None:
        raise SvtError(f"board {board.name} has no emulator; connect it and pass --port, "
                       "or use --no-device")
    build = build_firmware(project, board, emulated=True)
    log(f"validating on QEMU {board.emulator.machine}: {target.samples} test images")
    with QemuDevice(build.elf, board) as dev:
        with progress_bar(target.samples, f"QEMU {board.emulator.machine}", quiet) as bar:
            check = device_check(dev.link, dev.info, pruned, ds, target.samples, project,
                                 progress=bar.update)
    return _result(check, f"QEMU {board.emulator.machine}")


@dataclass(frozen=True)
class QemuRun:
    """`svt-deploy run-qemu`: the check, the QEMU build, and the damage a corrupting line
    did (None without one)."""

    check: DeviceCheck
    build: FirmwareBuild
    damaged_requests: int | None = None
    damaged_replies: int | None = None


def run_qemu(board: Board, inputs: ModelInputs, out: Path, samples: int, corrupt: float,
             quiet: bool, log: Log, kernels: str = "event") -> QemuRun:
    """Generate ``inputs``' model for ``board``, build its QEMU image and check it there,
    with ``corrupt`` of the line's bytes damaged."""
    if board.emulator is None:
        raise SvtError(f"board {board.name} has no emulator; run-qemu supports stm32h7 "
                       "(mps2-an500) and stm32f405 (netduinoplus2)")
    require_cross_toolchain()
    require_tool("qemu-system-arm")
    loaded, ds = load_inputs(inputs)
    generate_project(loaded, ds.input_shape, board, out, kernels)
    build = build_firmware(out, board, emulated=True)
    proxy = FaultyProxy(corrupt, corrupt, seed=0) if corrupt else None
    # a damaged line needs more resends: at RATE, a frame of n bytes survives (1-RATE)^n
    retries = 20 if corrupt else 5
    try:
        with QemuDevice(build.elf, board, proxy=proxy, retries=retries,
                        log=log if corrupt else None) as dev:
            with progress_bar(samples, f"QEMU {board.emulator.machine}", quiet) as bar:
                check = device_check(dev.link, dev.info, loaded, ds, samples, out,
                                     progress=bar.update)
    finally:
        if proxy is not None:
            proxy.close()
    if proxy is None:
        return QemuRun(check, build)
    return QemuRun(check, build, len(proxy.down.damaged), len(proxy.up.damaged))


def _holds(project: Path, model_hash: str) -> bool:
    """Whether ``project``'s manifest says it was generated from the model ``model_hash``."""
    if not (project / MANIFEST).is_file():
        return False
    try:
        return read_manifest(project).model.model_hash == model_hash
    except SvtError:  # damaged: generate afresh
        return False


def host_project(loaded: LoadedModel, ds: Dataset, info: DeviceInfo, project: Path,
                 scratch: str) -> Path:
    """A generated project of this model for the host build: ``project`` when its manifest
    says it holds this model (its firmware build is left alone), else fresh sources in
    ``scratch``. The device must run this model too."""
    ir = deployed_ir(loaded, ds.input_shape)
    expected = model_hash(ir)
    size = int(ds.input_shape[0] * ds.input_shape[1] * ds.input_shape[2])
    check_identity(info, expected, size, ir.num_classes, "the board")
    if _holds(project, expected):
        return project
    generate(ir, plan_memory(ir), scratch, source=str(loaded.weights))
    return Path(scratch)


@dataclass(frozen=True)
class PortLink:
    """A board on a serial port (a device path or a pyserial URL)."""

    port: str
    baud: int = BAUD
    timeout: float = 2.0  # seconds before a request is resent


def validate(board: Board, link_options: PortLink, inputs: ModelInputs, samples: int,
             project: Path, quiet: bool, log: Log) -> tuple[DeviceCheck, DeviceInfo]:
    """`svt-deploy validate`: check the firmware running on a connected board (opened
    first, so a missing board fails before any work) against this model."""
    port = open_port(link_options.port, link_options.baud)
    try:
        link = SerialLink(port, name=link_options.port, timeout=link_options.timeout,
                          baud=link_options.baud, log=log)
        info = link.handshake(attempts=3, timeout=link_options.timeout)
        if info.board != board.name:
            raise SvtError(f"{link_options.port} runs firmware for {info.board}, not "
                           f"{board.name}")
        loaded, ds = load_inputs(inputs)
        with tempfile.TemporaryDirectory(prefix="svt_validate_") as tmp:
            reference = host_project(loaded, ds, info, project, tmp)
            with progress_bar(samples, link_options.port, quiet) as bar:
                check = device_check(link, info, loaded, ds, samples, reference,
                                     progress=bar.update)
    finally:
        port.close()
    return check, info
