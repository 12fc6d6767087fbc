"""On-device accuracy check: stream test images to a device (QEMU or a board) over the
serial protocol and compare its predictions with PyTorch and with the host C build.

The device runs the same generated C as the host build, compiled for the target; with
``-ffp-contract=off`` on both sides the scores should be bit-identical, so any
difference from the host build points at the toolchain, the firmware or the link.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .quant.reference import c_images, reference_model
from .errors import SvtError
from .evaluate import predict
from .hostemu import build_host, run_host
from .manifest import read_manifest
from .serial_link import COUNTER_CYCLES, DeviceInfo, SerialLink


@dataclass
class DeviceCheck:
    board: str
    emulated: bool
    samples: int
    accuracy: float  # the device's top-1 accuracy
    torch_accuracy: float
    host_accuracy: float
    agreement_torch: float  # fraction of images where device and PyTorch predict the same
    agreement_host: float  # ... device and host C build
    identical_to_host: bool  # every score bit-identical to the host build
    max_abs_diff_host: float
    max_abs_diff_torch: float
    counter_mean: float  # raw counter per inference (cycles or SysTick ticks)
    instructions_mean: float | None  # QEMU: guest instructions per inference
    cycles_mean: float | None  # hardware: core cycles per inference
    seconds_per_image: float  # host wall time per request, link included
    link: dict = field(default_factory=dict)
    device_stats: dict = field(default_factory=dict)
    predictions: np.ndarray | None = None
    scores: np.ndarray | None = None

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("predictions", "scores")}
        for k in ("accuracy", "torch_accuracy", "host_accuracy", "agreement_torch",
                  "agreement_host"):
            d[k] = round(d[k], 5)
        d["max_abs_diff_host"] = float(f"{self.max_abs_diff_host:.3g}")
        d["max_abs_diff_torch"] = float(f"{self.max_abs_diff_torch:.3g}")
        d["seconds_per_image"] = round(self.seconds_per_image, 4)
        return d


def check_identity(info: DeviceInfo, model_hash: str, input_size: int, num_classes: int,
                   where: str) -> None:
    """The device must run this model: same hash, input size and classes."""
    if info.model_hash != model_hash:
        raise SvtError(f"{where} runs model {info.model_hash} but this model is {model_hash}: "
                       "flash the firmware built from it (svt-deploy firmware, then flash)")
    if info.input_size != input_size or info.num_classes != num_classes:
        raise SvtError(f"{where} expects {info.input_size} inputs and {info.num_classes} "
                       f"classes, the model {input_size} and {num_classes}")


def run_device(link: SerialLink, info: DeviceInfo, images: np.ndarray, progress=None):
    """(scores [N, classes], labels [N], counters [N], wall seconds [N]) from the device."""
    n = len(images)
    scores = np.zeros((n, info.num_classes), np.int64 if info.integer else np.float32)
    labels = np.zeros(n, np.int64)
    counters = np.zeros(n, np.int64)
    seconds = np.zeros(n)
    for i in range(n):
        result = link.infer(images[i], info)
        scores[i], labels[i], counters[i], seconds[i] = (result.scores, result.label,
                                                          result.counter, result.seconds)
        if int(np.argmax(result.scores)) != result.label:
            raise SvtError(f"the device reported class {result.label} for image {i} but its "
                           f"scores peak at {int(np.argmax(result.scores))}")
        if progress is not None:
            progress(1)
    return scores, labels, counters, seconds


def device_check(link: SerialLink, info: DeviceInfo, loaded, ds, samples: int,
                 project_dir: str | Path, progress=None) -> DeviceCheck:
    """Stream the first ``samples`` test images through the device and compare. The device
    must run the model of ``project_dir`` (its manifest), whose host build is the
    reference."""
    model = read_manifest(project_dir).model
    x_raw, y = ds.split("test", samples)
    if len(y) == 0:
        raise SvtError("the data has no test images")
    x = c_images(loaded, ds.as_tensor(x_raw))
    if int(np.prod(x.shape[1:])) != model.input_size:
        raise SvtError(f"the data's images have {int(np.prod(x.shape[1:]))} values but the "
                       f"model of {project_dir} takes {model.input_size}")
    check_identity(info, model.model_hash, model.input_size, model.num_classes, link.name)
    torch_scores = predict(reference_model(loaded, ds.input_shape), ds, x_raw)
    binary = build_host(project_dir, output=Path(project_dir) / "svt_host")
    host_scores, _ = run_host(binary, x, info.num_classes)
    start = time.monotonic()
    dev_scores, dev_labels, counters, _ = run_device(link, info, x, progress)
    wall = time.monotonic() - start
    stats = link.device_stats()
    torch_pred, host_pred = torch_scores.argmax(1), host_scores.argmax(1)
    counter_mean = float(counters.mean())
    cycles = counter_mean if info.counter_kind == COUNTER_CYCLES else None
    return DeviceCheck(
        board=info.board, emulated=info.emulated, samples=len(y),
        accuracy=float((dev_labels == y).mean()),
        torch_accuracy=float((torch_pred == y).mean()),
        host_accuracy=float((host_pred == y).mean()),
        agreement_torch=float((dev_labels == torch_pred).mean()),
        agreement_host=float((dev_labels == host_pred).mean()),
        identical_to_host=bool(np.array_equal(dev_scores, host_scores) if info.integer else
                               np.array_equal(dev_scores.view(np.uint32),
                                              host_scores.astype(np.float32).view(np.uint32))),
        max_abs_diff_host=float(np.abs(dev_scores - host_scores).max()),
        max_abs_diff_torch=float(np.abs(dev_scores - torch_scores).max()),
        counter_mean=counter_mean, instructions_mean=info.instructions(counter_mean),
        cycles_mean=cycles, seconds_per_image=wall / len(y),
        link=link.link_stats(), device_stats=stats, predictions=dev_labels, scores=dev_scores)


def format_check(c: DeviceCheck, clock_hz: int | None = None) -> str:
    where = f"{c.board} ({'QEMU' if c.emulated else 'hardware'})"
    same = "bit-identical to" if c.identical_to_host else "differ from"
    lines = [f"device check on {where}, {c.samples} test images",
             (f"  accuracy          device {c.accuracy:.4f}   PyTorch {c.torch_accuracy:.4f}   "
              f"host C {c.host_accuracy:.4f}"),
             (f"  agreement         with PyTorch {c.agreement_torch:.4f}   with host C "
              f"{c.agreement_host:.4f}   scores {same} host C (max |diff| "
              f"{c.max_abs_diff_host:.3g}; vs PyTorch {c.max_abs_diff_torch:.3g})")]
    if c.instructions_mean is not None:
        lines.append(f"  cost              {c.instructions_mean:,.0f} instructions per inference "
                     "(QEMU -icount, SysTick resolution)")
    elif c.cycles_mean is not None:
        ms = f" = {1000 * c.cycles_mean / clock_hz:.1f} ms at {clock_hz / 1e6:g} MHz" \
            if clock_hz else ""
        lines.append(f"  cost              {c.cycles_mean:,.0f} cycles per inference{ms}")
    lines.append(f"  link              {c.seconds_per_image:.3f} s per image; "
                 f"{c.link.get('retries', 0)} retries, {c.link.get('naks', 0)} NAKs, "
                 f"{c.link.get('damaged_replies', 0)} damaged replies; device replays "
                 f"{c.device_stats.get('replays', 0)}")
    return "\n".join(lines)
