"""Batched inference on the CPU: predictions, scores and top-1 accuracy."""

from __future__ import annotations

import numpy as np
import torch

from .data import Dataset, batches


@torch.no_grad()
def predict(model: torch.nn.Module, ds: Dataset, images: np.ndarray,
            batch_size: int = 250, progress=None) -> np.ndarray:
    """Class scores ``[N, classes]`` for ``images`` (the model is put in eval mode)."""
    model.eval()
    out = []
    for x, _ in batches(ds, images, np.zeros(len(images), np.int64), batch_size):
        out.append(model(x).float().numpy())
        if progress is not None:
            progress(len(x))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(model: torch.nn.Module, ds: Dataset, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 250, progress=None) -> float:
    scores = predict(model, ds, images, batch_size, progress)
    return float((scores.argmax(1) == labels).mean()) if len(labels) else 0.0
