"""torchrun fan-out of the pruning engine: the same plan as one process, cells shared out and
cached one by one (a killed rank costs only its unfinished cells), and the device option."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli

PRUNE = ["prune", "--precision", "fp32", "--max-reduction", "30", "--max-drop", "10",
         "--profile-samples", "120",
         "--check-samples", "200", "--test-samples", "200", "-q"]
# decisions, not timings or how many passes a resumed run needed
PLAN_KEYS = ("policy", "budget", "baseline", "pruned", "test", "groups", "group_steps",
             "layers", "explored", "totals")


def torchrun(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                             "2", "--standalone", "-m", "svt_deploy", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1",
                                 "PYTHONWARNINGS": "ignore"})


def decisions(out: Path) -> dict:
    plan = json.loads((out / "prune_plan.json").read_text())
    return {k: plan[k] for k in PLAN_KEYS}


@pytest.fixture(scope="module")
def one_process(tiny_reference, tmp_path_factory):
    ckpt, data = tiny_reference
    out = tmp_path_factory.mktemp("one") / "p"
    run_cli(*PRUNE, "--weights", str(ckpt), "--data", str(data), "--out", str(out),
            check=True)
    return ckpt, data, out


def test_two_ranks_make_the_one_process_plan(one_process, tmp_path):
    ckpt, data, single = one_process
    out = tmp_path / "p"
    proc = torchrun(*PRUNE, "--weights", str(ckpt), "--data", str(data), "--out", str(out))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert stdout.count("wrote ") == 1  # rank 0 speaks and writes for all
    assert decisions(out) == decisions(single)
    both = json.loads((out / "prune_plan.json").read_text())["validation"]
    assert both == json.loads((single / "prune_plan.json").read_text())["validation"]


def _workers(parent: int) -> list[int]:
    """Process ids whose parent is ``parent`` (torchrun's ranks)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            kids.append(int(stat.parent.name))
    return kids


def test_a_killed_rank_resumes_from_the_cached_cells(one_process, tmp_path):
    ckpt, data, single = one_process
    out = tmp_path / "p"
    args = (*PRUNE, "--weights", str(ckpt), "--data", str(data), "--out", str(out))
    proc = torchrun(*args)
    deadline = time.time() + 300
    cells: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        cells = sorted((out / ".cache").glob("sensitivity-*.cells/*.json"))
        if len(cells) >= 3:
            break
        time.sleep(0.2)
    assert len(cells) >= 3 and proc.poll() is None, "profiling never got under way"
    os.kill(_workers(proc.pid)[-1], signal.SIGKILL)  # one rank dies mid-profile
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (out / "prune_plan.json").exists()
    done = {p: p.stat().st_mtime_ns for p in (out / ".cache").glob("sensitivity-*.cells/*")}
    rerun = torchrun(*args)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # reused, not remeasured
    assert decisions(out) == decisions(single)


def test_device_cuda_without_a_gpu_is_one_line(tiny_reference):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    ckpt, data = tiny_reference
    proc = run_cli("evaluate", "--device", "cuda", "--weights", str(ckpt), "--data", str(data))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--device cpu" in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_evaluation_and_fine_tuning_match_the_cpu(tiny_reference):
    ckpt, data = tiny_reference
    cpu = json.loads(run_cli("evaluate", "--device", "cpu", "--weights", str(ckpt), "--data",
                             str(data), "--json", check=True).stdout)
    gpu = json.loads(run_cli("evaluate", "--device", "cuda", "--weights", str(ckpt), "--data",
                             str(data), "--json", check=True).stdout)
    assert abs(cpu["accuracy"] - gpu["accuracy"]) <= 0.004  # float order may flip an image
    from svt_deploy.data import load_dataset
    from svt_deploy.loading import load_model
    from svt_deploy.runtime import configure
    from svt_deploy.training import train_steps

    configure("cuda")
    try:
        loaded, ds = load_model(weights=ckpt), load_dataset(data)
        x, y = ds.split("train", 256)
        loss = train_steps(loaded.model, ds, x, y, epochs=1, lr=1e-4)
        assert loss == loss and next(loaded.model.parameters()).device.type == "cpu"
    finally:
        configure("cpu")


def test_evaluation_batch_size_does_not_change_the_accuracy(tiny_reference):
    ckpt, data = tiny_reference
    runs = [json.loads(run_cli("evaluate", "--batch-size", bs, "--weights", str(ckpt),
                               "--data", str(data), "--json", check=True).stdout)
            for bs in ("1", "64")]
    assert runs[0]["accuracy"] == runs[1]["accuracy"]
