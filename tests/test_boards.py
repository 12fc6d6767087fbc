import pytest

from conftest import run_cli
from svt_deploy.boards import board_names, load_board, parse_size
from svt_deploy.errors import SvtError

EXPECTED = {"stm32h7", "stm32f405", "nucleo-f446re", "nrf52840", "host"}


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


def test_boards_command_lists_all_five():
    out = run_cli("boards", check=True).stdout
    for name in EXPECTED:
        assert name in out
    assert "AXI_SRAM 512 KB" in out and "netduinoplus2" in out


@pytest.mark.parametrize("text,value", [("10KB", 10240), ("2MB", 2 * 1024 ** 2),
                                        ("4096", 4096), ("1.5M", 1572864), ("512KiB", 524288)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_size_rejects_garbage():
    with pytest.raises(SvtError):
        parse_size("lots")
