"""The event-driven spike-fed integer kernels (events_q.c, conv2d_pixel_q.c,
linear_sums_q.c) and their dense twins (`--kernels dense`) against a NumPy reference, on
empty, full and sparse spike trains and on counts, with the host's SSE2 lane add and the
portable one; and the Cortex-M4/M7 column adds (add_column_q_dsp.c, add_lanes_q_dsp.c)
against the portable ones, on the emulated cores."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from svt_deploy.quant.packing import pack

TESTS_DIR = Path(__file__).resolve().parent
KERNELS = TESTS_DIR.parent / "firmware_templates" / "kernels"
HARNESS = TESTS_DIR / "kernels" / "event_kernels_harness.c"
FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wconversion", "-Wshadow", "-Werror"]
SHARED = ["events_q.c", "add_lanes_q.c", "add_lanes_q_sse.c", "add_column_q.c",
          "add_column_q_dsp.c"]
EVENT = ["conv2d_pixel_q.c", "linear_sums_q.c"]
# the host's SSE2 lane add, the portable one it is checked against, the dense twins
VARIANTS = {"event": (EVENT, []), "event-reference": (EVENT, ["-DSVT_REFERENCE_KERNELS"]),
            "dense": (["conv2d_pixel_dense_q.c", "linear_sums_dense_q.c"], [])}


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory) -> dict[str, Path]:
    """The harness built with each kernel style, warnings as errors, under ASan/UBSan (a
    read past an input's last byte fails the run)."""
    out = tmp_path_factory.mktemp("event_harness")
    built = {}
    for style, (files, defines) in VARIANTS.items():
        exe = out / style
        subprocess.run(["gcc", *FLAGS, *defines, "-fsanitize=address,undefined",
                        "-fno-sanitize-recover=all", "-I", str(KERNELS), "-o", str(exe),
                        str(HARNESS), *(str(KERNELS / f) for f in SHARED + files)],
                       check=True, capture_output=True)
        built[style] = exe
    return built


def _u32(*values) -> bytes:
    return np.asarray(values, "<u4").tobytes()


def _sized(data: bytes) -> bytes:
    return _u32(len(data)) + data


def _activity(rng, density: float, fmt: str, shape) -> np.ndarray:
    """[neurons, T] activity: 0/1 spikes, or counts 0..3 (a residual stream's sums)."""
    active = rng.random(shape) < density
    if fmt == "spikes":
        return active.astype(np.int64)
    return active * rng.integers(1, 4, size=shape)


def _encode(activity: np.ndarray, fmt: str) -> bytes:
    """The kernels' input formats: neuron i's T bits at bit i*T, or a byte per step."""
    if fmt == "spikes":
        return np.packbits(activity.reshape(-1).astype(np.uint8), bitorder="little").tobytes()
    return activity.reshape(-1).astype(np.uint8).tobytes()


def _weights(rng, rows: int, out_c: int, bits: int) -> np.ndarray:
    qmax = 127 if bits == 8 else 7
    return rng.integers(-qmax - 1, qmax + 1, size=(rows, out_c))


def _run(exe: Path, mode: str, payload: bytes, count: int) -> np.ndarray:
    out = subprocess.run([str(exe), mode], input=payload, capture_output=True, check=True).stdout
    return np.frombuffer(out, "<i4").reshape(count, -1)


CASES = [  # density, format, bits, T, in_c, out_c
    (0.0, "spikes", 8, 4, 16, 24),
    (1.0, "spikes", 8, 4, 16, 24),
    (0.05, "spikes", 8, 4, 16, 24),
    (0.3, "spikes", 4, 4, 5, 13),    # 20 bits a pixel: ranges off byte boundaries
    (0.2, "spikes", 8, 3, 7, 9),     # T = 3: 21 bits a pixel
    (1.0, "spikes", 4, 8, 9, 17),    # 72 bits a pixel: several words, full
    (0.0, "counts", 8, 4, 6, 10),
    (0.25, "counts", 8, 4, 6, 10),
    (1.0, "counts", 4, 2, 3, 7),
    (1.0, "spikes", 8, 4, 32, 9),    # 288 events a step: the lanes widen to int32
    (0.6, "counts", 8, 2, 40, 20),   # some steps outgrow the lanes, some do not
    (0.5, "spikes", 8, 4, 4, 3),     # out_c < 4: int32 sums throughout
]


@pytest.mark.parametrize("density,fmt,bits,steps,in_c,out_c", CASES)
def test_conv_sums_event_and_dense_match_reference(harnesses, density, fmt, bits, steps,
                                                   in_c, out_c):
    rng = np.random.default_rng(int(density * 100) + bits + steps + in_c)
    in_h, in_w, k, stride, pad = 6, 5, 3, 1, 1
    out_h, out_w = (in_h + 2 * pad - k) // stride + 1, (in_w + 2 * pad - k) // stride + 1
    act = _activity(rng, density, fmt, (in_h * in_w * in_c, steps))
    w = _weights(rng, k * k * in_c, out_c, bits)  # HWIO rows: one per (ky, kx, ci)
    payload = (_u32(steps, 0 if fmt == "spikes" else 1, bits, in_c, in_h, in_w, out_c, k,
                    stride, pad, out_h, out_w)
               + _sized(pack(w, bits).tobytes()) + _sized(_encode(act, fmt)))
    # reference: every output pixel's sums over its window, [t][out_c]
    x = np.pad(act.reshape(in_h, in_w, in_c, steps), ((pad, pad), (pad, pad), (0, 0), (0, 0)))
    wk = w.reshape(k, k, in_c, out_c)
    ref = np.stack([np.einsum("yxct,yxco->to", x[oy:oy + k, ox:ox + k], wk).reshape(-1)
                    for oy in range(out_h) for ox in range(out_w)])
    for style, exe in harnesses.items():
        got = _run(exe, "conv", payload, out_h * out_w)
        assert np.array_equal(got, ref), style
    if density == 0.0:
        assert not ref.any()
    else:
        assert ref.any()


@pytest.mark.parametrize("density,fmt,bits,steps,in_c,out_c", CASES)
def test_linear_sums_event_and_dense_match_reference(harnesses, density, fmt, bits, steps,
                                                     in_c, out_c):
    rng = np.random.default_rng(int(density * 100) + bits + steps + in_c + 1)
    tokens, in_c = 7, in_c * 3
    act = _activity(rng, density, fmt, (tokens * in_c, steps))
    w = _weights(rng, in_c, out_c, bits)
    payload = (_u32(steps, 0 if fmt == "spikes" else 1, bits, tokens, in_c, out_c)
               + _sized(pack(w, bits).tobytes()) + _sized(_encode(act, fmt)))
    ref = np.einsum("nct,co->nto", act.reshape(tokens, in_c, steps), w).reshape(tokens, -1)
    for style, exe in harnesses.items():
        assert np.array_equal(_run(exe, "linear", payload, tokens), ref), style


# ----------------------------------------------------------------------------- on the cores

ARM_FLAGS = [*FLAGS, "-ffunction-sections", "-fdata-sections", "-DSVT_EMULATED=1"]
CHECK = TESTS_DIR / "kernels" / "column_add_check.c"


def _build_check(board_name: str, out: Path) -> Path:
    """column_add_check.c linked with the board's QEMU start-up code and linker script."""
    from svt_deploy.boards import load_board
    from svt_deploy.firmware import firmware_files, qemu_variant

    board = load_board(board_name)
    for name, data in firmware_files(board, 4096, 16).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    fw = out / "firmware"
    emu = qemu_variant(board, 4096, 16)
    cpu = [f"-mcpu={board.core}", f"-mfloat-abi={board.float_abi}", "-mthumb"]
    if board.fpu != "none":
        cpu.append(f"-mfpu={board.fpu}")
    cc = ["arm-none-eabi-gcc", *cpu, *ARM_FLAGS, "-I", str(fw), "-I", str(KERNELS),
          "-include", "svt_sections.h"]
    sources = [CHECK, *(KERNELS / f for f in ("events_q.c", "add_lanes_q.c", "add_lanes_q_dsp.c",
                                              "add_column_q.c", "add_column_q_dsp.c")),
               *(fw / f for f in ("startup.c", "counter.c", "semihosting.c", "syscalls.c",
                                  "uart_ring.c", emu.uart_source))]
    objects = []
    for src in sources:
        objects.append(out / f"{src.stem}.o")
        subprocess.run([*cc, "-c", str(src), "-o", str(objects[-1])], check=True,
                       capture_output=True, cwd=fw)
    objects.append(out / "events_reference.o")  # the event path with the portable add
    subprocess.run([*cc, "-DSVT_REFERENCE_KERNELS",
                    *(f"-D{f}={f}_reference" for f in ("svt_events_begin", "svt_add_events_q",
                                                       "svt_events_end", "svt_sums_widen")),
                    "-c",
                    str(KERNELS / "events_q.c"), "-o", str(objects[-1])],
                   check=True, capture_output=True, cwd=fw)
    elf = out / "check.elf"
    subprocess.run(["arm-none-eabi-gcc", *cpu, "--specs=nano.specs", "-nostartfiles",
                    "-Wl,--gc-sections", "-T", str(fw / emu.linker_script), "-o", str(elf),
                    *map(str, objects)], check=True, capture_output=True, cwd=fw)
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], check=True,
                                 capture_output=True, text=True).stdout
    assert "sxtab16" in disassembly and "sxtab\t" in disassembly  # the DSP variants got built
    return elf


@pytest.mark.parametrize("board_name", ["stm32h7", "stm32f405"])
def test_dsp_column_add_matches_reference_on_the_core(board_name, tmp_path):
    """Cortex-M7 (mps2-an500) and Cortex-M4 (netduinoplus2)."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("needs gcc-arm-none-eabi and qemu-system-arm")
    from svt_deploy.boards import load_board

    elf = _build_check(board_name, tmp_path)
    machine = load_board(board_name).emulator.machine
    proc = subprocess.run(["qemu-system-arm", "-machine", machine, "-nographic", "-monitor",
                           "none", "-semihosting-config", "enable=on,target=native",
                           "-serial", "null", "-kernel", str(elf)],
                          capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr  # semihosting writes to stderr
    assert "DSP == reference" in output, output
    assert proc.returncode == 0
