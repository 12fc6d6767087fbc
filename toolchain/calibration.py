"""`svt-deploy calibrate`: a board's kernel costs, measured on its emulator.

The model and a few pruned variants of it (different groups cut, so that each kernel is
seen at several shapes and a fit does not mistake a shape for a constant) are generated,
built for the board's QEMU machine and run on validation images; the firmware reports
every step's instructions (``profiling.profile_on_qemu``). The same images' work is
counted per step (``work.count_work``), and each kernel's costs are fitted on its
(step, image) measurements (``latency.fit_kernel``). The costs are written as TOML beside
the board profiles, with what they were measured on: the C kernels' digest among it, so
that costs of other kernels are refused rather than trusted.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .boards import Board, Calibration, KernelCost, KernelCosts, costs_path, load_costs
from .codegen import model_hash
from .data import Dataset
from .errors import SvtError
from .latency import (
    CostKey,
    KernelFit,
    at_width,
    cost_key,
    describe_key,
    fit_kernel,
    step_cost,
    step_features,
)
from .loading import LoadedModel
from .pipeline.generation import generate_project
from .profiling import profile_on_qemu
from .prune.groups import discover_groups, keep_count, pruned_copy
from .prune.precision import at_precision
from .quant.reference import c_images, deployed_ir
from .resources import BOARDS_DIR, REFERENCE_WEIGHTS, templates_digest
from .tools import require_cross_toolchain, require_tool
from .work import count_work

# Pruned variants: the rate of every other group (largest first) and of the ones between,
# so that the layers a group touches change shape independently of the others.
VARIANT_RATES = ((0.5, 0.0), (0.15, 0.5), (0.35, 0.35), (0.0, 0.3), (0.6, 0.1), (0.8, 0.25),
                 (0.2, 0.8))


@dataclass(frozen=True)
class Measurement:
    """One step of one inference on the emulator, with the work it did."""

    variant: int
    image: int
    key: CostKey
    features: dict[str, float]  # at width 1 (no tail)
    out_channels: int
    instructions: float


@dataclass
class VariantRun:
    label: str
    precision: str
    measurements: list[Measurement]
    overhead: np.ndarray  # per image: svt_model_run's count less its steps
    totals: np.ndarray  # per image: instructions per inference


@dataclass(frozen=True)
class CalibrationResult:
    costs: KernelCosts
    runs: list[VariantRun]
    errors: dict[str, float]  # variant label -> |mean predicted - mean measured| %
    holdout: dict[str, float]  # pruned variant -> the same, fitted without it


def variants(loaded: LoadedModel, input_shape, count: int) -> list[tuple[str, LoadedModel]]:
    """The model, then up to ``count - 1`` pruned copies (``VARIANT_RATES``)."""
    ir = deployed_ir(loaded, input_shape)
    groups = discover_groups(loaded, ir)
    out = [("unpruned", loaded)]
    for even, odd in VARIANT_RATES[:count - 1]:
        model, cur = loaded, ir
        for i, g in enumerate(groups):
            rate = even if i % 2 == 0 else odd
            if rate:
                model, cur = pruned_copy(model, cur, g, keep_count(g.units, rate))
        out.append((f"pruned {even:.0%}/{odd:.0%}", model))
    return out


def measure(loaded: LoadedModel, label: str, index: int, board: Board, images: torch.Tensor,
            kernels: str, workdir: Path) -> VariantRun:
    """Build ``loaded`` for the board's emulator, profile it on ``images`` and count each
    image's work."""
    project = workdir / f"variant{index}"
    ir, plan, _ = generate_project(loaded, images.shape[1:], board, project, kernels)
    profile = profile_on_qemu(project, board, c_images(loaded, images))
    if profile.names != [s.name for s in plan.steps]:
        raise SvtError(f"the firmware's steps ({len(profile.names)}) are not the plan's "
                       f"({len(plan.steps)})")
    rows = []
    for i in range(len(images)):
        work = count_work(ir, plan, images[i:i + 1])
        for j, (step, w) in enumerate(zip(plan.steps, work.steps)):
            rows.append(Measurement(index, i, cost_key(step, ir),
                                    step_features(step, w, plan, ir), step.channels,
                                    float(profile.instructions[i, j])))
    overhead = profile.totals - profile.instructions.sum(1)
    return VariantRun(label, str(loaded.precision), rows, overhead, profile.totals)


def fit(measurements: list[Measurement]) -> dict[CostKey, KernelFit]:
    by_key: dict[CostKey, list[Measurement]] = {}
    for m in measurements:
        by_key.setdefault(m.key, []).append(m)
    return {key: fit_kernel([m.features for m in ms], [m.out_channels for m in ms],
                            np.array([m.instructions for m in ms]), [m.variant for m in ms])
            for key, ms in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))}


def predicted_totals(run: VariantRun, fits: dict[CostKey, KernelFit],
                     per_inference: float) -> np.ndarray:
    """Per image: the fitted costs' instructions per inference."""
    totals = np.full(len(run.totals), per_inference)
    for m in run.measurements:
        f = fits[m.key]
        totals[m.image] += step_cost(f.coefficients, at_width(m.features, m.out_channels,
                                                              f.width))
    return totals


def _error_pct(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(abs(predicted.mean() - measured.mean()) / measured.mean() * 100)


def calibrate(loaded: LoadedModel, ds: Dataset, board: Board, samples: int, count: int,
              precisions: tuple[str, ...], kernels: str, log) -> CalibrationResult:
    if board.emulator is None:
        raise SvtError(f"board {board.name} has no emulator ([emulator] in its profile); "
                       "kernel costs are measured on QEMU")
    require_cross_toolchain()
    require_tool("qemu-system-arm")
    images = ds.as_tensor(ds.split("val", samples)[0])
    runs: list[VariantRun] = []
    with tempfile.TemporaryDirectory(prefix="svt-calibrate-") as tmp:
        for precision in precisions:
            model = at_precision(loaded, precision, ds.normalize)
            for label, variant in variants(model, ds.input_shape, count):
                log(f"  {precision} {label}: building for {board.emulator.machine}, "
                    f"{len(images)} validation images")
                run = measure(variant, label, len(runs), board, images, kernels, Path(tmp))
                log(f"    {run.totals.mean():,.0f} instructions per inference")
                runs.append(run)
    everything = [m for r in runs for m in r.measurements]
    fits = fit(everything)
    per_inference = float(np.concatenate([r.overhead for r in runs]).mean())
    errors = {f"{r.precision} {r.label}": _error_pct(predicted_totals(r, fits, per_inference),
                                                      r.totals) for r in runs}
    holdout = {}
    for i, r in enumerate(runs):
        if r.label == "unpruned":
            continue
        others = fit([m for m in everything if m.variant != i])
        holdout[f"{r.precision} {r.label}"] = _error_pct(
            predicted_totals(r, others, per_inference), r.totals)
    per_image = np.concatenate([np.abs(predicted_totals(r, fits, per_inference) - r.totals)
                                / r.totals for r in runs])
    calibration = Calibration(
        model=_model_label(loaded.weights), model_hash=model_hash(deployed_ir(
            at_precision(loaded, precisions[0], ds.normalize), ds.input_shape)),
        precisions=tuple(precisions), kernels=kernels, templates=templates_digest(),
        date=time.strftime("%Y-%m-%d"), emulator=board.emulator.machine, images=len(images),
        variants=len(runs) // len(precisions), error_pct=round(float(per_image.mean() * 100), 3),
        holdout_error_pct=round(max(holdout.values(), default=0.0), 3))
    costs = KernelCosts(board.name, round(max(per_inference, 0.0), 1), calibration, tuple(
        KernelCost(key[0], key[1], tuple((f, _sig(c)) for f, c in k.coefficients), k.width,
                   k.rows, round(k.error_pct, 3)) for key, k in fits.items()))
    return CalibrationResult(costs, runs, errors, holdout)


def _model_label(weights) -> str:
    """The weights as the costs file records them: the built-in reference by name, a
    file under the working directory relative to it (no one's home directory)."""
    path = Path(weights)
    if path.resolve() == REFERENCE_WEIGHTS.resolve():
        return "reference SViT (examples/reference_svit.pt)"
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


# ----------------------------------------------------------------------------- the file

def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def costs_toml(costs: KernelCosts) -> str:
    """The costs file (``boards.load_costs`` reads it back)."""
    c = costs.calibration
    lines = ["# Kernel costs of this board: instructions of each model step on its emulator",
             "# (QEMU -icount) as a nonnegative linear function of the step's work",
             "# (svt_deploy/latency.py). Written by `svt-deploy calibrate`; rerun it after",
             "# changing the C kernels (`templates` below must match them).",
             f"board = {_toml_value(costs.board)}",
             f"per_inference = {costs.per_inference!r}  # instructions outside the steps", "",
             "[calibration]"]
    notes = {"error_pct": "mean |predicted - measured| per inference, % (fitted images)",
             "holdout_error_pct": "worst pruned variant predicted by a fit without it, %",
             "images": "validation images per variant"}
    for key, value in vars(c).items():
        note = f"  # {notes[key]}" if key in notes else ""
        lines.append(f"{key} = {_toml_value(value)}{note}")
    for k in costs.kernels:
        lines += ["", "[[kernel]]", f"name = {_toml_value(k.name)}"]
        if k.precision is not None:
            lines.append(f"precision = {_toml_value(k.precision)}")
        lines += [f"rows = {k.rows}", f"error_pct = {k.error_pct!r}"]
        if k.width != 1:
            lines.append(f"width = {k.width}")
        lines += [f"{f} = {c!r}" for f, c in k.coefficients]
    return "\n".join(lines) + "\n"


def write_costs(costs: KernelCosts, path: Path | None = None) -> KernelCosts:
    """Write the costs file (default: ``costs/BOARD.toml`` in the board directory) and
    read it back as the board loader will."""
    path = Path(path) if path is not None else costs_path(costs.board, BOARDS_DIR)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(costs_toml(costs))
    tmp.replace(path)
    written = load_costs(path, costs.board)
    if replace(written, path=None, source="") != replace(costs, path=None, source=""):
        raise SvtError(f"{path} does not read back as written")
    return written


def format_calibration(result: CalibrationResult) -> str:
    costs = result.costs
    cal = costs.calibration
    head = f"{'kernel':32s} {'rows':>6s} {'fit error':>9s}  instructions per step"
    lines = [head, "-" * len(head)]
    for k in costs.kernels:
        terms = " + ".join(f"{c:.4g} x {f}" if f != "calls" else f"{c:,.0f}"
                           for f, c in k.coefficients) or "0"
        width = f" (width {k.width})" if k.width != 1 else ""
        lines.append(f"{describe_key((k.name, k.precision)):32s} {k.rows:>6d} "
                     f"{k.error_pct:>8.2f}%  {terms}{width}")
    lines.append("-" * len(head))
    lines.append(f"per inference: {costs.per_inference:,.0f} instructions outside the steps; "
                 f"fit error {cal.error_pct:.2f} % per inference "
                 f"({cal.images} images x {len(result.runs)} variants)")
    for label, err in result.errors.items():
        held = result.holdout.get(label)
        lines.append(f"  {label}: mean prediction off by {err:.2f} %"
                     + (f", {held:.2f} % when fitted without it" if held is not None else ""))
    return "\n".join(lines)
