"""Batched inference: predictions, scores and top-1 accuracy.

Every batch starts from reset neuron state (``forward.run_model``), so the scores do not
depend on the batch size or on the order of the images. The device and, under torchrun,
the sharding of accuracy checks across ranks come from ``runtime.current()``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .data import Dataset, batches
from .forward import run_model
from .runtime import current
from .stages import StageCache, stage_key


@contextmanager
def on_device(model: torch.nn.Module, device: torch.device):
    """Run ``model`` on ``device`` for a while; it lives on the CPU otherwise (IR extraction
    and pruning surgery read its weights there)."""
    if device.type == "cpu":
        yield model
        return
    model.to(device)
    try:
        yield model
    finally:
        model.to("cpu")


@torch.no_grad()
def predict(model: torch.nn.Module, ds: Dataset, images: np.ndarray,
            batch_size: int | None = None, progress=None) -> np.ndarray:
    """Class scores ``[N, classes]`` for ``images`` (the model is put in eval mode)."""
    rt = current()
    model.eval()
    out = []
    with on_device(model, rt.device):
        for x, _ in batches(ds, images, np.zeros(len(images), np.int64),
                            batch_size or rt.batch_size):
            scores = run_model(model, x.to(rt.device))  # an integer model's are int64
            out.append((scores.float() if scores.is_floating_point() else scores).cpu().numpy())
            if progress is not None:
                progress(len(x))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(model: torch.nn.Module, ds: Dataset, images: np.ndarray, labels: np.ndarray,
             batch_size: int | None = None, progress=None, sharded: bool = True) -> float:
    """Top-1 accuracy. Under torchrun (``sharded``) each rank scores its share of the images
    and the correct counts are added up: every rank gets the single-process number."""
    if not len(labels):
        return 0.0
    rt = current()
    part = rt.shard(len(labels)) if sharded else slice(None)
    scores = predict(model, ds, images[part], batch_size, progress)
    correct = int((scores.argmax(1) == labels[part]).sum()) if len(scores) else 0
    return (rt.all_sum(correct) if sharded else correct) / len(labels)


def cached_test_split_accuracy(model: torch.nn.Module, ds: Dataset, fingerprint: str,
                               samples: int | None, cache: StageCache,
                               bar=None) -> tuple[float, int]:
    """(top-1 accuracy, images) on the first ``samples`` test images (reporting only),
    cached in ``cache`` (a keyed ``stages.StageCache``, e.g. ``StageCache.work(out)``) by
    the model's ``fingerprint``, the data's and the image count. ``bar(total)`` makes the
    progress bar (a context manager with ``update``) used when it is measured."""
    x, y = ds.split("test", samples)

    def measure() -> dict:
        if bar is None:
            return {"accuracy": accuracy(model, ds, x, y)}
        with bar(len(y)) as b:
            return {"accuracy": accuracy(model, ds, x, y, progress=b.update)}

    key = stage_key("test", fingerprint, ds.fingerprint(), len(y))
    return cache.through("test", key, measure)["accuracy"], len(y)
