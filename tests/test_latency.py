"""Latency-aware pruning (issue 13, part 4): the kernel-cost fit, the costs file beside
the board profiles, `--max-latency-ms` on a tiny model (synthetic costs, no emulator), a
calibration on QEMU that predicts the emulator's count, and one-line refusals."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from conftest import REPO, run_cli
from svt_deploy.boards import (
    COST_FEATURES,
    Calibration,
    KernelCost,
    KernelCosts,
    load_board,
    load_costs,
)
from svt_deploy.calibration import write_costs
from svt_deploy.data import load_dataset
from svt_deploy.errors import SvtError
from svt_deploy.latency import at_width, cost_key, fit_kernel, predict
from svt_deploy.loading import load_model
from svt_deploy.memory import plan_memory
from svt_deploy.prune.precision import at_precision
from svt_deploy.quant.reference import deployed_ir
from svt_deploy.resources import templates_digest

CLOCK = 480e6  # stm32h7's clock_hz: the budget is one instruction a cycle


def board_dir(tmp_path, costs: KernelCosts | None = None):
    """A board directory of its own (SVT_BOARDS_DIR): the shipped profiles, with ``costs``
    as stm32h7's kernel costs (none when None)."""
    d = tmp_path / "boards"
    shutil.copytree(REPO / "boards", d, ignore=shutil.ignore_patterns(
        "costs", "__pycache__", "*.py"))
    if costs is not None:
        write_costs(costs, d / "costs" / "stm32h7.toml")
    return d


def synthetic_costs(ir, plan, templates: str | None = None, leave_out: str | None = None
                    ) -> KernelCosts:
    """Costs for every kernel of ``plan`` (but ``leave_out``): instructions grow with the
    SOPs, so pruning any layer saves some."""
    keys = sorted({cost_key(s, ir) for s in plan.steps if s.kernel != leave_out},
                  key=lambda k: (k[0], k[1] or ""))
    coefficients = (("calls", 500.0), ("outputs", 10.0), ("sops", 1.0), ("columns", 30.0),
                    ("words", 12.0), ("macs", 0.5))
    calibration = Calibration(
        model="synthetic", model_hash="-", precisions=("int8",), kernels="event",
        templates=templates or templates_digest(), date="2026-12-05", emulator="mps2-an500",
        images=1, variants=1, error_pct=0.0, holdout_error_pct=0.0)
    return KernelCosts("stm32h7", 25.0, calibration, tuple(
        KernelCost(k, p, coefficients, 1, 10, 0.0) for k, p in keys))


@pytest.fixture(scope="module")
def tiny_int8(tiny_reference):
    """The tiny model at int8: (checkpoint, data, ir, plan, the 50 validation images the
    pruner predicts on)."""
    ckpt, data = tiny_reference
    ds = load_dataset(data)
    loaded = at_precision(load_model(weights=ckpt), "int8", ds.normalize)
    ir = deployed_ir(loaded, ds.input_shape)
    return ckpt, data, ir, plan_memory(ir), ds.as_tensor(ds.split("val", 50)[0])


def _prune(ckpt, data, out, *extra, max_drop="6"):
    return run_cli("prune", "--board", "stm32h7", "--weights", str(ckpt), "--data", str(data),
                   "--out", str(out), "--max-drop", max_drop, "--profile-samples", "300",
                   "--check-samples", "600", "--precision", "int8", *extra)


def _one_line(proc, *needles):
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), proc.stderr


# ----------------------------------------------------------------------------- the fit

def _synthetic_steps(true: dict[str, float], width: int, seed: int = 0):
    """Step measurements of a kernel whose cost is ``true`` (tail at ``width``): 4 model
    variants x 6 steps of random widths x 5 images, 0.1 % noise."""
    rng = np.random.default_rng(seed)
    features, out_c, groups, y = [], [], [], []
    for variant in range(4):
        for step in range(6):
            c, sites = int(rng.integers(5, 130)), (49, 196, 784)[step % 3]
            words_per_site = int(rng.integers(1, 6))
            for _ in range(5):
                columns = sites * rng.uniform(2, 40)
                f = dict.fromkeys(COST_FEATURES, 0.0)
                f.update(calls=1.0, sites=float(sites), sops=columns * c, columns=columns,
                         words=float(sites * words_per_site))
                cost = sum(true[k] * v for k, v in at_width(f, c, width).items() if k in true)
                features.append(f)
                out_c.append(c)
                groups.append(variant)
                y.append(cost * rng.normal(1, 0.001))
    return features, out_c, groups, np.array(y)


def test_fit_recovers_the_costs_and_the_column_add_width():
    true = {"calls": 900.0, "sites": 120.0, "sops": 0.8, "columns": 30.0, "tail": 15.0,
            "words": 12.0}
    features, out_c, groups, y = _synthetic_steps(true, width=8)
    fit = fit_kernel(features, out_c, y, groups)
    assert fit.width == 8 and fit.error_pct < 0.5 and fit.rows == 120
    got = dict(fit.coefficients)
    for feature in ("sites", "sops", "columns", "tail", "words"):
        assert got.get(feature, 0.0) == pytest.approx(true[feature], rel=0.05), feature
    # a kernel without a vector tail keeps width 1 (no tail feature at all)
    plain = {k: v for k, v in true.items() if k != "tail"}
    features, out_c, groups, y = _synthetic_steps(plain, width=1, seed=1)
    fit = fit_kernel(features, out_c, y, groups)
    assert fit.width == 1 and "tail" not in dict(fit.coefficients) and fit.error_pct < 0.5


def test_costs_file_round_trips_and_loads_with_its_board(tmp_path, tiny_int8):
    _, _, ir, plan, _ = tiny_int8
    costs = synthetic_costs(ir, plan)
    d = board_dir(tmp_path, costs)
    board = load_board("stm32h7", d)
    assert board.costs.source.endswith("costs/stm32h7.toml")
    assert dataclasses.replace(board.costs, path=None, source="") == costs  # typed, exact
    assert board.costs.cost("linear_spiking_lif_q", "int8").coefficients[2] == ("sops", 1.0)
    assert board.costs.cost("linear_spiking_lif_q", "int4") is None
    assert load_board("stm32f405", d).costs is None
    path = d / "costs" / "stm32h7.toml"
    path.write_text(path.read_text().replace("sops =", "spos =", 1))
    with pytest.raises(SvtError, match=r"costs/stm32h7.toml: unknown key \[\[kernel\]\] spos"):
        load_costs(path, "stm32h7")


# ----------------------------------------------------------------------------- the budget

def test_latency_budget_prunes_until_the_prediction_fits(tmp_path, monkeypatch, tiny_int8):
    ckpt, data, ir, plan, images = tiny_int8
    costs = synthetic_costs(ir, plan)
    monkeypatch.setenv("SVT_BOARDS_DIR", str(board_dir(tmp_path, costs)))
    unpruned = predict(costs, ir, plan, images).total
    # memory fits by far: only latency binds
    budget_ms = round(0.85 * unpruned / CLOCK * 1e3, 5)
    proc = _prune(ckpt, data, tmp_path / "o", "--max-latency-ms", str(budget_ms))
    assert proc.returncode == 0, proc.stderr
    pruned = json.loads((tmp_path / "o" / "prune_plan.json").read_text())
    lat = pruned["latency"]
    assert lat["max_instructions"] == int(budget_ms / 1000 * CLOCK)
    assert lat["start_instructions"] == pytest.approx(unpruned, abs=1)
    assert lat["predicted_instructions"] <= lat["max_instructions"] < lat["start_instructions"]
    assert pruned["budget"]["latency"]["max_ms"] == pytest.approx(budget_ms, rel=1e-4)
    assert all("instructions" in e for e in pruned["explored"])
    assert "only the latency budget binds" in proc.stderr
    assert "predicted instructions per inference" in proc.stdout
    # the saved model predicts what the plan says
    ds = load_dataset(data)
    again = deployed_ir(load_model(weights=tmp_path / "o" / "pruned_model.pt"), ds.input_shape)
    assert predict(costs, again, plan_memory(again), images).total == pytest.approx(
        lat["predicted_instructions"], abs=1)

    # a budget no model within the drop reaches: one line, nothing written
    proc = _prune(ckpt, data, tmp_path / "x", "--max-latency-ms", f"{budget_ms / 5:.5f}",
                  max_drop="2")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot meet" in last and "predicted instructions" in last
    assert not (tmp_path / "x" / "pruned_model.pt").exists()


# ----------------------------------------------------------------------------- refusals

BAD = [
    (["prune", "--board", "stm32h7", "--max-drop", "3", "--max-latency-ms", "-5"],
     "--max-latency-ms"),
    (["prune", "--board", "stm32h7", "--max-drop", "3", "--max-latency-ms", "0"], "> 0"),
    (["--board", "stm32h7", "--max-drop", "3", "--max-latency-ms", "inf"], "--max-latency-ms"),
    (["calibrate", "--board", "stm32h7", "--variants", "0"], "--variants"),
    (["calibrate", "--board", "stm32h7", "--precision", "int2"], "--precision"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_latency_options_are_one_line(argv, needle):
    proc = run_cli(*argv, timeout=60)
    assert proc.returncode == 2
    _one_line(proc, needle)


def test_costs_that_cannot_predict_are_refused_in_one_line(tmp_path, monkeypatch, tiny_int8):
    ckpt, data, ir, plan, _ = tiny_int8
    cases = [(None, "no calibrated kernel costs"),  # the board was never calibrated
             (synthetic_costs(ir, plan, templates="0" * 20), "other C kernels"),
             (synthetic_costs(ir, plan, leave_out="ssa_lif_q"), "no cost for ssa_lif_q")]
    for i, (costs, needle) in enumerate(cases):
        monkeypatch.setenv("SVT_BOARDS_DIR", str(board_dir(tmp_path / str(i), costs)))
        proc = _prune(ckpt, data, tmp_path / "o", "--max-latency-ms", "5")
        _one_line(proc, needle, "svt-deploy calibrate --board stm32h7")
        assert not (tmp_path / "o" / "pruned_model.pt").exists()
    # the full pipeline refuses before any stage runs
    proc = run_cli("--board", "stm32h7", "--max-drop", "3", "--max-latency-ms", "5",
                   "--weights", str(ckpt), "--data", str(data), "--out", str(tmp_path / "d"))
    _one_line(proc, "no cost for ssa_lif_q")
    assert not (tmp_path / "d" / ".stages").exists()
    # a latency budget needs a board: its clock and its costs
    proc = run_cli("prune", "--max-reduction", "20", "--max-drop", "3", "--max-latency-ms",
                   "5", "--weights", str(ckpt), "--data", str(data), "--out",
                   str(tmp_path / "o"))
    _one_line(proc, "--max-latency-ms needs --board")


# ----------------------------------------------------------------------------- on QEMU

needs_qemu = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
    reason="qemu-system-arm and arm-none-eabi-gcc are needed")


@needs_qemu
def test_calibrated_costs_predict_the_emulator(tmp_path, monkeypatch, tiny_int8):
    """Calibrate on the tiny model, prune it to a latency budget with those costs, and run
    the result on the emulator: the prediction is within 15 % of the count, which meets
    the budget."""
    ckpt, data, ir, plan, images = tiny_int8
    d = board_dir(tmp_path)
    monkeypatch.setenv("SVT_BOARDS_DIR", str(d))
    proc = run_cli("calibrate", "--board", "stm32h7", "--weights", str(ckpt), "--data",
                   str(data), "--samples", "4", check=True)
    assert "fit error" in proc.stdout and "wrote" in proc.stdout
    costs = load_board("stm32h7", d).costs
    cal = costs.calibration
    assert cal.templates == templates_digest() and cal.precisions == ("int8",)
    assert cal.variants >= 4 and cal.error_pct < 15
    unpruned = predict(costs, ir, plan, images).total
    budget_ms = 0.93 * unpruned / CLOCK * 1e3
    proc = _prune(ckpt, data, tmp_path / "o", "--max-latency-ms", f"{budget_ms:.5f}",
                  max_drop="10")
    assert proc.returncode == 0, proc.stderr
    lat = json.loads((tmp_path / "o" / "prune_plan.json").read_text())["latency"]
    assert lat["predicted_instructions"] <= lat["max_instructions"]
    result = json.loads(run_cli(
        "run-qemu", "--board", "stm32h7", "--weights", str(tmp_path / "o" / "pruned_model.pt"),
        "--data", str(data), "--samples", "20", "--out", str(tmp_path / "fw"), "--json", "-q",
        check=True).stdout)
    measured = result["instructions_mean"]
    assert abs(lat["predicted_instructions"] - measured) <= 0.15 * measured
    # met on the test images up to the prediction's own error, which the calibration
    # reported (the pruner stops as soon as the prediction on validation images fits)
    assert measured <= lat["max_instructions"] * (1 + cal.error_pct / 100)
