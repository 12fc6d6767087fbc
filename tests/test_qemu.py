"""The firmware on QEMU: mps2-an500 for stm32h7, netduinoplus2 for stm32f405. Predictions
against the host C build, the instruction counter, idempotent replays, a corrupting
line, and a QEMU that never answers."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
from conftest import run_cli

from svt_deploy.boards import load_board
from svt_deploy.data import load_dataset
from svt_deploy.errors import SvtError
from svt_deploy.firmware import build_firmware, generate_firmware
from svt_deploy.hostemu import build_host, run_host
from svt_deploy.ir import extract_ir
from svt_deploy.loading import load_model
from svt_deploy.memory import plan_memory
from svt_deploy.profiling import plan_steps
from svt_deploy.qemu import FaultyProxy, QemuDevice, free_port, qemu_command
from svt_deploy.serial_link import EXIT, INFER, INFO, REPLY, STATS, FrameDecoder, encode_frame

pytestmark = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
    reason="qemu-system-arm and arm-none-eabi-gcc are needed")

BOARDS = ("stm32h7", "stm32f405", "nucleo-f446re", "lm3s6965")
IMAGES = 12


@pytest.fixture(scope="module")
def qemu_builds(tiny_reference, tmp_path_factory):
    """The trained tiny model as QEMU firmware for both boards, the host build's scores
    for the first test images, and those images."""
    ckpt, data = tiny_reference
    loaded, ds = load_model(weights=ckpt), load_dataset(data)
    ir = extract_ir(loaded.model, ds.input_shape)
    plan = plan_memory(ir)
    builds = {}
    for name in BOARDS:
        board = load_board(name)
        project = tmp_path_factory.mktemp(name) / "project"
        generate_firmware(ir, plan, board, project, str(ckpt))
        builds[name] = (board, build_firmware(project, board, emulated=True).elf)
    x = ds.as_tensor(ds.x_test[:IMAGES]).numpy()
    host, _ = run_host(build_host(project), x, ir.num_classes, workers=1)
    return builds, x, host


@pytest.mark.parametrize("name", BOARDS)
def test_run_qemu_predicts_what_the_host_build_predicts(tiny_reference, tmp_path, name):
    ckpt, data = tiny_reference
    proc = run_cli("run-qemu", "--board", name, "--weights", str(ckpt), "--data", str(data),
                   "--samples", "8", "--out", str(tmp_path / "fw"), "--json", "-q", check=True)
    r = json.loads(proc.stdout)
    assert r["samples"] == 8 and r["emulated"] and r["board"] == name
    assert r["agreement_host"] == 1.0 and r["identical_to_host"] and r["max_abs_diff_host"] == 0
    assert r["accuracy"] == r["host_accuracy"] and r["agreement_torch"] >= 0.875
    assert r["instructions_mean"] > 1e6 and r["cycles_mean"] is None
    assert r["link"]["retries"] == 0 and r["device_stats"]["inferences"] == 8


@pytest.mark.parametrize("name", BOARDS)
def test_counter_converts_to_instructions_and_repeats(qemu_builds, name):
    builds, x, host = qemu_builds
    board, elf = builds[name]
    with QemuDevice(elf, board) as dev:
        info, link = dev.info, dev.link
        # a loop of n x (subs, bne) is 2n instructions, plus a few around it
        for n in (10_000, 1_000_000):
            counts = {link.calibrate(n) for _ in range(3)}
            assert len(counts) == 1, counts  # exactly repeatable
            assert 2 * n <= info.instructions(counts.pop()) <= 2 * n + 200
        # exactly repeatable under -icount: the count starts at a fixed instruction after a
        # SysTick interrupt (svt_counter_align), so the interrupts inside it fall at the
        # same instructions whatever the host's I/O timing (the pauses vary that timing; a
        # 3-instruction wait loop gave one image in a dozen a count one clock off)
        pause = random.Random(0)
        runs = {i: [] for i in range(len(x))}
        for _ in range(3):
            for i in runs:
                time.sleep(pause.random() * 0.013)
                runs[i].append(link.infer(x[i], info))
        assert all(np.array_equal(r.scores, host[i]) for i in runs for r in runs[i])
        assert all(len({r.counter for r in runs[i]}) == 1 for i in runs), runs
        # PROFILE: the last inference's cost per model step adds up to its count, less
        # the return from the last step (the per-step deltas telescope)
        steps = link.profile()
        assert len(steps) == len(plan_steps(elf.parents[2])) and all(s > 0 for s in steps)
        assert 0 <= info.instructions(runs[len(x) - 1][-1].counter - sum(steps)) <= 100
    assert dev.exit_code == 0  # stopped through the firmware's semihosting exit


def test_device_scores_do_not_depend_on_the_order_of_the_images(qemu_builds):
    """The firmware keeps no state between inferences: any order, the host build's scores."""
    builds, x, host = qemu_builds
    board, elf = builds["stm32h7"]
    order = np.random.default_rng(2).permutation(len(x))
    with QemuDevice(elf, board) as dev:
        scores = [dev.link.infer(x[i], dev.info).scores for i in order]
    np.testing.assert_array_equal(np.stack(scores), host[order])


def test_repeated_request_is_answered_without_running_again(qemu_builds):
    builds, x, _ = qemu_builds
    board, elf = builds["stm32f405"]
    with QemuDevice(elf, board) as dev:
        frame = encode_frame(INFER, 77, x[1].astype("<f4").tobytes())
        replies = []
        for _ in range(2):
            dev.port.write(frame)
            decoder = FrameDecoder()
            while True:
                decoder.feed(dev.port.read(1))
                event = decoder.next()
                if event is not None and event.type == INFER | REPLY:
                    replies.append(event)
                    break
        assert replies[0] == replies[1]
        stats = dev.link.device_stats()
        assert stats["inferences"] == 1 and stats["replays"] == 1


def test_empty_requests_with_a_payload_are_refused(qemu_builds):
    """INFO, STATS and EXIT carry no payload (protocol.h): one with a payload is refused
    with ERROR (a wrong length, like INFER's and CALIBRATE's), not served."""
    builds, _, _ = qemu_builds
    board, elf = builds["stm32f405"]
    with QemuDevice(elf, board) as dev:
        for msg in (INFO, STATS, EXIT):
            with pytest.raises(SvtError, match="wrong payload length"):
                dev.link.request(msg, b"\x00")
        assert dev.link.info().board == "stm32f405"  # EXIT with a payload did not stop it
        assert dev.link.device_stats()["errors"] == 3
    assert dev.exit_code == 0


def test_request_right_behind_a_damaged_frame_is_answered_promptly(qemu_builds):
    """A frame cut short (or failing its CRC) swallows the clean request sent right behind
    it, and the device NAKs it with the cut frame's seq. The host resends at once instead
    of waiting out its 2 s timeout."""
    builds, _, _ = qemu_builds
    board, elf = builds["stm32h7"]
    with QemuDevice(elf, board, timeout=2.0) as dev:
        image = bytes(4 * dev.info.input_size)
        cut_short = encode_frame(INFER, 200, image)[:100]  # NAKed after 200 ms of silence
        bad_crc = encode_frame(INFO, 201)[:-3]  # the request's first 3 bytes complete it
        for damaged in (cut_short, bad_crc):
            dev.port.write(damaged)
            start = time.monotonic()
            assert dev.link.info().board == "stm32h7"
            assert time.monotonic() - start < 1.0
        assert dev.link.stats.naks == 2 and dev.link.stats.timeouts == 0
        stats = dev.link.device_stats()
        assert stats["rx_timeouts"] == 1 and stats["bad_crc"] == 1


def test_corrupted_line_every_damaged_frame_is_detected(qemu_builds):
    """A proxy flips and drops bytes both ways. Every prediction still equals the host
    build's, bit for bit; no damaged frame was accepted on either side; every resend had
    a detected cause; each image ran exactly once on the device."""
    builds, x, host = qemu_builds
    board, elf = builds["stm32h7"]
    proxy = FaultyProxy(down_rate=1e-4, up_rate=5e-3, drop_fraction=0.3, seed=3)
    try:
        with QemuDevice(elf, board, proxy=proxy, retries=12) as dev:
            link, info = dev.link, dev.info
            link.record = True
            for i in range(IMAGES):
                result = link.infer(x[i], info)
                assert np.array_equal(result.scores, host[i]), f"image {i}"
                assert result.label == int(np.argmax(host[i]))
            proxy.down.rate = proxy.up.rate = 0.0  # read the counters over a clean line
            stats = link.device_stats()
            intact_requests = len(proxy.down.intact)
        down, up = proxy.down.damaged, proxy.up.damaged
        assert down and up, "the proxy must damage frames in both directions"
        # device side: it accepted exactly the requests that arrived intact
        assert stats["frames_ok"] == intact_requests
        assert stats["inferences"] == IMAGES  # resends were answered from the saved reply
        damaged_results = sum(f["type"] == INFER | REPLY for f in up)
        assert stats["replays"] >= damaged_results
        # host side: every accepted frame is one the device sent, undamaged
        intact_replies = {f["bytes"] for f in proxy.up.intact}
        assert link.accepted and all(frame in intact_replies for frame in link.accepted)
        s = link.stats
        assert s.retries >= len(down)
        assert s.retries + s.late_replies == s.timeouts + s.damaged_replies + s.naks
    finally:
        proxy.close()


def test_qemu_that_never_answers_fails_in_one_line(qemu_builds, tmp_path):
    """Hardware firmware on the emulator: its arena lies in the F405's CCM, which QEMU
    does not model, so it never answers. QEMU is stopped afterwards."""
    builds, _, _ = qemu_builds
    board = load_board("stm32f405")
    project = builds["stm32f405"][1].parent.parent.parent
    elf = build_firmware(project, board, emulated=False).elf
    dev = QemuDevice(elf, board, timeout=0.3, handshake_attempts=2)
    with pytest.raises(SvtError) as e, dev:
        pass
    assert "after 2 tries" in str(e.value) and "\n" not in str(e.value)
    assert dev.proc.poll() is not None


def test_validate_command_over_a_serial_url(tiny_reference, qemu_builds):
    """`svt-deploy validate` (meant for a board on /dev/ttyACM0) accepts any pyserial URL:
    here the TCP serial port of QEMU started as `make run-qemu` would start it."""
    ckpt, data = tiny_reference
    builds, _, _ = qemu_builds
    board, elf = builds["stm32f405"]
    port = free_port()
    qemu = subprocess.Popen(qemu_command(board, elf, port), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # until QEMU listens (this first client just starts the guest)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        proc = run_cli("validate", "--port", f"socket://127.0.0.1:{port}", "--board",
                       "stm32f405", "--weights", str(ckpt), "--data", str(data), "--samples",
                       "5", "--dir", str(elf.parent.parent.parent), "--json", "-q", check=True)
    finally:
        qemu.terminate()
        qemu.wait(timeout=10)
    r = json.loads(proc.stdout)
    assert r["board"] == "stm32f405" and r["emulated"] and r["samples"] == 5
    assert r["agreement_host"] == 1.0 and r["identical_to_host"]
