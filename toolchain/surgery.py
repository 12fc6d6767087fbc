"""Physical surgery on torch modules: keep a subset of output/input channels.

The result is a smaller dense module (really smaller tensors, updated size attributes),
not a mask. Used by the pruner and by the loader of pruned checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import SvtError

_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value.detach().clone(), old.requires_grad))
    else:
        module.register_buffer(name, value.detach().clone())


def keep_outputs(module: nn.Module, keep: torch.Tensor) -> None:
    """Keep output channels ``keep`` (sorted indices) of a Conv/Linear or BatchNorm."""
    if isinstance(module, _SYNAPTIC):
        _set(module, "weight", module.weight[keep])
        if module.bias is not None:
            _set(module, "bias", module.bias[keep])
        if isinstance(module, nn.Linear):
            module.out_features = len(keep)
        else:
            module.out_channels = len(keep)
    elif isinstance(module, _NORMS):
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, name, None) is not None:
                _set(module, name, getattr(module, name)[keep])
        module.num_features = len(keep)
    else:
        raise SvtError(f"cannot prune {type(module).__name__}: only Conv/Linear/BatchNorm")


def keep_inputs(module: nn.Module, keep: torch.Tensor) -> None:
    """Keep input channels ``keep`` of a Conv/Linear."""
    if not isinstance(module, _SYNAPTIC):
        raise SvtError(f"cannot prune inputs of {type(module).__name__}")
    _set(module, "weight", module.weight[:, keep])
    if isinstance(module, nn.Linear):
        module.in_features = len(keep)
    else:
        module.in_channels = len(keep)


def conform_to_state_dict(model: nn.Module, state_dict: dict) -> None:
    """Shrink modules to the shapes stored in a (pruned) state dict before loading it."""
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if key not in state_dict or not isinstance(module, _SYNAPTIC + _NORMS):
            continue
        want = tuple(state_dict[key].shape)
        have = tuple(module.weight.shape)
        if want == have:
            continue
        if len(want) != len(have) or any(w > h for w, h in zip(want, have)):
            return  # not a pruned version of this model: load_state_dict reports it
        keep_outputs(module, torch.arange(want[0]))
        if isinstance(module, _SYNAPTIC):
            keep_inputs(module, torch.arange(want[1]))


def set_attributes(model: nn.Module, attrs: dict) -> None:
    """Apply saved scalar attributes (e.g. ``{"blocks.0.attn": {"num_heads": 6}}``)."""
    modules = dict(model.named_modules())
    for path, values in attrs.items():
        if path not in modules:
            raise SvtError(f"checkpoint refers to module {path!r}, which the model lacks")
        for attr, value in values.items():
            setattr(modules[path], attr, value)
