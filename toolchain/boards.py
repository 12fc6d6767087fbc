"""Board profiles: hardware as data, read once into frozen dataclasses.

A board file (``boards/NAME.toml``) names its SoC (``soc = "stm32h743"``), whose memory
map is written once in ``boards/soc/SOC.toml``, and adds what the board itself decides:
the serial port and its pins (``[uart]``), the flashing tools (``[flashing]``), the clock
the firmware runs at (``[firmware]``) and the QEMU machine that stands in for it
(``[emulator]``). Beside it, ``boards/costs/NAME.toml`` (written by ``svt-deploy
calibrate``) holds the board's kernel costs: instructions per step as a linear function
of the step's work, which the latency budget predicts with (``latency.py``).
``load_board`` is the only reader of these files: every key is checked against the
schema below, and an unknown key, a missing one or a value of the wrong type is a
one-line ``SvtError`` naming the file and the key.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import SvtError
from .resources import BOARDS_DIR, package_dir

SHIPPED_DIR = package_dir("svt_deploy.board_profiles")  # BOARDS_DIR unless SVT_BOARDS_DIR

FLASH_TOOLS = ("openocd", "st-flash", "pyocd")  # in the default order of preference


@dataclass(frozen=True)
class Region:
    name: str
    base: int
    size: int
    code_only: bool = False  # e.g. ITCM: never holds the arena
    no_dma: bool = False


@dataclass(frozen=True)
class Uart:
    """``[uart]``: the serial port the firmware talks on. Which keys a driver needs is in
    ``UART_DRIVER_KEYS``; the rest are None (or empty) for drivers that do not use them."""

    driver: str  # "stm32_usart" | "cmsdk_uart" | a driver the templates lack (nrf_uarte)
    base: int
    baud: int
    registers: str | None = None  # stm32_usart register layout: "stm32f4" | "stm32h7"
    irq: int | None = None
    clock_hz: int | None = None  # the peripheral's input clock (baud divisor)
    tx_pin: str | None = None  # e.g. "PD8"
    rx_pin: str | None = None
    pin_af: int | None = None
    gpio_base: int | None = None  # GPIOA; port n at gpio_base + n * 0x400
    clock_enable: tuple[tuple[int, int], ...] = ()  # (register, mask) ORed in at start-up


# The keys each driver of the firmware templates needs beside driver, base and baud.
UART_DRIVER_KEYS = {
    "stm32_usart": ("registers", "irq", "clock_hz", "tx_pin", "rx_pin", "pin_af", "gpio_base",
                    "clock_enable"),
    "cmsdk_uart": ("irq", "clock_hz"),
    "pl011": ("irq", "clock_hz"),
}


@dataclass(frozen=True)
class Flashing:
    """``[flashing]``: tools in order of preference and their target names."""

    tools: tuple[str, ...] = FLASH_TOOLS
    openocd_target: str | None = None
    openocd_interface: str = "interface/stlink.cfg"
    pyocd_target: str | None = None


@dataclass(frozen=True)
class FirmwareSettings:
    """``[firmware]``: how the firmware sets the chip up."""

    core_clock_hz: int  # the clock cycles are counted at (the firmware sets no PLL)
    enable_caches: bool = False  # Cortex-M7 I- and D-cache
    clock_enable: tuple[tuple[int, int], ...] = ()  # (register, mask) ORed in before RAM use


@dataclass(frozen=True)
class Emulator:
    """``[emulator]``: the QEMU machine that runs the board's firmware."""

    machine: str
    uart_driver: str
    uart_base: int
    flash_base: int
    sram_base: int
    systick_hz: int  # SysTick clock of the QEMU model
    regions: tuple[str, ...] = ()  # SRAM regions the emulator models (empty: all)
    uart_irq: int | None = None  # None: the board's [uart] irq (same peripheral)
    uart_clock_hz: int | None = None  # None: the board's [uart] clock_hz (same peripheral)
    # which of the machine's serial ports the UART is: QEMU connects its -serial options to
    # them in the order the machine creates them (netduinoplus2: USART1, USART2, ...)
    serial_index: int = 0
    # Derived by the parser: the serial port as the emulated firmware sees it, uart_irq and
    # uart_clock_hz over the board's [uart] when that is the same peripheral (driver and
    # base), else over a bare port at uart_base.
    uart: Uart | None = None


# The work features a kernel's cost is linear in, per step and image (computed in
# latency.step_features; the costs file names its coefficients by them).
COST_FEATURES = {
    "calls": "1 per step: the call and its set-up",
    "sites": "output pixels or tokens: the per-site loop (sums zeroed, events collected)",
    "outputs": "output values: channels x sites x timesteps",
    "neuron_updates": "LIF membrane steps: neurons x timesteps",
    "sops": "synaptic operations: each input event x the outputs it reaches",
    "columns": "weight columns added: SOPs / output channels (one per event in a window)",
    "tail": "columns x (output channels mod the kernel's width): sums past the last full "
            "pass of a vectorised column add",
    "misaligned": "SOPs of weight columns that do not start on a word (row bytes not a "
                  "multiple of 4: the weights load in smaller pieces)",
    "words": "32-bit words of spike trains (4-byte words of counts) an event scan reads",
    "input_events": "nonzero values (spikes, counts) of the step's inputs",
    "inputs": "values of the step's inputs",
    "macs": "dense multiply-accumulates (kernels that walk the whole shape)",
}


@dataclass(frozen=True)
class KernelCost:
    """``[[kernel]]`` of a costs file: instructions of one step of ``name`` (at weight
    ``precision``; None for kernels without weights) = sum of coefficient x feature."""

    name: str
    precision: str | None
    coefficients: tuple[tuple[str, float], ...]  # (feature, instructions per unit), nonzero
    width: int  # outputs per pass of its column add (the "tail" feature; 1: none)
    rows: int  # step-image measurements it was fitted on
    error_pct: float  # mean |fit - measured| over those rows, % of the mean measured


@dataclass(frozen=True)
class Calibration:
    """``[calibration]``: what the costs were measured on."""

    model: str
    model_hash: str
    precisions: tuple[str, ...]  # weight precisions the model was calibrated at
    kernels: str  # "event" | "dense": the kernel style built
    templates: str  # resources.templates_digest() of the C kernels measured
    date: str
    emulator: str
    images: int  # validation images per variant
    variants: int  # the model and its pruned variants
    error_pct: float  # mean |predicted - measured| per inference, % of measured
    holdout_error_pct: float  # the worst pruned variant, predicted by a fit without it


@dataclass(frozen=True)
class KernelCosts:
    """``boards/costs/NAME.toml``: a board's kernel costs, calibrated on its emulator."""

    board: str
    per_inference: float  # instructions of svt_model_run outside the steps
    calibration: Calibration
    kernels: tuple[KernelCost, ...]
    path: Path | None = None
    source: str = ""  # the file as messages name it (boards/costs/NAME.toml when shipped)

    def cost(self, kernel: str, precision: str | None) -> KernelCost | None:
        return next((k for k in self.kernels
                     if k.name == kernel and k.precision == precision), None)


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
    soc: str | None = None  # boards/soc/SOC.toml: the memory map (None: the host)
    flash: tuple[Region, ...] = ()
    sram: tuple[Region, ...] = ()
    uart: Uart | None = None
    flashing: Flashing = field(default_factory=Flashing)
    firmware: FirmwareSettings | None = None
    emulator: Emulator | None = None
    costs: KernelCosts | None = None  # boards/costs/NAME.toml, when calibrated
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


# ----------------------------------------------------------------------------- the schema

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pairs(v: Any) -> tuple[tuple[int, int], ...] | None:
    if not isinstance(v, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(_is_int(x) and x >= 0 for x in p)
            for p in v):
        return None
    return tuple((a, m) for a, m in v)


def _strings(v: Any) -> tuple[str, ...] | None:
    return tuple(v) if isinstance(v, list) and all(isinstance(s, str) for s in v) else None


# kind -> (what it must be, check-and-convert: the value, or None when it does not fit)
KINDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "str": ("a non-empty string", lambda v: v if isinstance(v, str) and v else None),
    "int": ("an integer >= 0", lambda v: v if _is_int(v) and v >= 0 else None),
    "positive": ("an integer > 0", lambda v: v if _is_int(v) and v > 0 else None),
    "number": ("a finite number >= 0", lambda v: float(v) if isinstance(v, (int, float))
               and not isinstance(v, bool) and math.isfinite(v) and v >= 0 else None),
    "bool": ("true or false", lambda v: v if isinstance(v, bool) else None),
    "strings": ("a list of strings", _strings),
    "pairs": ("a list of [register, mask] integer pairs", _pairs),
}

REQUIRED = object()


def _shown(path: Path) -> str:
    """A board file's name as errors show it: boards/... for the shipped ones."""
    try:
        return f"boards/{path.resolve().relative_to(SHIPPED_DIR.resolve()).as_posix()}"
    except ValueError:
        return str(path)


class _Table:
    """One TOML table of a board or SoC file. ``get`` checks a key's type; ``done``, called
    before the values are used, refuses the keys nobody asked for, then the required keys
    that are missing (a misspelt key is reported as unknown, not as the one it misses).
    Errors name the file and the key."""

    def __init__(self, file: str, label: str, data: Any, entry: int | None = None):
        self.file, self.label, self.entry = file, label, entry
        if not isinstance(data, dict):
            raise self.error(f"{label.strip() or 'the file'} must be a table, not "
                             f"{type(data).__name__}")
        self.data = data
        self.seen: set[str] = set()
        self.missing: list[str] = []

    def key(self, key: str) -> str:
        where = f" (entry {self.entry})" if self.entry is not None else ""
        return f"{self.label} {key}".strip() + where

    def error(self, message: str) -> SvtError:
        return SvtError(f"{self.file}: {message}")

    def get(self, key: str, kind: str, default: Any = REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is REQUIRED:
                self.missing.append(key)
                return None
            return default
        what, convert = KINDS[kind]
        value = self.data[key]
        out = convert(value)
        if out is None:
            shown = repr(value) if _is_int(value) else f"{type(value).__name__} {value!r}"
            raise self.error(f"{self.key(key)} must be {what}, not {shown}"[:300])
        return out

    def table(self, key: str) -> _Table | None:
        self.seen.add(key)
        if key not in self.data:
            return None
        return _Table(self.file, f"[{key}]", self.data[key])

    def tables(self, key: str) -> list[_Table]:
        self.seen.add(key)
        items = self.data.get(key, [])
        if not isinstance(items, list):
            raise self.error(f"{key} must be an array of tables ([[{key}]]), not "
                             f"{type(items).__name__}")
        return [_Table(self.file, f"[[{key}]]", t, entry=i + 1) for i, t in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            close = difflib.get_close_matches(unknown[0], self.seen, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise self.error(f"unknown key {self.key(unknown[0])} ({hint}valid keys: "
                             f"{', '.join(sorted(self.seen))})")
        if self.missing:
            raise self.error(f"missing key {self.key(self.missing[0])}")


def _read_toml(path: Path) -> tuple[str, dict]:
    shown = _shown(path)
    try:
        with open(path, "rb") as f:
            return shown, tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SvtError(f"{shown}: not valid TOML ({e})") from None
    except OSError as e:
        raise SvtError(f"{shown}: cannot read it ({e.strerror})") from None


def _regions(t: _Table, key: str, entries: list[_Table]) -> tuple[Region, ...]:
    regions = []
    for r in entries:
        regions.append(Region(name=r.get("name", "str"), base=r.get("base", "int"),
                              size=r.get("size", "positive"),
                              code_only=r.get("code_only", "bool", False),
                              no_dma=r.get("no_dma", "bool", False)))
        r.done()
    if not regions:
        raise t.error(f"missing key [[{key}]] (at least one region)")
    return tuple(regions)


def _soc_path(soc: str, directory: Path) -> Path | None:
    """SoC files live in ``soc/`` beside the board files; custom board directories may
    also use the shipped ones."""
    for d in (directory, SHIPPED_DIR):
        path = d / "soc" / f"{soc}.toml"
        if path.is_file():
            return path
    return None


def load_soc(soc: str, directory: Path = BOARDS_DIR, board_file: str | None = None
             ) -> tuple[tuple[Region, ...], tuple[Region, ...]]:
    """(flash regions, SRAM regions) of ``boards/soc/SOC.toml``."""
    path = _soc_path(soc, Path(directory))
    if path is None:
        raise SvtError(f"{board_file + ': ' if board_file else ''}unknown soc {soc!r} (no file "
                       f"soc/{soc}.toml); SoCs: {', '.join(soc_names(Path(directory)))}")
    shown, data = _read_toml(path)
    t = _Table(shown, "", data)
    name = t.get("name", "str")
    region_tables = {key: t.tables(key) for key in ("flash", "sram")}
    t.done()
    if name != soc:
        raise t.error(f"name {name!r} must match the file name ({soc})")
    flash, sram = (_regions(t, key, region_tables[key]) for key in ("flash", "sram"))
    names = [r.name for r in flash + sram]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise t.error(f"two regions are named {duplicate}")
    if not any(not r.code_only for r in sram):
        raise t.error("[[sram]] has no data region (all are code_only)")
    return flash, sram


def _uart(t: _Table) -> Uart:
    uart = Uart(driver=t.get("driver", "str"), base=t.get("base", "int"),
                baud=t.get("baud", "positive"), registers=t.get("registers", "str", None),
                irq=t.get("irq", "int", None), clock_hz=t.get("clock_hz", "positive", None),
                tx_pin=t.get("tx_pin", "str", None), rx_pin=t.get("rx_pin", "str", None),
                pin_af=t.get("pin_af", "int", None), gpio_base=t.get("gpio_base", "int", None),
                clock_enable=t.get("clock_enable", "pairs", ()))
    t.done()
    for key in UART_DRIVER_KEYS.get(uart.driver, ()):
        if getattr(uart, key) in (None, ()):
            raise t.error(f"missing key {t.key(key)} (driver {uart.driver} needs it)")
    return uart


def _flashing(t: _Table | None) -> Flashing:
    if t is None:
        return Flashing()
    default = Flashing()
    f = Flashing(tools=t.get("tools", "strings", default.tools),
                 openocd_target=t.get("openocd_target", "str", None),
                 openocd_interface=t.get("openocd_interface", "str", default.openocd_interface),
                 pyocd_target=t.get("pyocd_target", "str", None))
    t.done()
    unknown = [tool for tool in f.tools if tool not in FLASH_TOOLS]
    if unknown or not f.tools:
        raise t.error(f"{t.key('tools')} must list tools out of {', '.join(FLASH_TOOLS)}"
                      + (f", not {unknown[0]!r}" if unknown else ""))
    return f


def _firmware(t: _Table | None) -> FirmwareSettings | None:
    if t is None:
        return None
    fw = FirmwareSettings(core_clock_hz=t.get("core_clock_hz", "positive"),
                          enable_caches=t.get("enable_caches", "bool", False),
                          clock_enable=t.get("clock_enable", "pairs", ()))
    t.done()
    return fw


def _emulator(t: _Table | None, uart: Uart | None, sram: tuple[Region, ...]) -> Emulator | None:
    if t is None:
        return None
    emu = Emulator(machine=t.get("machine", "str"), uart_driver=t.get("uart_driver", "str"),
                   uart_base=t.get("uart_base", "int"), flash_base=t.get("flash_base", "int"),
                   sram_base=t.get("sram_base", "int"), systick_hz=t.get("systick_hz", "positive"),
                   regions=t.get("regions", "strings", ()),
                   uart_irq=t.get("uart_irq", "int", None),
                   uart_clock_hz=t.get("uart_clock_hz", "positive", None),
                   serial_index=t.get("serial_index", "int", 0))
    t.done()
    data = {r.name for r in sram if not r.code_only}
    stray = [r for r in emu.regions if r not in data]
    if stray:
        raise t.error(f"{t.key('regions')} names {stray[0]!r}, which is not a data SRAM region "
                      f"of the board ({', '.join(sorted(data)) or 'none'})")
    if uart is not None and (uart.driver, uart.base) == (emu.uart_driver, emu.uart_base):
        under = uart  # the board's own peripheral: its registers, pins and clocks
    else:
        under = Uart(driver=emu.uart_driver, base=emu.uart_base,
                     baud=uart.baud if uart else 115200)
    seen = replace(under, irq=under.irq if emu.uart_irq is None else emu.uart_irq,
                   clock_hz=under.clock_hz if emu.uart_clock_hz is None else emu.uart_clock_hz)
    for key in UART_DRIVER_KEYS.get(emu.uart_driver, ()):
        if getattr(seen, key) not in (None, ()):
            continue
        if key in ("irq", "clock_hz"):
            raise t.error(f"missing key {t.key('uart_' + key)} (the emulated "
                          f"{emu.uart_driver} needs it)")
        raise t.error(f"{t.key('uart_driver')} {emu.uart_driver} at 0x{emu.uart_base:08X} is "
                      f"not the board's [uart], so nothing gives its {key}")
    return replace(emu, uart=seen)


def _kernel_cost(t: _Table) -> KernelCost:
    cost = KernelCost(name=t.get("name", "str"), precision=t.get("precision", "str", None),
                      coefficients=tuple((f, c) for f in COST_FEATURES
                                         if (c := t.get(f, "number", 0.0))),
                      width=t.get("width", "positive", 1), rows=t.get("rows", "positive"),
                      error_pct=t.get("error_pct", "number"))
    t.done()
    return cost


def costs_path(name: str, directory: Path = BOARDS_DIR) -> Path:
    """Where board ``name``'s kernel costs live: ``costs/NAME.toml`` beside its file."""
    return Path(directory) / "costs" / f"{name}.toml"


def load_costs(path: Path, board: str) -> KernelCosts:
    shown, data = _read_toml(path)
    t = _Table(shown, "", data)
    name, per_inference = t.get("board", "str"), t.get("per_inference", "number")
    c, kernels = t.table("calibration"), [_kernel_cost(k) for k in t.tables("kernel")]
    t.done()
    if name != board:
        raise t.error(f"board {name!r} must match the file name ({board})")
    if c is None:
        raise t.error("missing key [calibration]")
    calibration = Calibration(
        model=c.get("model", "str"), model_hash=c.get("model_hash", "str"),
        precisions=c.get("precisions", "strings"), kernels=c.get("kernels", "str"),
        templates=c.get("templates", "str"), date=c.get("date", "str"),
        emulator=c.get("emulator", "str"), images=c.get("images", "positive"),
        variants=c.get("variants", "positive"), error_pct=c.get("error_pct", "number"),
        holdout_error_pct=c.get("holdout_error_pct", "number"))
    c.done()
    keys = [(k.name, k.precision) for k in kernels]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice:
        raise t.error(f"[[kernel]] {twice[0]} at precision {twice[1]} is listed twice")
    return KernelCosts(name, per_inference, calibration, tuple(kernels), path, shown)


# ----------------------------------------------------------------------------- loading

def board_names(directory: Path = BOARDS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def soc_names(directory: Path = BOARDS_DIR) -> list[str]:
    return sorted({p.stem for d in (directory, SHIPPED_DIR) for p in (d / "soc").glob("*.toml")})


def load_board(name: str, directory: Path = BOARDS_DIR) -> Board:
    directory = Path(directory)
    path = directory / f"{name}.toml"
    if not path.is_file():
        raise SvtError(f"unknown board {name!r}; valid boards: {', '.join(board_names(directory))}")
    shown, data = _read_toml(path)
    t = _Table(shown, "", data)
    board_name = t.get("name", "str")
    top = {"mcu": t.get("mcu", "str"), "core": t.get("core", "str"),
           "fpu": t.get("fpu", "str"), "float_abi": t.get("float_abi", "str"),
           "clock_hz": t.get("clock_hz", "int"), "reserve_flash": t.get("reserve_flash", "int"),
           "reserve_sram": t.get("reserve_sram", "int")}
    soc = t.get("soc", "str", None)
    tables = {key: t.table(key) for key in ("uart", "flashing", "firmware", "emulator")}
    inline = next((key for key in ("flash", "sram") if key in data), None)
    if inline:
        raise t.error(f"unknown key {inline}: a board's memory map goes in soc/SOC.toml, "
                      'named by soc = "SOC" (see boards/soc/stm32h743.toml)')
    t.done()
    if board_name != name:
        raise t.error(f"name {board_name!r} must match the file name ({name})")
    if soc is None and any(tables[k] for k in ("uart", "firmware", "emulator")):
        raise t.error("missing key soc (a board with [uart], [firmware] or [emulator] needs "
                      "its SoC's memory map)")
    flash: tuple[Region, ...] = ()
    sram: tuple[Region, ...] = ()
    if soc is not None:
        flash, sram = load_soc(soc, directory, board_file=shown)
    uart = None if tables["uart"] is None else _uart(tables["uart"])
    flashing = _flashing(tables["flashing"])
    firmware = _firmware(tables["firmware"])
    emulator = _emulator(tables["emulator"], uart, sram)
    cost_file = costs_path(name, directory)
    costs = load_costs(cost_file, name) if cost_file.is_file() else None
    return Board(name=board_name, soc=soc, flash=flash, sram=sram, uart=uart,
                 flashing=flashing, firmware=firmware, emulator=emulator, costs=costs,
                 path=path, **top)


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
