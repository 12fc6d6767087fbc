"""Report stage: report.json, report.md and the plots from the stages' results; the
deployed model's memory comes from the project manifest."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..boards import Board
from ..loading import LoadedModel
from ..manifest import Manifest
from ..report import write_report
from .evaluation import BaselineResult, params_of
from .firmware_build import FirmwareResult
from .host_check import HostCheck
from .on_device import DeviceResult
from .prediction import LatencyPrediction, latency_section
from .pruning import PruneRecord


def _summary(accuracy: float | None, params: int, flash_bytes: int, sram_bytes: int) -> dict:
    return {"accuracy": None if accuracy is None else round(accuracy, 5), "params": params,
            "flash_bytes": flash_bytes, "sram_bytes": sram_bytes}


def _with_seconds(result, seconds: dict[str, float], stage: str) -> dict | None:
    return None if result is None else dict(asdict(result), stage_seconds=seconds[stage])


def build_report(*, board: Board, loaded: LoadedModel, data: str, command: str,
                 pruned: LoadedModel, baseline: BaselineResult, prune: PruneRecord,
                 manifest: Manifest, host: HostCheck, firmware: FirmwareResult | None,
                 device: DeviceResult | None, prediction: LatencyPrediction | None,
                 timings: dict[str, float], reused: list[str]) -> dict:
    """report.json's content."""
    plan, test = prune.plan, prune.test
    pruned_params = params_of(pruned)
    finetuned = plan.get("finetuned") is not None
    pruned_acc = test.get("pruned", test["final"]) if finetuned else test["final"]
    model = manifest.model  # what the generated C holds
    return {
        "board": board.name,
        "model": str(loaded.weights), "model_def": loaded.model_def,
        "data": data,
        "command": command,
        "baseline": _summary(baseline.accuracy, baseline.params, baseline.weight_bytes,
                             baseline.arena_bytes),
        "pruned": _summary(pruned_acc, pruned_params, model.weight_bytes, model.arena_bytes),
        "finetuned": _summary(test["final"], pruned_params, model.weight_bytes,
                              model.arena_bytes) if finetuned else None,
        "test_samples": test["samples"],
        "budget": prune.budget,
        "precision": model.precision,  # of the generated C's weights
        "precisions_tried": plan.get("precisions_tried"),
        "policy": plan["policy"], "allocation": plan.get("allocation"),
        "validation": plan.get("validation"),
        "finetune": plan.get("finetuned"),
        "layers": plan["layers"],
        "groups": plan["groups"],
        "firmware": _with_seconds(firmware, timings, "firmware"),
        "host_emulation": _with_seconds(host, timings, "host_emulation"),
        "device": _with_seconds(device, timings, "device"),
        # predicted instructions per inference beside the device's count (and the budget)
        "latency": latency_section(prediction, prune.budget.get("latency"), board.clock_hz,
                                   None if device is None else asdict(device)),
        "timings_s": timings,  # seconds each stage took when it was computed
        "reused_stages": reused,  # stages this run took from the cache
    }


def report_stage(out: Path, report: dict, prune: PruneRecord) -> None:
    """Write report.json, report.md and the plots into ``out``."""
    write_report(out, report, prune.plan)
