"""Importance of a unit: the L2 norm of the BN-folded weights it touches.

That is the rows it produces (with the folded bias) and the columns that read it. Folding
matters for spiking layers: BN's gamma/sigma rescales what reaches the LIF threshold, so
raw conv weights misjudge a channel whose BN amplifies it; and a unit whose folded
producer rows, bias and consumer columns are all zero never spikes and is read by nobody,
so removing it changes nothing.
"""

from __future__ import annotations

import numpy as np

from ..ir import IR

SYNAPTIC = ("conv2d", "linear", "dense")  # IR ops that hold weights


def unit_importance(ir: IR, space: str) -> np.ndarray:
    """L2 norm per unit of the BN-folded weights (and biases) on ``space``."""
    sp = ir.spaces[space]
    sq = np.zeros(sp.size, np.float64)
    for n in ir.nodes:
        if n.op not in SYNAPTIC:
            continue
        w = n.weight.astype(np.float64).reshape(n.weight.shape[0], n.weight.shape[1], -1)
        if n.space == space:
            sq += (w ** 2).sum(axis=(1, 2)) + n.bias.astype(np.float64) ** 2
        if ir.node(n.inputs[0]).space == space:
            sq += (w ** 2).sum(axis=(0, 2))
    return np.sqrt(sq.reshape(sp.units, sp.unit).sum(axis=1))


def ranked_units(ir: IR, space: str, keep_units: int) -> np.ndarray:
    """The ``keep_units`` most important units of ``space``, in ascending index order
    (ties keep the lower index)."""
    imp = unit_importance(ir, space)
    return np.sort(np.argsort(-imp, kind="stable")[:keep_units])
