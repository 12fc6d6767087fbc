"""The deployed model's instructions per inference as the board's kernel costs predict
them (``latency.py``), beside the device's measurement in the report.

It runs whenever the board has costs that describe the generated C; without them the
report says why there is no prediction (a latency budget would have refused earlier).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..boards import Board
from ..data import Dataset
from ..errors import SvtError
from ..latency import predict, usable_costs
from ..loading import LoadedModel
from ..memory import plan_memory
from ..quant.reference import deployed_ir
from .common import Log


@dataclass(frozen=True)
class LatencyPrediction:
    instructions: float | None  # predicted per inference (None: see unavailable)
    images: int  # validation images predicted on
    costs: str | None = None  # the costs file
    calibrated: str | None = None  # its date
    unavailable: str | None = None  # why there is no prediction


def predict_latency(pruned: LoadedModel, ds: Dataset, board: Board, samples: int,
                     kernels: str, log: Log) -> LatencyPrediction:
    try:
        costs = usable_costs(board, kernels)
        ir = deployed_ir(pruned, ds.input_shape)
        images = ds.as_tensor(ds.split("val", samples)[0])
        predicted = predict(costs, ir, plan_memory(ir), images)
    except SvtError as e:
        return LatencyPrediction(None, 0, unavailable=str(e))
    log(f"predicted {predicted.total:,.0f} instructions per inference ({samples} validation "
        "images)")
    return LatencyPrediction(round(predicted.total), predicted.images, costs.source,
                             costs.calibration.date)


def latency_section(prediction: LatencyPrediction | None, budget: dict | None,
                    clock_hz: int, device: dict | None) -> dict | None:
    """report.json's "latency": the budget (when one was given), the prediction and the
    device's measurement side by side."""
    if prediction is None:
        return None
    measured = device.get("instructions_per_inference") if device else None
    predicted = prediction.instructions

    def ms(n):
        return None if n is None or not clock_hz else round(n / clock_hz * 1e3, 3)

    out = {"budget_ms": budget["max_ms"] if budget else None,
           "budget_instructions": budget["max_instructions"] if budget else None,
           "clock_hz": clock_hz, "predicted_instructions": predicted,
           "predicted_ms": ms(predicted),
           "predicted_on": f"{prediction.images} validation images" if predicted else None,
           "measured_instructions": measured, "measured_ms": ms(measured),
           "measured_on": f"{device['samples']} test images, {device['target']}"
           if measured else None,
           "counter": device.get("counter") if measured else None,
           "prediction_error_pct": round((predicted - measured) / measured * 100, 2)
           if predicted and measured else None,
           "costs": prediction.costs, "calibrated": prediction.calibrated,
           "unavailable": prediction.unavailable}
    if budget:
        known = measured if measured is not None else predicted
        out["meets_budget"] = None if known is None else known <= budget["max_instructions"]
    return out
