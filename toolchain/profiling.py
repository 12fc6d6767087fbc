"""Cost of each model step on the emulator: the firmware marks the counter after every
kernel call (model.c's SVT_STEP_DONE) and answers PROFILE with the last inference's
per-step deltas, which QEMU's ``-icount`` makes instruction counts. These are what the
latency model is calibrated on and what `kernel_speed.py` reports per layer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .boards import Board
from .errors import SvtError
from .firmware import build_firmware
from .qemu import QemuDevice


@dataclass(frozen=True)
class StepProfile:
    """Instructions per inference on the emulator, in total and per step (means over the
    images), with the steps' names and kernels from the project's memory plan."""

    names: list[str]
    kernels: list[str]
    instructions: np.ndarray  # [images, steps]
    totals: np.ndarray  # [images]: svt_model_run's own count (the steps plus the marking)

    def mean_by_step(self) -> dict[str, float]:
        return dict(zip(self.names, self.instructions.mean(0).tolist()))

    def as_dict(self) -> dict:
        return {"images": int(len(self.totals)),
                "instructions_per_inference": float(self.totals.mean()),
                "steps": [{"name": n, "kernel": k, "instructions": round(float(v), 1)}
                          for n, k, v in zip(self.names, self.kernels,
                                             self.instructions.mean(0))]}


def plan_steps(project: Path) -> list[dict]:
    """The generated project's steps in run order (memory_plan.json)."""
    return json.loads((Path(project) / "memory_plan.json").read_text())["steps"]


def profile_on_qemu(project: Path, board: Board, images: np.ndarray) -> StepProfile:
    """Build ``project``'s QEMU firmware, run ``images`` (as the C takes them) and read
    each inference's per-step counts."""
    steps = plan_steps(project)
    build = build_firmware(project, board, emulated=True)
    per_step, totals = [], []
    with QemuDevice(build.elf, board) as dev:
        for image in images:
            result = dev.link.infer(image, dev.info)
            deltas = dev.link.profile()
            if len(deltas) != len(steps):
                raise SvtError(f"the firmware profiled {len(deltas)} steps; the project's "
                               f"plan has {len(steps)}: regenerate it")
            per_step.append([dev.info.instructions(d) for d in deltas])
            totals.append(dev.info.instructions(result.counter))
    return StepProfile([s["name"] for s in steps], [s["kernel"] for s in steps],
                       np.asarray(per_step, np.float64), np.asarray(totals, np.float64))
