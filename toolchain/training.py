"""Training pieces shared by the reference-model script and pruning's fine-tuning."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from .data import Dataset
from .evaluate import on_device
from .forward import run_model
from .runtime import current


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a shift of up to 2 pixels (zero pad + crop)."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2))
    dy = torch.randint(0, 5, (b,), generator=gen)
    dx = torch.randint(0, 5, (b,), generator=gen)
    rows = dy[:, None] + torch.arange(h)[None]
    cols = dx[:, None] + torch.arange(w)[None]
    idx_b = torch.arange(b)[:, None, None]
    return padded[idx_b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_steps(model: nn.Module, ds: Dataset, images: np.ndarray, labels: np.ndarray, *,
                epochs: float, lr: float, batch_size: int = 64, weight_decay: float = 0.01,
                seed: int = 0, warmup_fraction: float = 0.05, progress=None) -> float:
    """Fine-tune ``model`` for ``epochs`` passes over ``images`` (AdamW, cosine schedule).

    On the runtime's device; under torchrun with DistributedDataParallel, each rank taking
    its slice of every global batch (the batches, augmentation and schedule are the same on
    every rank). Returns the mean loss of the last 50 steps (this rank's).
    ``progress(n)`` is called per batch.
    """
    rt = current()
    steps_per_epoch = max(1, len(labels) // batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    order = rng.permutation(len(labels))
    with on_device(model, rt.device):
        net = _data_parallel(model, rt)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        net.train()
        for step in range(total):
            offset = step % steps_per_epoch
            if offset == 0 and step:
                order = rng.permutation(len(labels))
            idx = order[offset * batch_size:(offset + 1) * batch_size]
            x = augment(ds.as_tensor(images[idx]), gen)  # the whole batch: same RNG draws
            y = torch.from_numpy(labels[idx])
            part = rt.shard(len(idx))
            x, y = x[part].to(rt.device), y[part].to(rt.device)
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, total, lr, max(1, int(total * warmup_fraction)))
            loss = F.cross_entropy(run_model(net, x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if progress is not None:
                progress(len(idx))
    model.eval()
    return float(np.mean(losses[-50:]))


def _data_parallel(model: nn.Module, rt) -> nn.Module:
    if not rt.distributed:
        return model
    # published models define modules their forward never calls (LayerNorms, talking_heads)
    return DistributedDataParallel(
        model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
        find_unused_parameters=True)
