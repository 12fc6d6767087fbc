"""`svt-deploy --board B --max-drop D`: the whole pipeline, from model to validated firmware.

load -> baseline -> prune -> generate C -> host check -> firmware build and fit check ->
on-device check (QEMU by default, a real board with a port) -> report, with the
instructions the board's kernel costs predict (when they describe the generated C).

Every stage caches its result in the output directory keyed by its inputs, so a rerun
after an interruption continues where it stopped and a repeated run is fast. Nothing
outside the output directory is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..boards import Board, load_board
from ..errors import SvtError
from ..flashing import choose_tool
from ..latency import usable_costs
from ..loading import load_model
from ..manifest import read_manifest
from ..prune import PruneOptions
from ..prune.options import latency_budget
from ..runtime import current
from ..serial_link import open_port
from ..resources import templates_digest
from ..stages import StageCache, stage_key
from ..tools import require_cross_toolchain, require_tool
from .common import Log, from_record, stderr_log, to_record
from .evaluation import BaselineResult, baseline
from .firmware_build import FirmwareResult, firmware_stage, firmware_valid
from .generation import GenerateResult, generate_stage, project_valid
from .host_check import HostCheck, host_check
from .inputs import ModelInputs, load_inputs
from .on_device import DeviceResult, DeviceTarget, device_stage
from .prediction import predict_latency
from .pruning import (PRUNED_MODEL, PruneRecord, prune_key, prune_stage, pruned_model_valid,
                      require_latency_costs)
from .reporting import build_report, report_stage

T = TypeVar("T")
PROJECT = "firmware_project"
AGREEMENT_WARNING = 0.995  # host C vs PyTorch below this is worth a line


@dataclass(frozen=True)
class DeployOptions:
    board: str
    prune: PruneOptions
    inputs: ModelInputs = field(default_factory=ModelInputs)
    out: str | None = None  # default out/<board>
    host_samples: int = 10000
    device: DeviceTarget = field(default_factory=DeviceTarget)
    no_device: bool = False  # skip the on-device check
    kernels: str = "event"  # or "dense": the spike-fed layers as plain dense loops
    quiet: bool = False
    command: str = ""  # the command line, recorded in the report


@dataclass(frozen=True)
class DeployResult:
    out: Path
    report: dict  # report.json's content


def check_tools(board: Board, need_device: bool, port: str | None,
                flash_tool: str | None) -> None:
    """Fail before the long stages if a toolchain is missing (one line naming the package)."""
    require_tool("gcc")
    if board.is_host:
        return
    require_cross_toolchain()
    if need_device and port is None and board.emulator is not None:
        require_tool("qemu-system-arm")
    if need_device and port is not None:
        choose_tool(board, flash_tool)  # a flash tool must be installed
        open_port(port).close()  # and the board connected, before hours of work


class Stages:
    """Runs stages through the stage cache (out/.stages): a stage whose key is unchanged and
    whose record is still ``valid`` is reused; otherwise it runs and its typed result is
    stored, with the seconds it took."""

    def __init__(self, out: Path, log: Log):
        self.cache, self.log = StageCache(out), log
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []

    def run(self, name: str, key: str, cls: type[T], compute: Callable[[], T],
            valid: Callable[[T], bool] = lambda result: True) -> T:
        record = self.cache.get(name, key)
        result = None
        if record is not None:
            try:
                result = from_record(cls, record)
            except TypeError:  # a record from an older version: run the stage again
                result = None
        if result is not None and valid(result):
            self.reused.append(name)
            self.log(f"{name}: reusing the cached result")
            seconds = record.get("stage_seconds", 0.0)
        else:
            t = time.time()
            result = compute()
            seconds = round(time.time() - t, 2)
            self.cache.put(name, key, dict(to_record(result), stage_seconds=seconds))
        self.seconds[name] = seconds
        return result


def deploy(options: DeployOptions) -> DeployResult:
    """Run every stage for ``options``; returns the report (also written to out/)."""
    t0 = time.time()
    board = load_board(options.board)
    out = Path(options.out or f"out/{board.name}")
    log = stderr_log(options.quiet)
    quiet = options.quiet
    prune_options = options.prune
    check_tools(board, not options.no_device, options.device.port, options.device.flash_tool)
    if prune_options.max_latency_ms is not None:  # no costs: one line now, not after hours
        latency_budget(board, prune_options.max_latency_ms)
        usable_costs(board, options.kernels)
    stages = Stages(out, log)

    t = time.time()
    loaded, ds = load_inputs(options.inputs)
    if current().distributed:
        raise SvtError("the full deploy runs in one process (it builds firmware and drives "
                       "one device); under torchrun use `svt-deploy prune`, then deploy its "
                       "pruned_model.pt")
    model_fp, data_fp = loaded.fingerprint(), ds.fingerprint()
    if prune_options.max_latency_ms is not None:
        require_latency_costs(board.costs, prune_options.precision, loaded, ds)
    load_seconds = time.time() - t

    base = stages.run(
        "baseline", stage_key("baseline", model_fp, data_fp, prune_options.test_samples),
        BaselineResult,
        lambda: baseline(loaded, ds, prune_options.test_samples, out / ".cache", quiet, log))
    pruned_record = stages.run(
        "prune", prune_key(prune_options, model_fp, data_fp), PruneRecord,
        lambda: prune_stage(loaded, ds, prune_options, out, log, quiet),
        valid=lambda r: pruned_model_valid(out, r))
    pruned = load_model(weights=out / PRUNED_MODEL)
    project = out / PROJECT

    project_hash = stages.run(
        "generate", stage_key("generate", pruned_record.digest, board.name, options.kernels,
                              templates_digest()), GenerateResult,
        lambda: generate_stage(pruned, ds.input_shape, board, project, log, options.kernels),
        valid=lambda r: project_valid(project)).project_hash
    host = stages.run(
        "host_emulation", stage_key("host", project_hash, data_fp, options.host_samples),
        HostCheck, lambda: host_check(pruned, ds, project, options.host_samples, quiet, log))
    if host.agreement < AGREEMENT_WARNING:
        log(f"warning: host C agrees with PyTorch on only {host.agreement:.2%} of images")

    firmware = device = None
    if not board.is_host:
        firmware = stages.run(
            "firmware", stage_key("firmware", project_hash, board.name), FirmwareResult,
            lambda: firmware_stage(project, board, out, log),
            valid=lambda r: firmware_valid(project, out, r))
    if not board.is_host and not options.no_device:
        target = options.device
        dev_key = stage_key("device", project_hash, board.name, target.samples, target.port,
                            time.time() if target.port else None)  # hardware: always rerun
        device = stages.run("device", dev_key, DeviceResult,
                            lambda: device_stage(pruned, ds, board, project, target, quiet, log))

    # not a cached stage: a few seconds of counting, and always against today's costs
    t = time.time()
    prediction = None if board.is_host else predict_latency(
        pruned, ds, board, prune_options.latency_samples, options.kernels, log)

    timings = {"load": round(load_seconds, 2), **stages.seconds}
    if prediction is not None:
        timings["latency"] = round(time.time() - t, 2)
    timings["total"] = round(time.time() - t0, 2)
    report = build_report(board=board, loaded=loaded, data=options.inputs.data_label,
                          command=options.command, pruned=pruned, baseline=base,
                          prune=pruned_record, manifest=read_manifest(project), host=host,
                          firmware=firmware, device=device, prediction=prediction,
                          timings=timings, reused=stages.reused)
    report_stage(out, report, pruned_record)
    return DeployResult(out, report)
