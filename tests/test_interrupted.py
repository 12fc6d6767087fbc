"""Interrupted runs (issue 14): a deploy killed with SIGKILL during pruning, or during the
device check on QEMU, then run again with the same command, gives the report an
uninterrupted run gives, leaves no partial file that looks like a result, and leaves no
emulator running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli

pytestmark = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")
         and Path("/proc/self/stat").is_file()),
    reason="qemu-system-arm, arm-none-eabi-gcc and Linux /proc are needed")

# smaller than test_deploy's FAST: the reference run and each rerun are whole deploys
SMALL = ["--test-samples", "200", "--host-samples", "100", "--device-samples", "5",
         "--profile-samples", "150", "--check-samples", "300",
         "--precision", "fp32"]  # prune (and be killed while profiling), do not quantize
# what may differ between two runs of one command: how long stages took, what was reused
# (and so how many validation passes this run made: cached sensitivity cells are not
# measured again, by design, tests/test_prune.py), and the command line itself (its --out)
# timings, and the serial link's retry counts (a loaded machine can make a reply late)
VOLATILE = {"timings_s", "reused_stages", "command", "seconds", "seconds_per_image",
            "stage_seconds", "evaluations", "link"}
SECONDS = 300  # longest wait for a stage to be reached


def _args(published_trained, out: Path) -> list[str]:
    model_def, weights, data = published_trained
    return ["--board", "stm32h7", "--max-drop", "8", "--max-reduction", "15", "--model-def",
            model_def, "--weights", str(weights), "--data", str(data), "--out", str(out),
            *SMALL]


def _comparable(out: Path) -> dict:
    """report.json without timings, reuse flags and the output directory's name."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
        return [strip(x) for x in v] if isinstance(v, list) else v
    return strip(json.loads((out / "report.json").read_text().replace(str(out), "OUT")))


def _children(pid: int) -> dict[int, str]:
    """{pid: command name} of the live children of ``pid``."""
    found = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text() if d.name.isdigit() else ""
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in "ZX":
            found[int(d.name)] = stat[stat.find("(") + 1:stat.rfind(")")]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] not in "ZX"
    except OSError:
        return False


def _kill_when(args: list[str], log: Path, reached) -> dict[int, str]:
    """Start the deploy, SIGKILL it (it alone, as the OOM killer would) as soon as
    ``reached(pid)`` holds; returns its children at that moment."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "svt_deploy", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + SECONDS
        while not reached(proc.pid):
            assert proc.poll() is None, f"it ended first:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.02)
        children = _children(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return children


def _no_partial_results(out: Path) -> None:
    """Nothing that looks like a result is left half-written: no report, and every .json
    and .pt left parses; temp files (dot-prefixed or *.tmp) are allowed."""
    assert not (out / "report.json").exists() and not (out / "report.md").exists()
    for path in out.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".tmp":
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(published_trained, tmp_path_factory) -> dict:
    """One uninterrupted run: its out directory and comparable report."""
    out = tmp_path_factory.mktemp("reference") / "h7"
    run_cli(*_args(published_trained, out), check=True)
    return {"out": out, "report": _comparable(out)}


def test_killed_during_pruning_then_rerun(published_trained, reference, tmp_path):
    out = tmp_path / "h7"
    cells = out / ".cache"

    def profiling(_pid):  # a few of the sensitivity cache's cells are written
        return len(list(cells.glob("sensitivity-*.cells/*.json"))) >= 2

    _kill_when(_args(published_trained, out), tmp_path / "killed.log", profiling)
    assert "profiling sensitivity" in (tmp_path / "killed.log").read_text()
    _no_partial_results(out)
    assert not (out / "pruned_model.pt").exists() and not (out / "prune_plan.json").exists()
    assert not (out / ".stages" / "prune.json").exists()

    run_cli(*_args(published_trained, out), check=True)
    assert _comparable(out) == reference["report"]
    reused = json.loads((out / "report.json").read_text())["reused_stages"]
    assert reused == ["baseline"]  # the finished stage is kept, the killed one rerun


def test_killed_during_device_check_then_rerun(published_trained, reference, tmp_path):
    """The out directory as a run leaves it before its firmware stage (a copy of the
    reference's, less what the firmware and device stages and the report wrote), the
    deploy killed while its QEMU runs, then run again."""
    out = tmp_path / "h7"
    shutil.copytree(reference["out"], out, ignore=shutil.ignore_patterns(
        "firmware.json", "device.json", "build-qemu", "report.*", "*.png"))

    def on_qemu(pid):
        return "qemu-system-arm" in _children(pid).values()

    children = _kill_when(_args(published_trained, out), tmp_path / "killed.log", on_qemu)
    assert "validating on QEMU" in (tmp_path / "killed.log").read_text()
    _no_partial_results(out)
    assert not (out / ".stages" / "device.json").exists()
    # its emulator does not outlive it (svt_deploy.qemu.dies_with_us)
    qemu = [pid for pid, name in children.items() if name == "qemu-system-arm"]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in qemu) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu and not any(_alive(pid) for pid in qemu)

    run_cli(*_args(published_trained, out), check=True)
    assert _comparable(out) == reference["report"]
    reused = json.loads((out / "report.json").read_text())["reused_stages"]
    assert reused == ["baseline", "prune", "generate", "host_emulation", "firmware"]
