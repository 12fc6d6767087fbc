"""Board profiles: hardware as data (``boards/*.toml``), read into a small dataclass."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SvtError
from .resources import BOARDS_DIR



@dataclass(frozen=True)
class Region:
    name: str
    base: int
    size: int
    code_only: bool = False  # e.g. ITCM: never holds the arena
    no_dma: bool = False


@dataclass(frozen=True)
class Emulator:
    machine: str
    uart_driver: str
    uart_base: int
    flash_base: int
    sram_base: int
    regions: tuple[str, ...] = ()  # SRAM regions the emulator models (empty: all)


@dataclass(frozen=True)
class Board:
    name: str
    mcu: str
    core: str
    fpu: str
    float_abi: str
    clock_hz: int
    reserve_flash: int
    reserve_sram: int
    flash: tuple[Region, ...] = ()
    sram: tuple[Region, ...] = ()
    uart: dict = field(default_factory=dict)
    flashing: dict = field(default_factory=dict)
    emulator: Emulator | None = None
    path: Path | None = None

    @property
    def is_host(self) -> bool:
        return not self.flash

    @property
    def flash_bytes(self) -> int:
        return sum(r.size for r in self.flash)

    @property
    def data_regions(self) -> tuple[Region, ...]:
        return tuple(r for r in self.sram if not r.code_only)

    @property
    def largest_sram(self) -> Region | None:
        return max(self.data_regions, key=lambda r: r.size, default=None)

    @property
    def flash_budget(self) -> int | None:
        """Bytes left for weights after the code reserve (None: unlimited)."""
        return None if self.is_host else self.flash_bytes - self.reserve_flash

    @property
    def sram_budget(self) -> int | None:
        """Bytes left for the inference arena in the largest data region."""
        region = self.largest_sram
        return None if region is None else region.size - self.reserve_sram


def _region(d: dict) -> Region:
    return Region(name=d["name"], base=int(d["base"]), size=int(d["size"]),
                  code_only=bool(d.get("code_only", False)), no_dma=bool(d.get("no_dma", False)))


def board_names(directory: Path = BOARDS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_board(name: str, directory: Path = BOARDS_DIR) -> Board:
    path = directory / f"{name}.toml"
    if not path.is_file():
        raise SvtError(f"unknown board {name!r}; valid boards: {', '.join(board_names(directory))}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        emu = data.get("emulator")
        return Board(
            name=data["name"], mcu=data["mcu"], core=data["core"], fpu=data["fpu"],
            float_abi=data["float_abi"], clock_hz=int(data["clock_hz"]),
            reserve_flash=int(data["reserve_flash"]), reserve_sram=int(data["reserve_sram"]),
            flash=tuple(_region(r) for r in data.get("flash", [])),
            sram=tuple(_region(r) for r in data.get("sram", [])),
            uart=dict(data.get("uart", {})), flashing=dict(data.get("flashing", {})),
            emulator=None if emu is None else Emulator(
                machine=emu["machine"], uart_driver=emu["uart_driver"],
                uart_base=int(emu["uart_base"]), flash_base=int(emu["flash_base"]),
                sram_base=int(emu["sram_base"]), regions=tuple(emu.get("regions", ()))),
            path=path)
    except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as e:
        raise SvtError(f"board profile {path} is invalid ({type(e).__name__}: {e}); "
                       "compare it with boards/stm32h7.toml") from None


def all_boards(directory: Path = BOARDS_DIR) -> list[Board]:
    return [load_board(n, directory) for n in board_names(directory)]


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n:,} B"


def parse_size(text: str) -> int:
    """'10KB', '2MB', '1.5M', '4096' -> bytes (binary units)."""
    t = text.strip().upper().replace("IB", "B")
    for suffix, mult in (("KB", 1024), ("MB", 1024 ** 2), ("K", 1024), ("M", 1024 ** 2),
                         ("B", 1)):
        if t.endswith(suffix):
            t, factor = t[: -len(suffix)], mult
            break
    else:
        factor = 1
    try:
        value = float(t) * factor
    except ValueError:
        raise SvtError(f"cannot read size {text!r}; write e.g. 512KB, 2MB or 65536") from None
    if value <= 0:
        raise SvtError(f"size {text!r} must be positive")
    return int(value)
