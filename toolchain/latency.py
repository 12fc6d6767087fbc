"""The latency model: instructions per inference predicted from the work a model does.

Each step of the schedule costs its kernel's instructions, modelled as a nonnegative linear
function of the step's work features (``boards.COST_FEATURES``: the call, output sites,
SOPs, weight columns added and the scalar tail past a vector column add's width, words of
spike trains scanned, neuron updates, values in and out, ...), with coefficients per
kernel and weight precision fitted on the board's emulator (``svt-deploy calibrate``,
``calibration.py``) and stored beside the board profile. The work comes from
``work.count_work`` on real images, so a pruned candidate's prediction follows its own
shapes and spike rates; one inference is the sum of its steps plus a fixed overhead.
Shapes matter beyond the SOPs: a layer pruned to an odd width adds a scalar tail to every
column and loads misaligned weights, and can be slower than the wider one.

Costs measured against other C kernels (the templates digest), another kernel style, or
lacking a kernel the model uses are refused with one line naming the calibrate command.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .boards import COST_FEATURES, Board, KernelCosts
from .errors import SvtError
from .ir import IR
from .memory import MemoryPlan, Step
from .resources import templates_digest
from .work import StepWork, WorkCount, count_work

CostKey = tuple[str, str | None]  # (kernel, weight precision or None)


def calibrate_command(board: str, precisions=("int8",)) -> str:
    return (f"svt-deploy calibrate --board {board}"
            + ("" if tuple(precisions) == ("int8",) else " --precision " + " ".join(precisions)))


def cost_key(step: Step, ir: IR) -> CostKey:
    """A step's cost entry: its kernel, and for a layer with weights their precision (an
    int4 column add unpacks nibbles, an int8 one does not)."""
    if not step.params:
        return step.kernel, None
    return step.kernel, ir.node(step.name).attrs.get("precision", "fp32")


def describe_key(key: CostKey) -> str:
    return key[0] if key[1] is None else f"{key[0]} ({key[1]})"


def _window_taps(out_n: int, in_n: int, kernel: int, stride: int, pad: int) -> int:
    """Window positions inside the input along one axis, summed over the outputs (a
    kernel skips the padding)."""
    return sum(1 for o in range(out_n) for j in range(kernel) if 0 <= o * stride - pad + j < in_n)


def _words(values: int, fmt: str) -> int:
    """Words an event scan reads over ``values`` consecutive values: spike trains are
    scanned 32 bits at a time, counts (one byte each) 4 at a time."""
    per_word = 4 if fmt == "count" else 32
    return -(-values // per_word)


def scan_words(step: Step, plan: MemoryPlan) -> float:
    """Words of event inputs ``step`` scans: per window tap of a spike-fed conv or
    max-pool, per token of a linear layer (a pixel's or token's inputs are contiguous),
    else each event input once."""
    t = plan.timesteps
    sources = [plan.step(i) for i in step.inputs if i != "input"]
    events = [s for s in sources if s.out_format in ("spikes", "count")]
    if not events:
        return 0.0
    src, a = events[0], step.attrs
    if step.op in ("conv2d", "maxpool2d") and "kernel" in a and len(events) == 1:
        in_c = a.get("in_channels", step.channels)
        out_h, out_w = a.get("conv_height", step.height), a.get("conv_width", step.width)
        taps = (_window_taps(out_h, src.height, a["kernel"], a["stride"], a["padding"])
                * _window_taps(out_w, src.width, a["kernel"], a["stride"], a["padding"]))
        return float(taps * _words(in_c * t, src.out_format))
    if step.op == "linear":
        return float(step.height * step.width * _words(src.channels * t, src.out_format))
    # whole buffers: spike trains are scanned, counts are copied or updated in place
    return float(sum(_words(s.neurons * t, "spikes") for s in events
                     if s.out_format == "spikes"))


def step_features(step: Step, work: StepWork, plan: MemoryPlan, ir: IR,
                  width: int = 1) -> dict[str, float]:
    """``COST_FEATURES`` of one step for the images ``work`` was counted on (per image);
    ``width``: the outputs one pass of the step's column add covers."""
    t = plan.timesteps
    out_c = max(step.channels, 1)
    inputs = sum(float(np.prod(ir.input_shape)) if i == "input" else plan.step(i).neurons * t
                 for i in step.inputs)
    columns = work.sops / out_c
    bits = {"int4": 4, "int8": 8}.get(cost_key(step, ir)[1], 32)
    aligned = step.attrs.get("weight_rows") != "inputs" or out_c * bits % 32 == 0
    return {"calls": 1.0, "sites": float(step.height * step.width),
            "outputs": float(step.neurons * t), "neuron_updates": work.neuron_updates,
            "sops": work.sops, "columns": columns, "tail": columns * (out_c % width),
            "misaligned": 0.0 if aligned else work.sops, "words": scan_words(step, plan),
            "input_events": work.input_events,
            "inputs": inputs, "macs": work.macs}


def step_cost(coefficients, features: dict[str, float]) -> float:
    return sum(c * features[f] for f, c in coefficients)


# ----------------------------------------------------------------------------- costs in use

def usable_costs(board: Board, kernels: str = "event") -> KernelCosts:
    """The board's kernel costs, if they describe the C this svt-deploy generates."""
    c = board.costs
    run = calibrate_command(board.name)
    if c is None:
        raise SvtError(f"board {board.name} has no calibrated kernel costs "
                       f"(costs/{board.name}.toml beside its profile); run `{run}`")
    cal = c.calibration
    if cal.templates != templates_digest():
        raise SvtError(f"{c.source}: these kernel costs ({cal.date}) were measured on other C "
                       f"kernels (templates {cal.templates}, now {templates_digest()}); run "
                       f"`{calibrate_command(board.name, cal.precisions)}`")
    if cal.kernels != kernels:
        raise SvtError(f"{c.source}: these kernel costs were measured with --kernels "
                       f"{cal.kernels}, not {kernels}; run `{run} --kernels {kernels}`")
    return c


def require_covered(costs: KernelCosts, ir: IR, plan: MemoryPlan) -> None:
    """Every step of ``plan`` has a cost, or one line saying what to calibrate."""
    for step in plan.steps:
        key = cost_key(step, ir)
        if costs.cost(*key) is None:
            precisions = sorted(set(costs.calibration.precisions) | ({key[1]} - {None}))
            raise SvtError(f"{costs.source}: no cost for {describe_key(key)} (step "
                           f"{step.name}; calibrated at "
                           f"{', '.join(costs.calibration.precisions)}); run "
                           f"`{calibrate_command(costs.board, precisions)}`")


@dataclass(frozen=True)
class StepPrediction:
    name: str
    kernel: str
    instructions: float


@dataclass(frozen=True)
class Prediction:
    """Predicted instructions per inference (means over ``images``)."""

    steps: tuple[StepPrediction, ...]
    per_inference: float  # outside the steps
    images: int

    @property
    def total(self) -> float:
        return self.per_inference + sum(s.instructions for s in self.steps)


def predict(costs: KernelCosts, ir: IR, plan: MemoryPlan, images: torch.Tensor) -> Prediction:
    """Instructions per inference of ``ir`` on ``images`` ([N, C, H, W] as the model takes
    them), step by step. The work is linear in the images, so the mean of the per-image
    predictions is the prediction of the mean work."""
    return predict_work(costs, ir, plan, count_work(ir, plan, images))


def predict_work(costs: KernelCosts, ir: IR, plan: MemoryPlan, work: WorkCount) -> Prediction:
    """The prediction for work already counted (``work.count_work`` on ``plan``)."""
    require_covered(costs, ir, plan)
    steps = []
    for s, w in zip(plan.steps, work.steps):
        cost = costs.cost(*cost_key(s, ir))
        steps.append(StepPrediction(s.name, s.kernel, step_cost(
            cost.coefficients, step_features(s, w, plan, ir, cost.width))))
    return Prediction(tuple(steps), costs.per_inference, work.images)


class LatencyPredictor:
    """Predictions for pruning candidates: the costs and a fixed set of validation images,
    with the last few predictions kept (the pruner tests the current model repeatedly)."""

    KEEP = 4

    def __init__(self, costs: KernelCosts, images: torch.Tensor):
        self.costs, self.images = costs, images
        self._recent: list[tuple[IR, Prediction]] = []  # holds the IRs: ids stay unique

    def predict(self, ir: IR, plan: MemoryPlan) -> Prediction:
        for seen, prediction in self._recent:
            if seen is ir:
                return prediction
        prediction = predict(self.costs, ir, plan, self.images)
        self._recent = [(ir, prediction)] + self._recent[:self.KEEP - 1]
        return prediction

    def instructions(self, ir: IR, plan: MemoryPlan) -> float:
        return self.predict(ir, plan).total

    def alignment(self) -> int:
        """Channels a layer's width is best a multiple of: the widest column-add pass of
        the costed kernels (1: width does not matter)."""
        return max((k.width for k in self.costs.kernels), default=1)


@dataclass(frozen=True)
class LatencyBudget:
    """``--max-latency-ms`` at a board's clock, one instruction per cycle."""

    max_ms: float
    clock_hz: int

    @property
    def max_instructions(self) -> int:
        return int(self.max_ms / 1000 * self.clock_hz)

    def ms(self, instructions: float) -> float:
        return instructions / self.clock_hz * 1000

    def describe(self) -> str:
        return f"{self.max_ms:g} ms at {self.clock_hz / 1e6:g} MHz, one instruction a cycle"

    def as_dict(self) -> dict:
        return {"max_ms": self.max_ms, "clock_hz": self.clock_hz,
                "max_instructions": self.max_instructions}


# ----------------------------------------------------------------------------- fitting

TAIL_WIDTHS = (1, 2, 4, 8, 16)  # column-add widths a calibration tries per kernel


def at_width(features: dict[str, float], out_c: int, width: int) -> dict[str, float]:
    """``features`` with the tail of a column add ``width`` outputs wide."""
    return dict(features, tail=features["columns"] * (out_c % width))


@dataclass(frozen=True)
class KernelFit:
    coefficients: tuple[tuple[str, float], ...]
    width: int
    rows: int
    error_pct: float  # mean |fit - measured| over the rows, % of the mean measured


def _nnls(features: list[dict[str, float]], y: np.ndarray) -> tuple[tuple[str, float], ...]:
    """Nonnegative least squares on the features that are nonzero for this kernel, columns
    scaled to unit maximum first so that SOPs (millions) and calls (one) weigh alike."""
    from scipy.optimize import nnls

    names = [f for f in COST_FEATURES if any(row[f] for row in features)]
    x = np.array([[row[f] for f in names] for row in features], np.float64)
    scale = np.abs(x).max(0)
    coef, _ = nnls(x / scale, y, maxiter=50 * max(1, len(names)))
    return tuple((f, float(c / s)) for f, c, s in zip(names, coef, scale) if c > 0)


def _error_pct(coefficients, features: list[dict[str, float]], y: np.ndarray) -> float:
    fitted = np.array([step_cost(coefficients, f) for f in features])
    return float(np.abs(fitted - y).mean() / max(y.mean(), 1e-9) * 100)


def fit_kernel(features: list[dict[str, float]], out_channels: list[int],
               instructions: np.ndarray, groups: list[int] | None = None) -> KernelFit:
    """A kernel's costs from its step measurements: ``features`` at width 1, the steps'
    output channels, the instructions measured and (optional) which model variant each
    came from. The column-add width is the one whose fits predict each variant best when
    fitted without it (the narrowest of equals); with fewer than three variants, the one
    that fits best."""
    y = np.asarray(instructions, np.float64)
    groups = list(groups) if groups is not None else [0] * len(y)
    held_out = sorted(set(groups)) if len(set(groups)) >= 3 else []

    def score(rows: list[dict[str, float]]) -> float:
        if not held_out:
            return _error_pct(_nnls(rows, y), rows, y)
        error = 0.0
        for g in held_out:
            train = [i for i, h in enumerate(groups) if h != g]
            test = [i for i, h in enumerate(groups) if h == g]
            coefficients = _nnls([rows[i] for i in train], y[train])
            predicted = sum(step_cost(coefficients, rows[i]) for i in test)
            error += abs(predicted - y[test].sum()) / y[test].sum()
        return error / len(held_out) * 100

    best = None
    for width in TAIL_WIDTHS:
        rows = [at_width(f, c, width) for f, c in zip(features, out_channels)]
        err = score(rows)
        if best is None or err < best[0] * 0.98:
            best = (err, width, rows)
    _, width, rows = best
    coefficients = _nnls(rows, y)
    if not any(f == "tail" for f, _ in coefficients):
        width = 1
    return KernelFit(coefficients, width, len(y), _error_pct(coefficients, rows, y))
