from pathlib import Path

import pytest
from conftest import run_cli
from svt_deploy.boards import (
    Emulator,
    FirmwareSettings,
    Flashing,
    Uart,
    all_boards,
    board_names,
    load_board,
    parse_size,
)
from svt_deploy.errors import SvtError
from svt_deploy.qemu import qemu_command
from svt_deploy.resources import BOARDS_DIR

EXPECTED = {"stm32h7", "stm32f405", "nucleo-f446re", "nrf52840", "lm3s6965", "host"}


def test_five_profiles_load_with_their_limits():
    assert set(board_names()) == EXPECTED
    h7 = load_board("stm32h7")
    assert h7.core == "cortex-m7" and h7.fpu == "fpv5-d16"
    assert h7.flash_bytes == 2 * 1024 * 1024
    regions = {r.name: (r.base, r.size) for r in h7.sram}
    assert regions["AXI_SRAM"] == (0x24000000, 512 * 1024)
    assert regions["DTCM"] == (0x20000000, 128 * 1024)
    assert h7.largest_sram.name == "AXI_SRAM"  # ITCM is code-only, never the arena
    assert h7.emulator.machine == "mps2-an500"
    f4 = load_board("stm32f405")
    assert f4.flash_bytes == 1024 * 1024 and f4.emulator.machine == "netduinoplus2"
    assert f4.largest_sram.size == 128 * 1024
    assert load_board("host").is_host and load_board("host").flash_budget is None


def test_budget_leaves_a_reserve_for_code_and_stack():
    h7 = load_board("stm32h7")
    assert h7.flash_budget == h7.flash_bytes - h7.reserve_flash > 0
    assert h7.sram_budget == 512 * 1024 - h7.reserve_sram


def test_unknown_board_is_one_line_listing_valid_names():
    with pytest.raises(SvtError) as e:
        load_board("stm32h8")
    msg = str(e.value)
    assert "\n" not in msg and all(name in msg for name in EXPECTED)
    proc = run_cli("analyze", "--board", "stm32h8")
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "valid boards" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_boards_command_lists_every_board():
    out = run_cli("boards", check=True).stdout
    for name in EXPECTED:
        assert name in out
    assert "AXI_SRAM 512 KB" in out and "netduinoplus2" in out
    lm3s = next(line for line in out.splitlines() if line.startswith("lm3s6965"))
    assert "cortex-m3 / none" in lm3s and "256 KB" in lm3s and "SRAM 64 KB" in lm3s
    assert lm3s.rstrip().endswith("lm3s6965evb")


@pytest.mark.parametrize("text,value", [("10KB", 10240), ("2MB", 2 * 1024 ** 2),
                                        ("4096", 4096), ("1.5M", 1572864), ("512KiB", 524288)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_size_rejects_garbage():
    with pytest.raises(SvtError):
        parse_size("lots")


# ----------------------------------------------------------------------------- the parser

# The memory maps as they stood in the board files before they moved to boards/soc/: the
# budgets (and so every deploy figure) rest on these numbers.
H7_REGIONS = [("FLASH", 0x08000000, 2097152, False, False),
              ("DTCM", 0x20000000, 131072, False, False),
              ("AXI_SRAM", 0x24000000, 524288, False, False),
              ("SRAM1", 0x30000000, 131072, False, False),
              ("SRAM2", 0x30020000, 131072, False, False),
              ("SRAM3", 0x30040000, 32768, False, False),
              ("SRAM4", 0x38000000, 65536, False, False),
              ("ITCM", 0x00000000, 65536, True, False)]
F405_REGIONS = [("FLASH", 0x08000000, 1048576, False, False),
                ("SRAM", 0x20000000, 131072, False, False),
                ("CCM", 0x10000000, 65536, False, True)]


def _regions(board):
    return [(r.name, r.base, r.size, r.code_only, r.no_dma) for r in board.flash + board.sram]


def test_soc_files_give_the_regions_the_boards_had():
    h7, f4 = load_board("stm32h7"), load_board("stm32f405")
    assert h7.soc == "stm32h743" and _regions(h7) == H7_REGIONS
    assert f4.soc == "stm32f405" and _regions(f4) == F405_REGIONS
    assert (h7.flash_budget, h7.sram_budget) == (2097152 - 65536, 524288 - 16384)
    assert (f4.flash_budget, f4.sram_budget) == (1048576 - 65536, 131072 - 16384)
    f446, nrf = load_board("nucleo-f446re"), load_board("nrf52840")
    assert _regions(f446) == [("FLASH", 0x08000000, 524288, False, False),
                              ("SRAM", 0x20000000, 131072, False, False)]
    assert _regions(nrf) == [("FLASH", 0x00000000, 1048576, False, False),
                             ("RAM", 0x20000000, 262144, False, False)]


def test_soc_files_are_not_boards():
    assert (BOARDS_DIR / "soc" / "stm32h743.toml").is_file()
    assert not set(board_names()) & {"stm32h743", "stm32f446", "soc"}


def test_every_shipped_board_parses_into_typed_tables():
    for board in all_boards():
        assert isinstance(board.flashing, Flashing)
        assert set(board.flashing.tools) <= {"openocd", "st-flash", "pyocd"}
        if board.is_host:
            assert board.uart is None and board.emulator is None and board.soc is None
            continue
        assert isinstance(board.uart, Uart) and board.uart.baud == 115200
        # every tool a board lists knows its target
        assert "openocd" not in board.flashing.tools or board.flashing.openocd_target
        assert "pyocd" not in board.flashing.tools or board.flashing.pyocd_target
    h7 = load_board("stm32h7")
    assert h7.uart.clock_enable == ((0x580244E0, 0x00000008), (0x580244E8, 0x00040000))
    assert h7.uart.registers == "stm32h7" and (h7.uart.tx_pin, h7.uart.irq) == ("PD8", 39)
    assert h7.firmware == FirmwareSettings(core_clock_hz=64_000_000, enable_caches=True,
                                           clock_enable=((0x580244DC, 0xE0000000),))
    assert h7.flashing.pyocd_target == "stm32h743zitx"
    emu = h7.emulator
    assert isinstance(emu, Emulator)
    assert (emu.uart_irq, emu.uart_clock_hz, emu.systick_hz) == (0, 25_000_000, 25_000_000)
    # the emulated port is the CMSDK UART, not the board's USART3
    assert (emu.uart.driver, emu.uart.base, emu.uart.irq, emu.uart.clock_hz) == (
        "cmsdk_uart", 0x40004000, 0, 25_000_000)
    f4 = load_board("stm32f405").emulator
    assert f4.regions == ("SRAM",) and f4.uart_clock_hz is None and f4.systick_hz == 168_000_000
    # the same USART1 as the board's: its pins and clock, the emulator's IRQ
    assert (f4.uart.tx_pin, f4.uart.clock_hz, f4.uart.irq) == ("PA9", 16_000_000, 37)
    assert f4.serial_index == 0
    # the F446RE on the F405 model: the board's own USART2, QEMU's second serial port
    f446 = load_board("nucleo-f446re")
    assert (f446.emulator.machine, f446.emulator.serial_index) == ("netduinoplus2", 1)
    assert (f446.emulator.uart.base, f446.emulator.uart.irq, f446.emulator.uart.tx_pin) == (
        0x40004400, 38, "PA2")
    cmd = qemu_command(f446, "fw.elf", 5555)
    assert cmd[cmd.index("-serial"):] == ["-serial", "null", "-serial",
                                          "tcp:127.0.0.1:5555,server=on,wait=on,nodelay=on"]
    nrf = load_board("nrf52840")
    assert nrf.uart.driver == "nrf_uarte" and nrf.uart.irq is None and nrf.firmware is None


def _edited(tmp_path: Path, old: str, new: str, board: str = "stm32h7") -> Path:
    """A copy of a shipped board file with one edit, in a directory of its own."""
    text = (BOARDS_DIR / f"{board}.toml").read_text()
    assert old in text
    (tmp_path / f"{board}.toml").write_text(text.replace(old, new, 1))
    return tmp_path


def _error(name: str, directory: Path) -> str:
    with pytest.raises(SvtError) as e:
        load_board(name, directory)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(directory / f"{name}.toml"))
    return msg


@pytest.mark.parametrize("old,new,expected", [
    # unknown keys, misspelt ones included, in any table and at the top
    ("baud = 115200", "baudrate = 115200", "unknown key [uart] baudrate (did you mean baud?"),
    ("systick_hz =", "systick =", "unknown key [emulator] systick "),
    ('soc = "stm32h743"', 'soc = "stm32h743"\nram_kb = 1024', "unknown key ram_kb "),
    ('[firmware]', '[firmware]\nplls = 2', "unknown key [firmware] plls "),
    # missing keys
    ("base = 0x40004800", "", "missing key [uart] base"),
    ('mcu = "STM32H743ZI"', "", "missing key mcu"),
    ("core_clock_hz = 64_000_000", "", "missing key [firmware] core_clock_hz"),
    ('tx_pin = "PD8"', "", "missing key [uart] tx_pin (driver stm32_usart needs it)"),
    ("uart_irq = 0", "", "missing key [emulator] uart_irq"),
    ('machine = "mps2-an500"', "", "missing key [emulator] machine"),
    # wrong types
    ("base = 0x40004800", 'base = "0x40004800"',
     "[uart] base must be an integer >= 0, not str '0x40004800'"),
    ("pin_af = 7", "pin_af = true", "[uart] pin_af must be an integer >= 0, not bool True"),
    ("enable_caches = true", 'enable_caches = "yes"',
     "[firmware] enable_caches must be true or false"),
    ("[0x580244E0, 0x00000008]", "[0x580244E0]",
     "[uart] clock_enable must be a list of [register, mask] integer pairs"),
    ('tools = ["openocd", "st-flash", "pyocd"]', 'tools = "openocd"',
     "[flashing] tools must be a list of strings, not str 'openocd'"),
    ("[uart]\n", "uart = 5\n[old_uart]\n", "[uart] must be a table, not int"),
    # values the schema refuses
    ('tools = ["openocd", "st-flash", "pyocd"]', 'tools = ["jlink"]',
     "[flashing] tools must list tools out of openocd, st-flash, pyocd, not 'jlink'"),
    ('sram_base = 0x20000000', 'sram_base = 0x20000000\nregions = ["ITCM"]',
     "[emulator] regions names 'ITCM', which is not a data SRAM region"),
    ('soc = "stm32h743"', 'soc = "stm32h745"', "unknown soc 'stm32h745'"),
    ('name = "stm32h7"', 'name = "stm32h8"', "name 'stm32h8' must match the file name"),
    ('soc = "stm32h743"', 'soc = "stm32h743"\n[[sram]]\nname = "X"',
     "unknown key sram: a board's memory map goes in soc/SOC.toml"),
])
def test_bad_board_file_is_one_line_naming_file_and_key(tmp_path, old, new, expected):
    msg = _error("stm32h7", _edited(tmp_path, old, new))
    assert expected in msg, msg


def test_bad_soc_file_is_one_line_naming_it_and_the_key(tmp_path):
    (tmp_path / "soc").mkdir()
    (tmp_path / "stm32h7.toml").write_text((BOARDS_DIR / "stm32h7.toml").read_text())
    soc = (BOARDS_DIR / "soc" / "stm32h743.toml").read_text()
    for old, new, expected in [
            ("size = 32768", "size = 0", "[[sram]] size (entry 5) must be an integer > 0, not 0"),
            ("code_only = true", "code_only = 1", "[[sram]] code_only (entry 7) must be true"),
            ("size = 2097152", "bytes = 2097152", "unknown key [[flash]] bytes (entry 1)"),
            ('name = "SRAM4"', 'name = "SRAM3"', "two regions are named SRAM3")]:
        assert old in soc
        (tmp_path / "soc" / "stm32h743.toml").write_text(soc.replace(old, new, 1))
        with pytest.raises(SvtError) as e:
            load_board("stm32h7", tmp_path)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(str(tmp_path / "soc" / "stm32h743.toml"))
        assert expected in msg, msg


def test_a_board_directory_of_its_own_may_use_the_shipped_socs(tmp_path):
    board = load_board("stm32f405", _edited(tmp_path, "baud = 115200", "baud = 9600",
                                            "stm32f405"))
    assert _regions(board) == F405_REGIONS and board.uart.baud == 9600
    assert board.emulator.uart.baud == 9600  # the emulator drives the same USART1


def test_shipped_board_errors_name_the_file_as_boards_slash():
    from svt_deploy import boards
    assert boards._shown(BOARDS_DIR / "stm32h7.toml") == "boards/stm32h7.toml"
    assert boards._shown(BOARDS_DIR / "soc" / "stm32h743.toml") == "boards/soc/stm32h743.toml"


def test_cli_prints_a_bad_board_file_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SVT_BOARDS_DIR", str(_edited(tmp_path, "baud = 115200", "bad = 1")))
    proc = run_cli("boards")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert f"{tmp_path / 'stm32h7.toml'}: unknown key [uart] bad" in proc.stderr
