"""Quantization-aware fine-tuning: while an integer model fine-tunes, each quantized layer's
weight is seen by the forward pass rounded to its integer grid (a straight-through
estimator passes the gradient to the float weight underneath), so training recovers the
error of the rounding the deploy will do instead of moving weights the rounding then
undoes. When training ends every weight is left on its grid, so quantizing again gives
exactly the integers the training saw.

The deploy quantizes the BN-folded weight, per output channel. Folding scales each output
channel by one factor (BatchNorm after the layer, the input normalization of the first
layer), and a symmetric per-channel grid scales with it, so rounding the module's own
weight per output channel gives the same integers. Each layer is checked for that against
the quantized IR before training; a layer where it does not hold (a norm folded in on the
input side) trains in float and is named in the log.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..loading import LoadedModel
from .packing import quantize_per_channel, quantize_per_tensor


class FakeQuant(nn.Module):
    """w -> w rounded to the deploy's symmetric grid of ``bits`` (``quantize_per_channel``,
    or ``quantize_per_tensor`` for the head). Forward rounds, backward passes the gradient
    through."""

    def __init__(self, bits: int, per_tensor: bool):
        super().__init__()
        self.bits = bits
        self.quantize = quantize_per_tensor if per_tensor else quantize_per_channel

    def grid(self, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(integers, per-row scale) the deploy gives ``w``."""
        return self.quantize(w.detach().cpu().double().numpy(), self.bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q, scale = self.grid(w)
        rounded = torch.from_numpy(q * scale.reshape(-1, *([1] * (q.ndim - 1)))).to(w)
        return w + (rounded - w).detach()


def _layers(loaded: LoadedModel, ir) -> tuple[dict[str, FakeQuant], list[str]]:
    """(module name -> its fake quantizer, layers that must train in float), for the
    quantized ``ir`` of ``loaded``."""
    modules = dict(loaded.model.named_modules())
    chosen: dict[str, FakeQuant] = {}
    skipped: list[str] = []
    for n in ir.nodes:
        bits = getattr(n.quant, "bits", None)
        q = getattr(n.quant, "q", None)
        if bits is None or q is None or not n.modules:
            continue
        name = n.modules[0]
        module = modules.get(name)
        weight = getattr(module, "weight", None)
        fake = FakeQuant(bits, per_tensor=n.op == "dense")
        if (weight is None or weight.numel() != q.size or name in chosen
                or not _same_integers(fake, weight, q)):
            skipped.append(n.name)
            chosen.pop(name, None)
            continue
        chosen[name] = fake
    return chosen, skipped


def _same_integers(fake: FakeQuant, weight: torch.Tensor, q: np.ndarray) -> bool:
    """Whether rounding the module's weight gives the deploy's integers. Folding rounds in
    float, so a value on a rounding tie may land either side: ties are common once a
    fine-tuned (on-grid) layer loses its peak weight to pruning and is rescaled by a ratio
    like 7/6. Allow any tie, and 0.1 % of the rest, to be one step away."""
    mine, scale = fake.grid(weight)
    w = weight.detach().cpu().double().numpy()
    ratio = (w / scale.reshape(-1, *([1] * (w.ndim - 1)))).reshape(q.shape)
    diff = np.abs(mine.reshape(q.shape).astype(np.float64) - q.astype(np.float64))
    tie = np.abs(np.abs(ratio - np.floor(ratio)) - 0.5) < 1e-4
    return bool(diff.max() <= 1 and (diff[~tie] > 0).sum() <= 1e-3 * diff.size)


@contextmanager
def quantization_aware(loaded: LoadedModel, ir, log=print):
    """Within the block, ``loaded.model``'s integer layers (as its quantized ``ir`` has
    them) train through their grids; on exit their weights are left rounded. Yields ``{"on_grid": [...], "float": [...]}``
    (module names; both empty for an fp32 model, which is untouched)."""
    if loaded.precision == "fp32":
        yield {"on_grid": [], "float": []}
        return
    layers, skipped = _layers(loaded, ir)
    if skipped:
        log(f"  quantization-aware: {', '.join(skipped)} fine-tune in float "
            "(their integers do not follow from the module's weight alone)")
    modules = dict(loaded.model.named_modules())
    for name, fake in layers.items():
        parametrize.register_parametrization(modules[name], "weight", fake)
    try:
        yield {"on_grid": list(layers), "float": skipped}
    finally:
        for name in layers:
            parametrize.remove_parametrizations(modules[name], "weight",
                                                leave_parametrized=True)
