"""Every forward pass the tool runs goes through here.

SpikingJelly neurons keep their membrane potential between calls and clear it only when the
input shape changes; published models leave the reset to the caller (``reset_net`` after each
batch). So the tool never trusts a user's module to manage its state: each forward starts from
reset neurons, and a forward that returns ``(logits, extras...)`` (the Spike-driven Transformer
returns ``(logits, hook)``) is reduced to its logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import base

from .errors import SvtError


def reset_state(model: nn.Module) -> None:
    """Put every stateful SpikingJelly module of ``model`` back to its initial state.

    Walks the modules on every call (no cached list as ``functional.reset_net`` keeps), so a
    model whose modules pruning surgery replaced is still reset completely."""
    for m in model.modules():
        if isinstance(m, base.MemoryModule):
            m.reset()


def logits_of(out) -> torch.Tensor:
    """The class scores of a forward's result: a tensor, or the first item of a tuple."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise SvtError(f"the model's forward returned {type(out).__name__}; expected the class "
                       "scores as a tensor (or a tuple whose first element is the scores)")
    return out


def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class scores of ``model`` on ``x``, starting from reset neuron state."""
    reset_state(model)
    return logits_of(model(x))
