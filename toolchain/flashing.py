"""Flash a built firmware image onto a board with openocd, st-flash or pyocd.

The board's ``[flashing]`` table (``Board.flashing``) lists the tools in order of preference
and their target names (``openocd_interface``/``openocd_target``, ``pyocd_target``);
st-flash writes the raw image at the first flash region's base address. The first listed tool
that is installed is used unless one is named.

Not yet run against a board: the commands are built and tested, the probes are not.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .boards import FLASH_TOOLS, Board
from .errors import SvtError
from .manifest import MANIFEST, read_manifest

TOOLS = FLASH_TOOLS
INSTALL = {"openocd": "sudo apt-get install openocd",
           "st-flash": "sudo apt-get install stlink-tools",
           "pyocd": "pip install pyocd"}


@dataclass(frozen=True)
class Image:
    """The hardware build of a generated project (firmware/build/)."""

    elf: Path
    bin: Path
    hex: Path

    @classmethod
    def of_project(cls, project_dir: str | Path, board: Board) -> Image:
        built = None  # what the firmware stage recorded in the project's manifest
        if (Path(project_dir) / "firmware").is_dir() and (Path(project_dir) / MANIFEST).is_file():
            built = read_manifest(project_dir).firmware
        if built is None:
            raise SvtError(f"{project_dir} has no firmware build; build it with: svt-deploy "
                           f"firmware --board {board.name} --out {project_dir}")
        if built.board != board.name:
            raise SvtError(f"{project_dir} holds firmware for board {built.board}, not "
                           f"{board.name}")
        elf = Path(project_dir) / built.elf
        image = cls(elf, elf.with_suffix(".bin"), elf.with_suffix(".hex"))
        missing = [p for p in (image.elf, image.bin, image.hex) if not p.is_file()]
        if missing:
            raise SvtError(f"{missing[0]} is missing; build it with: svt-deploy firmware "
                           f"--board {board.name} --out {project_dir}")
        return image


def tool_order(board: Board) -> list[str]:
    """The board's tools in order of preference (the board parser checked their names)."""
    return list(board.flashing.tools)


def choose_tool(board: Board, tool: str | None = None, which=shutil.which) -> tuple[str, str]:
    """(tool name, executable path): the named tool, else the first installed one."""
    candidates = [tool] if tool else tool_order(board)
    if tool and tool not in TOOLS:
        raise SvtError(f"unknown flashing tool {tool!r}; choose one of {', '.join(TOOLS)}")
    for name in candidates:
        path = which(name)
        if path:
            return name, path
    hints = "; ".join(f"{t}: {INSTALL[t]}" for t in candidates)
    raise SvtError(f"no flashing tool for {board.name} is installed (tried "
                   f"{', '.join(candidates)}); install one ({hints})")


def flash_command(tool: str, executable: str, board: Board, image: Image) -> list[str]:
    cfg = board.flashing
    if tool == "openocd":
        target = cfg.openocd_target
        if not target:
            raise SvtError(f"board {board.name} has no [flashing] openocd_target")
        return [executable, "-f", cfg.openocd_interface, "-f", target,
                "-c", f"program {{{image.elf.as_posix()}}} verify reset exit"]
    if tool == "st-flash":
        return [executable, "--reset", "write", str(image.bin), f"0x{board.flash[0].base:08x}"]
    if tool == "pyocd":
        target = cfg.pyocd_target
        if not target:
            raise SvtError(f"board {board.name} has no [flashing] pyocd_target")
        return [executable, "flash", "--target", target, str(image.hex)]
    raise SvtError(f"unknown flashing tool {tool!r}")


def flash(board: Board, project_dir: str | Path, tool: str | None = None,
          dry_run: bool = False, which=shutil.which, timeout: float = 300) -> list[str]:
    """Flash the project's hardware build; returns the command that was (or would be) run."""
    if board.is_host:
        raise SvtError("board host cannot be flashed")
    image = Image.of_project(project_dir, board)
    name, executable = choose_tool(board, tool, which)
    cmd = flash_command(name, executable, board, image)
    if dry_run:
        return cmd
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise SvtError(f"{name} did not finish within {timeout:.0f} s; is the probe "
                       "connected?") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()] or lines or ["(no output)"]
        raise SvtError(f"{name} failed (exit {proc.returncode}): {errors[-1][:200]}")
    return cmd
