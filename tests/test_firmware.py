"""Firmware generation, cross-builds and the fit check (arm-none-eabi-gcc), and the flash
command lines (with fake tools)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from svt_deploy.boards import load_board
from svt_deploy.errors import SvtError
from svt_deploy.firmware import (
    build_firmware,
    firmware_files,
    generate_firmware,
    map_output_sections,
    parse_memory_usage,
    parse_overflows,
    qemu_variant,
)
from svt_deploy.flashing import flash
from svt_deploy.ir import extract_ir
from svt_deploy.manifest import read_manifest
from svt_deploy.memory import plan_memory
from svt_deploy.model import SpikingViT, SViTConfig
from svt_deploy.tools import require_cross_toolchain, require_tool

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed")


@pytest.fixture(scope="module")
def tiny_ir():
    torch.manual_seed(0)
    model = SpikingViT(SViTConfig.reference(embed_dim=32, depth=1, heads=4, mlp_ratio=2,
                                            pool_after=[1, 2])).eval()
    ir = extract_ir(model, (1, 28, 28))
    return ir, plan_memory(ir)


@pytest.fixture(scope="module")
def built(tiny_ir, tmp_path_factory):
    """{board: (project dir, {emulated: FirmwareBuild})} for both emulated boards."""
    ir, plan = tiny_ir
    out = {}
    for name in ("stm32h7", "stm32f405"):
        board = load_board(name)
        project = tmp_path_factory.mktemp(name) / "project"
        generate_firmware(ir, plan, board, project, "tiny test model")
        out[name] = (project, {emu: build_firmware(project, board, emulated=emu)
                               for emu in (False, True)})
    return out


@needs_arm
@pytest.mark.parametrize("name", ["stm32h7", "stm32f405"])
def test_firmware_builds_with_werror_and_matches_the_memory_model(built, tiny_ir, name):
    _, plan = tiny_ir
    _, builds = built[name]
    board = load_board(name)
    for b in builds.values():
        log = (b.directory / "build.log").read_text()
        assert "-Werror" in log and "-ffp-contract=off" in log
        assert f"-mcpu={board.core}" in log and f"-mfpu={board.fpu}" in log
        assert "-mfloat-abi=hard" in log and "nano.specs" in log
        for f in (b.elf, b.bin, b.hex, b.map):
            assert f.is_file() and f.stat().st_size > 0
        # the linker's bytes are the memory model's bytes
        assert b.weight_bytes == plan.weight_bytes and b.arena_bytes == plan.arena_bytes
        mapped = map_output_sections(b.map.read_text())
        assert mapped[".svt_weights"][1] == plan.weight_bytes
        assert mapped[".svt_arena"][1] == plan.arena_bytes
        flash_use = b.region("FLASH")
        assert plan.weight_bytes < flash_use.used < plan.weight_bytes + 16384  # + code
        assert b.region(b.arena_region).used >= plan.arena_bytes
        # .bin is the flash image: vectors, code, weights, .data; never the NOLOAD arena
        assert b.bin.stat().st_size <= flash_use.used
    # the arena goes to the smallest data region that holds it; QEMU builds only use the
    # regions the machine models
    assert builds[False].arena_region == {"stm32h7": "SRAM3", "stm32f405": "CCM"}[name]
    assert builds[True].arena_region == {"stm32h7": "SRAM3", "stm32f405": "SRAM"}[name]


@needs_arm
@pytest.mark.parametrize("name", ["stm32h7", "stm32f405"])
def test_the_board_build_is_recorded_in_the_manifest(built, tiny_ir, name):
    """The firmware stage adds what the linker made (FirmwareFacts) to the project's
    manifest; the emulator's build does not replace the board's."""
    _, plan = tiny_ir
    project, builds = built[name]
    hw = builds[False]
    facts = read_manifest(project).firmware
    assert facts is not None and facts.board == name and facts.fits
    assert facts.elf == "firmware/build/svt_firmware.elf" and (project / facts.elf).is_file()
    assert facts.weight_bytes == plan.weight_bytes and facts.arena_bytes == plan.arena_bytes
    assert facts.regions == {r.name: {"used": r.used, "size": r.size} for r in hw.regions}
    assert facts.flash_used == hw.region("FLASH").used
    assert facts.sram_used == sum(r.used for r in hw.regions if r.name != "FLASH")
    assert facts.text + facts.data == facts.flash_used  # .data's image is in flash too
    # placement: where the linker put each section, by address, in the map's regions
    assert facts.placement[".svt_weights"] == facts.placement[".text"] == "FLASH"
    assert facts.placement[".svt_arena"] == hw.arena_region
    system = {"stm32h7": "DTCM", "stm32f405": "SRAM"}[name]
    assert facts.placement[".bss"] == facts.placement[".stack"] == system
    assert builds[True].facts.placement[".svt_arena"] == builds[True].arena_region


@needs_arm
def test_qemu_build_links_the_h7_sizes_at_mps2_addresses(built):
    project, builds = built["stm32h7"]
    script = (project / "firmware" / "linker_qemu.ld").read_text()
    assert re.search(r"FLASH\s+\(rx\) : ORIGIN = 0x00000000, LENGTH = 2097152", script)
    assert re.search(r"DTCM\s+\(rwx\) : ORIGIN = 0x20000000, LENGTH = 131072", script)
    assert re.search(r"AXI_SRAM\s+\(rwx\) : ORIGIN = 0x20020000, LENGTH = 524288", script)
    assert "ITCM" not in script  # code-only: never a data region
    board_script = (project / "firmware" / "linker_board.ld").read_text()
    assert re.search(r"AXI_SRAM\s+\(rwx\) : ORIGIN = 0x24000000", board_script)
    sections = builds[True].sections
    assert sections[".isr_vector"][1] == 0 and 0x200E0000 <= sections[".svt_arena"][1]
    f4 = qemu_variant(load_board("stm32f405"), 1024, 784)
    assert [r.name for r in f4.regions] == ["FLASH", "SRAM"]  # no CCM in QEMU
    # on the H7 itself the D2 SRAMs (SRAM1-3, where this arena lives) are clocked at reset
    config = (project / "firmware" / "board_config.h").read_text()
    hardware = config.split("#if SVT_EMULATED\n/* ----")[0]
    assert "{ 0x580244DCu, 0xE0000000u }" in hardware


@needs_arm
def test_generated_project_rebuilds_with_make_alone(built, tmp_path):
    project, _ = built["stm32f405"]
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("build*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = "/usr/bin:/bin"  # no svt-deploy, no venv
    for target, out in (("firmware", "build"), ("firmware-qemu", "build-qemu")):
        proc = subprocess.run(["make", "-C", str(copy), target], capture_output=True,
                              text=True, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        assert (copy / "firmware" / out / "svt_firmware.elf").is_file()
        assert (copy / "firmware" / out / "svt_firmware.hex").is_file()


def _small_board(tmp_path: Path, flash_kb: int, sram_kb: int) -> Path:
    """A copy of stm32f405.toml on a copy of its SoC with smaller regions: a board the model
    is too big for."""
    board = load_board("stm32f405")
    text = Path(board.path).read_text().replace('name = "stm32f405"', 'name = "tiny-f405"')
    text = text.replace('soc = "stm32f405"', 'soc = "tiny-f405"')
    soc = (Path(board.path).parent / "soc" / "stm32f405.toml").read_text()
    soc = soc.replace('name = "stm32f405"', 'name = "tiny-f405"')
    soc = re.sub(r'(name = "FLASH"\nbase = 0x08000000\nsize = )\d+', rf"\g<1>{flash_kb * 1024}",
                 soc)
    soc = re.sub(r'(name = "SRAM"\nbase = 0x20000000\nsize = )\d+', rf"\g<1>{sram_kb * 1024}",
                 soc)
    directory = tmp_path / "boards"
    (directory / "soc").mkdir(parents=True, exist_ok=True)
    (directory / "tiny-f405.toml").write_text(text)
    (directory / "soc" / "tiny-f405.toml").write_text(soc)
    return directory


@needs_arm
def test_too_large_model_is_refused_with_the_overflow_in_bytes(built, tiny_ir, tmp_path):
    ir, plan = tiny_ir
    # the same model and core on the real F405 tells how much flash the image needs
    needed = built["stm32f405"][1][False].region("FLASH").used
    board = load_board("tiny-f405", _small_board(tmp_path, flash_kb=64, sram_kb=128))
    generate_firmware(ir, plan, board, tmp_path / "p", "tiny")
    with pytest.raises(SvtError) as e:
        build_firmware(tmp_path / "p", board)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"region FLASH (64 KB: weights {plan.weight_bytes:,} B) overflows by " \
           f"{needed - 65536:,} bytes" in msg


@needs_arm
def test_arena_too_large_for_sram_is_refused(tiny_ir, tmp_path):
    ir, plan = tiny_ir
    board = load_board("tiny-f405", _small_board(tmp_path, flash_kb=1024, sram_kb=16))
    generate_firmware(ir, plan, board, tmp_path / "p", "tiny")
    with pytest.raises(SvtError, match=r"region SRAM \(16 KB: arena 10,944 B \+ data and "
                                       r"stack\) overflows by [\d,]+ bytes"):
        build_firmware(tmp_path / "p", board, emulated=True)  # QEMU: SRAM only, no CCM


def test_linker_output_parsing():
    text = ("Memory region         Used Size  Region Size  %age Used\n"
            "           FLASH:      104908 B         2 MB      5.00%\n"
            "            DTCM:         12 KB       128 KB      9.38%\n"
            "           SRAM1:          0 GB       128 KB      0.00%\n")
    assert [(r.name, r.used, r.size) for r in parse_memory_usage(text)] == [
        ("FLASH", 104908, 2 * 1024 * 1024), ("DTCM", 12 * 1024, 128 * 1024),
        ("SRAM1", 0, 128 * 1024)]
    assert parse_overflows("ld: region `FLASH' overflowed by 477868 bytes\n"
                           "ld: region `AXI_SRAM' overflowed by 12 bytes") == {
        "FLASH": 477868, "AXI_SRAM": 12}


def test_unsupported_uart_driver_is_refused():
    with pytest.raises(SvtError, match="nrf_uarte"):
        firmware_files(load_board("nrf52840"), 1024, 784)


def test_missing_toolchain_names_the_apt_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SvtError, match="apt-get install (make|gcc-arm-none-eabi)"):
        require_cross_toolchain()
    with pytest.raises(SvtError, match=r"^arm-none-eabi-size not found; install it with: "
                                       r"sudo apt-get install binutils-arm-none-eabi$"):
        require_tool("arm-none-eabi-size")
    from svt_deploy.qemu import QemuDevice
    with pytest.raises(SvtError, match="apt-get install qemu-system-arm"):
        QemuDevice("x.elf", load_board("stm32h7")).start()


# ----------------------------------------------------------------------------- flashing

def _fake_tools(directory: Path, names: list[str]) -> Path:
    """Executables that record their arguments (one per line) and succeed."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        exe = directory / name
        exe.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{directory}/{name}.args"\n')
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return directory


@needs_arm
def test_flash_commands_for_each_tool(built, tmp_path):
    project, _ = built["stm32h7"]
    board = load_board("stm32h7")
    tools = _fake_tools(tmp_path / "bin", ["openocd", "st-flash", "pyocd"])

    def which(name):
        path = tools / name
        return str(path) if path.exists() else None

    fw = project / "firmware" / "build"
    assert flash(board, project, which=which)[1:] == [  # the board file's first choice
        "-f", "interface/stlink.cfg", "-f", "target/stm32h7x.cfg",
        "-c", f"program {{{(fw / 'svt_firmware.elf').as_posix()}}} verify reset exit"]
    assert (tools / "openocd.args").read_text().splitlines()[-1].startswith("program {")
    assert flash(board, project, tool="st-flash", which=which)[1:] == [
        "--reset", "write", str(fw / "svt_firmware.bin"), "0x08000000"]
    assert flash(board, project, tool="pyocd", which=which)[1:] == [
        "flash", "--target", "stm32h743zitx", str(fw / "svt_firmware.hex")]
    assert (tools / "pyocd.args").read_text().splitlines() == [
        "flash", "--target", "stm32h743zitx", str(fw / "svt_firmware.hex")]


@needs_arm
def test_flash_cli_uses_the_first_installed_tool_and_fails_in_one_line(built, tmp_path):
    project, _ = built["stm32f405"]
    tools = _fake_tools(tmp_path / "bin", ["pyocd"])  # only the board's third choice
    env_path = f"{tools}:{os.environ['PATH']}"
    proc = subprocess.run([sys.executable, "-m", "svt_deploy.cli", "flash", "--board",
                           "stm32f405", "--dir", str(project)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "PATH": env_path}, check=False)
    if shutil.which("openocd") or shutil.which("st-flash"):
        pytest.skip("a real flashing tool is installed here")
    assert proc.returncode == 0, proc.stderr
    assert "flashed:" in proc.stdout and "--target stm32f405rg" in proc.stdout
    assert (tools / "pyocd.args").is_file()
    # no tool at all, and no build: one-line errors
    proc = run_cli("flash", "--board", "stm32f405", "--dir", str(project), "--tool", "openocd")
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert "apt-get install openocd" in proc.stderr
    proc = run_cli("flash", "--board", "stm32h7", "--dir", str(tmp_path / "nothing"))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert "svt-deploy firmware --board stm32h7" in proc.stderr
