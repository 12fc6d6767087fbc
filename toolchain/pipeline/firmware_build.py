"""Firmware stage: cross-build a generated project for its board; the build records what
the linker made in the project manifest (FirmwareFacts), which this stage reads back."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..boards import Board
from ..codegen import Generated
from ..errors import SvtError
from ..firmware import FirmwareBuild, build_firmware
from ..manifest import read_manifest
from ..tools import require_cross_toolchain
from .common import Log
from .generation import generate_project
from .inputs import ModelInputs, load_inputs

ARTIFACTS = (".elf", ".bin", ".hex", ".map")


@dataclass(frozen=True)
class FirmwareProject:
    """`svt-deploy firmware`: the project directory, its sources and the builds."""

    directory: Path
    generated: Generated
    builds: list[FirmwareBuild]


def build_project(board: Board, inputs: ModelInputs, out: Path, qemu: bool,
                  kernels: str = "event") -> FirmwareProject:
    """Generate the model's project for ``board`` in ``out`` and build the board's image
    (and, with ``qemu``, the emulator's). The toolchain is checked before the model loads."""
    require_cross_toolchain()
    loaded, _ = load_inputs(inputs, need_data=inputs.data is not None)
    _, _, gen = generate_project(loaded, loaded.input_shape, board, out, kernels)
    builds = [build_firmware(out, board, emulated=False)]
    if qemu:
        builds.append(build_firmware(out, board, emulated=True))
    return FirmwareProject(out, gen, builds)


@dataclass(frozen=True)
class FirmwareResult:
    """The deploy's firmware stage: the manifest's FirmwareFacts, and where the image was
    copied (relative to the output directory)."""

    elf: str
    text: int
    data: int
    bss: int
    flash_used: int
    sram_used: int
    fits: bool
    weight_bytes: int
    arena_bytes: int
    arena_region: str
    regions: dict
    placement: dict


def artifact(board: Board, suffix: str) -> str:
    return f"svt_{board.name}{suffix}"


def firmware_stage(project: Path, board: Board, out: Path, log: Log) -> FirmwareResult:
    """Build the board's image, copy it beside the report as svt_BOARD.elf/.bin/.hex/.map,
    and return what the manifest now records of it."""
    log(f"building firmware for {board.name} ({board.core})")
    build = build_firmware(project, board, emulated=False)
    for suffix in ARTIFACTS:
        src = build.elf.with_suffix(suffix)
        tmp = out / f".{artifact(board, suffix)}.tmp"
        shutil.copyfile(src, tmp)
        tmp.replace(out / artifact(board, suffix))
    facts = read_manifest(project).firmware
    if facts is None:
        raise SvtError(f"{project}/manifest.json has no firmware facts after the build")
    return FirmwareResult(elf=artifact(board, ".elf"), text=facts.text, data=facts.data,
                          bss=facts.bss, flash_used=facts.flash_used, sram_used=facts.sram_used,
                          fits=facts.fits, weight_bytes=facts.weight_bytes,
                          arena_bytes=facts.arena_bytes,
                          arena_region=facts.placement.get(".svt_arena", "?"),
                          regions=facts.regions, placement=facts.placement)


def firmware_valid(project: Path, out: Path, result: FirmwareResult) -> bool:
    """The copied image is there and the project's manifest still records its build."""
    if not (out / result.elf).is_file():
        return False
    try:
        return read_manifest(project).firmware is not None
    except SvtError:
        return False
