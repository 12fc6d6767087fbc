"""Integer precision: the pass that turns an IR's weighted layers into integer arithmetic,
and the fixed-point conventions every integer op (``ops/*.py``'s ``quantize`` and
``run``) and C kernel (``kernels/*_q.c``) share.

Spikes are 0/1 and the residual stream holds small integer counts, so a layer fed by them
accumulates integer weights into an int32 sum with no scale at all: the scale ``s_c`` of
output channel c never leaves the layer. Its currents are kept in units of
``u_c = s_c / 2**frac_bits`` (``acc * 2**frac_bits + bias``) and the LIF it feeds runs in
the same units, its threshold ``ceil(v_th / u_c)``. With tau = 2**k the decay is an
arithmetic shift: ``h = v + ((x - v) >> k)`` (floor, as ``>>`` on int64 in PyTorch and on
int32 in C with GCC). The first layer multiplies uint8 pixels minus the input's zero point
by int8 weights, with the pixel scale (1/255, over std when normalized) folded into u_c.
Attention counts ``(q kᵀ) v`` are integers until Spikformer's scale, which becomes the
threshold's unit. The head sums over tokens and time instead of averaging and uses one
scale for every class, so its int32 scores compare in one unit.

The only approximations are the rounding of weights, biases and thresholds; everything
after them is exact integer arithmetic, identical in PyTorch and in C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SvtError
from ..graph import IR, Node
from .packing import BITS

LIMIT = 2 ** 30  # |currents|, |membranes| and thresholds stay below: x - v fits int32
MAX_FRAC_BITS = 16


@dataclass
class WeightQuant:
    """A synaptic layer's integer weights (conv2d, linear, dense)."""

    bits: int  # 8 or 4
    q: np.ndarray  # int8 values, the node's weight shape
    scale: np.ndarray  # float64 [out]: weight ≈ scale[c] * q[c]
    bias: np.ndarray  # int64 [out], in current units (frac_bits applied)
    frac_bits: int = 0
    zero_point: int = 0  # the analog first layer: the pixel value that means 0.0
    input_scale: float = 1.0  # the analog first layer: the value of one pixel step
    acc_bound: int = 0  # the largest |sum| of weights times inputs

    @property
    def exact_dtype(self) -> torch.dtype:
        """A float type whose sums of these integers are exact (float32 below 2**24, faster
        in PyTorch's kernels than float64)."""
        return torch.float32 if self.acc_bound < 2 ** 24 else torch.float64


@dataclass
class LifQuant:
    """A LIF layer run in its producer's current units."""

    threshold: np.ndarray  # int64 [C]
    decay_shift: int  # tau = 2 ** decay_shift


@dataclass
class AttentionQuant:
    frac_bits: int  # attention counts are shifted left by this before the LIF


@dataclass
class SumQuant:
    divisor: int  # a mean computed as a sum: mean = sum / divisor (all sums so far)


@dataclass(frozen=True)
class InputQuant:
    """How the uint8 pixels the sensor gives map to the model's float input:
    ``x = scale * (pixel - zero_point)``."""

    scale: float = 1 / 255
    zero_point: int = 0

    @classmethod
    def of(cls, normalize) -> InputQuant:
        if normalize is None:
            return cls()
        mean, std = normalize
        return cls(1 / (255 * std), int(round(255 * mean)))

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (as the dataset gives them) -> the uint8 pixels they came from."""
        return torch.clamp(torch.round(x.double() / self.scale + self.zero_point), 0, 255)


def lif_decay_shift(lif: Node) -> int:
    tau = lif.attrs["tau"]
    shift = round(math.log2(tau)) if tau >= 1 else -1
    if shift < 0 or 2.0 ** shift != tau:
        raise SvtError(f"integer precision needs LIF time constants that are powers of two; "
                       f"{lif.name} has tau {tau:g}: use --precision fp32")
    if lif.attrs["v_reset"] != 0:
        raise SvtError(f"integer precision needs LIFs that reset to 0; {lif.name} resets to "
                       f"{lif.attrs['v_reset']:g}: use --precision fp32")
    return shift


def frac_bits_for(acc_bound: np.ndarray, bias_units: np.ndarray, threshold_units: np.ndarray,
                  where: str) -> int:
    """The most fractional bits (<= MAX_FRAC_BITS) that keep currents, the membrane and
    the thresholds below LIMIT; per-channel bounds are in accumulator units."""
    for f in range(MAX_FRAC_BITS, -1, -1):
        scale = 2.0 ** f
        worst = max(float(np.max(acc_bound * scale + np.abs(bias_units) * scale + 1)),
                    float(np.max(np.ceil(threshold_units * scale))))
        if worst < LIMIT:
            return f
    raise SvtError(f"{where}: its currents do not fit 32-bit integers at any precision; "
                   "use --precision fp32")


def ceil_int(x: np.ndarray) -> np.ndarray:
    return np.ceil(np.asarray(x, np.float64)).astype(np.int64)


def round_int(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, np.float64)).astype(np.int64)


class Quantizer:
    """Walks the IR in order and asks each node's op to set its integer arithmetic
    (``Op.quantize``), knowing every value's largest magnitude (``bound``)."""

    def __init__(self, ir: IR, precision: dict[str, str], input_quant: InputQuant):
        self.ir, self.precision, self.input = ir, precision, input_quant
        self.bounds: dict[str, int] = {}

    def bits(self, n: Node) -> int:
        return BITS[self.precision[n.name]]

    def bound(self, name: str) -> int:
        """The largest magnitude of an input value of ``name`` (pixels, spikes, counts)."""
        return self.bounds[name]

    def lif_after(self, n: Node) -> Node:
        users = self.ir.consumers(n.name)
        if len(users) != 1 or users[0].op != "lif":
            raise SvtError(f"integer precision: {n.name} must feed exactly one LIF layer; "
                           "use --precision fp32")
        return users[0]

    def set_lif(self, lif: Node, unit: np.ndarray, frac_bits: int) -> None:
        """The LIF fed by a layer whose current unit is ``unit / 2**frac_bits``."""
        lif.quant = LifQuant(
            np.minimum(ceil_int(lif.attrs["v_threshold"] * 2.0 ** frac_bits / unit), LIMIT - 1),
            lif_decay_shift(lif))
