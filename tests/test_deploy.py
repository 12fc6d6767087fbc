"""The one-command pipeline: a full run on tiny models, cache reuse, and every error path."""

import json
import os
import shutil
import stat

import pytest

from conftest import OFFICIAL_PER_STEP_DEF, run_cli

REPORT_KEYS = {"board", "baseline", "pruned", "finetuned", "budget", "layers", "firmware",
               "host_emulation", "device", "timings_s"}
FAST = ["--host-samples", "300", "--device-samples", "5", "--profile-samples", "300",
        "--check-samples", "600"]


@pytest.fixture(scope="module")
def deployed(published_trained, tmp_path_factory):
    """`svt-deploy` end to end on a Spikformer written outside the repo (published layout),
    pruned with --max-reduction: returns (args, out_dir, first run's CompletedProcess)."""
    model_def, weights, data = published_trained
    out = tmp_path_factory.mktemp("deploy") / "h7"
    args = ["--board", "stm32h7", "--max-drop", "8", "--max-reduction", "15", "--model-def",
            model_def, "--weights", str(weights), "--data", str(data), "--out", str(out), *FAST]
    return args, out, run_cli(*args)


def test_third_party_model_end_to_end_with_max_reduction(deployed):
    _, out, proc = deployed
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    for key in ("baseline", "pruned"):
        assert {"accuracy", "params", "flash_bytes", "sram_bytes"} <= set(report[key])
        assert 0 <= report[key]["accuracy"] <= 1
    assert report["finetuned"] is None
    assert report["pruned"]["flash_bytes"] <= 0.85 * report["baseline"]["flash_bytes"] + 4
    assert report["pruned"]["accuracy"] >= report["baseline"]["accuracy"] - 0.08 - 0.02
    assert {"name", "params_before", "params_after", "rate"} <= set(report["layers"][0])
    fw = report["firmware"]
    assert {"text", "data", "bss", "flash_used", "sram_used", "fits"} <= set(fw) and fw["fits"]
    assert fw["elf"] == "svt_stm32h7.elf"  # relative to the output directory
    # the stages told each other through the project manifest, and the report agrees with it
    manifest = json.loads((out / "firmware_project" / "manifest.json").read_text())
    assert manifest["firmware"]["board"] == "stm32h7" and manifest["firmware"]["fits"]
    assert manifest["firmware"]["placement"][".svt_arena"] == fw["arena_region"]
    assert report["pruned"]["flash_bytes"] == manifest["model"]["weight_bytes"]
    assert report["pruned"]["sram_bytes"] == manifest["model"]["arena_bytes"]
    host = report["host_emulation"]
    assert host["samples"] == 300 and host["agreement"] >= 0.995
    dev = report["device"]
    assert dev["target"] == "QEMU mps2-an500" and dev["samples"] == 5
    assert dev["agreement"] == 1.0 and dev["instructions_per_inference"] > 1e5
    assert set(report["timings_s"]) >= {"prune", "generate", "host_emulation", "firmware",
                                        "device", "total"}
    for name in ("report.md", "memory_per_layer.png", "explored_steps.png", "pruned_model.pt",
                 "svt_stm32h7.elf", "svt_stm32h7.bin", "svt_stm32h7.hex"):
        assert (out / name).is_file(), name
    assert (out / "firmware_project" / "firmware" / "Makefile").is_file()


def test_head_per_timestep_deploys(published_trained, tmp_path):
    """The same weights with the head applied at every timestep and averaged afterwards: the
    head folds into one, and the deploy runs end to end."""
    _, weights, data = published_trained
    out = tmp_path / "per_step"
    proc = run_cli("--board", "stm32h7", "--max-drop", "8", "--max-reduction", "15",
                   "--model-def", OFFICIAL_PER_STEP_DEF, "--weights", str(weights),
                   "--data", str(data), "--out", str(out), *FAST)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["pruned"]["flash_bytes"] <= 0.85 * report["baseline"]["flash_bytes"] + 4
    assert report["host_emulation"]["agreement"] >= 0.995
    assert report["device"]["agreement"] == 1.0


def test_rerun_reuses_every_stage(deployed):
    args, out, first = deployed
    assert first.returncode == 0
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["reused_stages"]) == {"baseline", "prune", "generate", "host_emulation",
                                            "firmware", "device"}


def _fake_bin(tmp_path, tools: dict[str, str]):
    """A PATH directory holding the given tools (name -> script body, or a real path)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in tools.items():
        path = bin_dir / name
        if body.startswith("/"):
            body = f'#!/bin/sh\nexec {body} "$@"\n'
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


def _one_line_error(proc, *needles):
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("svt-deploy: error:"), proc.stderr
    for needle in needles:
        assert needle in last, last
    return last


def test_unknown_board():
    _one_line_error(run_cli("--board", "stm32h9", "--max-drop", "3"), "unknown board",
                    "stm32h7", "stm32f405")


def test_wrong_data_path(tmp_path):
    _one_line_error(run_cli("--board", "stm32h7", "--max-drop", "3", "--data",
                            str(tmp_path / "nope"), "--out", str(tmp_path / "o")),
                    "does not exist")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    _one_line_error(run_cli("--board", "stm32h7", "--max-drop", "3", "--weights", str(bad),
                            "--out", str(tmp_path / "o")), "corrupt")


def test_infeasible_budget_reports_the_best_reached(tiny_reference, tmp_path):
    ckpt, data = tiny_reference
    proc = run_cli("--board", "stm32h7", "--max-drop", "2", "--target-flash", "8KB",
                   "--weights", str(ckpt), "--data", str(data), "--out", str(tmp_path / "o"),
                   *FAST)
    assert proc.returncode == 3
    _one_line_error(proc, "cannot meet", "smallest model reached", "pt")
    assert not (tmp_path / "o" / "report.json").exists()
    assert not (tmp_path / "o" / "pruned_model.pt").exists()


@pytest.mark.parametrize("missing,package", [("gcc", "gcc"),
                                             ("arm-none-eabi-gcc", "gcc-arm-none-eabi"),
                                             ("qemu-system-arm", "qemu-system-arm")])
def test_missing_toolchain_names_the_apt_package(tmp_path, missing, package):
    tools = {name: shutil.which(name) for name in
             ("gcc", "make", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-objcopy",
              "qemu-system-arm")}
    del tools[missing]
    path = _fake_bin(tmp_path, tools)
    env = {"PATH": path}
    proc = run_cli_env(env, "--board", "stm32h7", "--max-drop", "3", "--out",
                       str(tmp_path / "o"))
    _one_line_error(proc, f"{missing} not found", f"apt-get install {package}")


def run_cli_env(env, *args):
    import subprocess
    import sys
    from conftest import REPO
    return subprocess.run([sys.executable, "-m", "svt_deploy", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO,
                          env={**os.environ, **env, "PYTHONWARNINGS": "ignore"})


SILENT_QEMU = """#!{python}
# Stands in for qemu-system-arm: opens the serial port, then never says a word.
import re, socket, sys, time
port = int(re.search(r"tcp:127.0.0.1:(\\d+)", " ".join(sys.argv)).group(1))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(1)
conn, _ = srv.accept()
while conn.recv(4096):
    pass
time.sleep(60)
"""


def test_qemu_not_answering_fails_after_bounded_retries(deployed, tmp_path):
    import sys
    args, out, first = deployed
    assert first.returncode == 0
    (out / ".stages" / "device.json").unlink()  # everything else comes from the cache
    path = _fake_bin(tmp_path, {"qemu-system-arm": SILENT_QEMU.format(python=sys.executable)})
    proc = run_cli_env({"PATH": f"{path}:{os.environ['PATH']}"}, *args)
    _one_line_error(proc, "QEMU", "answer")


def test_board_not_answering_on_its_port(deployed, tmp_path):
    import pty
    args, out, first = deployed
    master, slave = pty.openpty()  # a port with nothing behind it
    port = os.ttyname(slave)
    path = _fake_bin(tmp_path, {"st-flash": "#!/bin/sh\nexit 0\n"})
    args = [a for a in args]
    proc = run_cli_env({"PATH": f"{path}:{os.environ['PATH']}"}, *args, "--port", port,
                       "--flash-tool", "st-flash")
    os.close(master)
    os.close(slave)
    _one_line_error(proc, port)


def test_missing_port_fails_before_any_work(tmp_path):
    path = _fake_bin(tmp_path, {"st-flash": "#!/bin/sh\nexit 0\n"})
    proc = run_cli_env({"PATH": f"{path}:{os.environ['PATH']}"}, "--board", "stm32h7",
                       "--max-drop", "3", "--port", "/dev/ttyNOBOARD", "--out",
                       str(tmp_path / "o"))
    _one_line_error(proc, "/dev/ttyNOBOARD")
    assert not (tmp_path / "o").exists()
