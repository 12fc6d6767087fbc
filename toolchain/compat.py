"""Imports that published SViT code uses and this install lacks, so model files run unchanged.

The official Spikformer and Spike-driven Transformer sources import

    from spikingjelly.clock_driven.neuron import MultiStepLIFNode    # SpikingJelly < 0.0.0.0.14
    from timm.models.layers import to_2tuple, trunc_normal_, DropPath

SpikingJelly 2.0 renamed ``clock_driven`` to ``activation_based`` (multi-step neurons became
``step_mode='m'``) and has no CuPy backend on a CPU machine; timm needs a torchvision that
does not import beside the pinned torch. ``install()`` registers stand-ins for exactly those
names, and only where the real module cannot be imported. svt-deploy calls it before it
imports a ``--model-def`` file; in your own scripts::

    import svt_deploy.compat  # noqa: F401  (makes the imports above resolve)
"""

from __future__ import annotations

import importlib.util
import sys
import types

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron, surrogate


def _multi_step(kwargs: dict, surrogate_function) -> dict:
    """The SpikingJelly 2.0 keywords for an old multi-step neuron's extra arguments."""
    # 'cupy' / 'torch' picked an implementation, not a model; SpikingJelly 2.0 picks its own
    kwargs.pop("backend", None)
    kwargs.pop("lava_s_cale", None)
    if surrogate_function is not None:  # else SpikingJelly's own default
        kwargs["surrogate_function"] = surrogate_function
    return {**kwargs, "step_mode": "m"}


class MultiStepLIFNode(neuron.LIFNode):
    """``clock_driven.neuron.MultiStepLIFNode``: a LIF neuron over ``[T, ...]`` inputs."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function=None,
                 detach_reset: bool = False, **kwargs):
        super().__init__(tau=float(tau), decay_input=decay_input, v_threshold=v_threshold,
                         v_reset=v_reset, detach_reset=detach_reset,
                         **_multi_step(kwargs, surrogate_function))


class MultiStepParametricLIFNode(neuron.ParametricLIFNode):
    """``clock_driven.neuron.MultiStepParametricLIFNode`` (a learnable time constant)."""

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True,
                 v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function=None, detach_reset: bool = False, **kwargs):
        super().__init__(init_tau=float(init_tau), decay_input=decay_input,
                         v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                         **_multi_step(kwargs, surrogate_function))


class MultiStepIFNode(neuron.IFNode):
    """``clock_driven.neuron.MultiStepIFNode``."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function=None, detach_reset: bool = False, **kwargs):
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                         **_multi_step(kwargs, surrogate_function))


def _clock_driven_neuron() -> types.ModuleType:
    mod = types.ModuleType("spikingjelly.clock_driven.neuron",
                           "svt-deploy stand-in: SpikingJelly 2.0 neurons under the old names")
    for name in dir(neuron):  # LIFNode, IFNode, ... keep their 2.0 meaning
        if not name.startswith("_"):
            setattr(mod, name, getattr(neuron, name))
    mod.MultiStepLIFNode = MultiStepLIFNode
    mod.MultiStepParametricLIFNode = MultiStepParametricLIFNode
    mod.MultiStepIFNode = MultiStepIFNode
    return mod


# ----------------------------------------------------------------------------- timm helpers

def to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0,
                  a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    return nn.init.trunc_normal_(tensor, mean, std, a, b)


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's): identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * (mask / keep if self.scale_by_keep else mask)


def register_model(fn):
    return fn


def _cfg(url: str = "", **kwargs) -> dict:
    return {"url": url, **kwargs}


def _timm_modules() -> dict[str, types.ModuleType]:
    helpers = {"to_2tuple": to_2tuple, "trunc_normal_": trunc_normal_, "DropPath": DropPath}
    mods = {name: types.ModuleType(name, "svt-deploy stand-in for the timm helpers that "
                                         "published SViT code imports")
            for name in ("timm", "timm.models", "timm.models.layers", "timm.layers",
                         "timm.models.registry", "timm.models.vision_transformer")}
    for name in ("timm.models.layers", "timm.layers"):
        vars(mods[name]).update(helpers)
    mods["timm.models.registry"].register_model = register_model
    mods["timm.models"].register_model = register_model
    mods["timm.models.vision_transformer"]._cfg = _cfg
    return mods


# ----------------------------------------------------------------------------- install

def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _timm_works() -> bool:
    if "timm" in sys.modules:
        return True
    if not _importable("timm"):
        return False
    try:  # an installed timm can still fail to import (a torchvision built for another torch)
        import timm.models.layers  # noqa: F401
        return True
    except Exception:
        return False


def _register(mods: dict[str, types.ModuleType]) -> None:
    for name, mod in mods.items():
        sys.modules.setdefault(name, mod)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])


def install() -> None:
    """Register the stand-ins whose real modules are missing (idempotent)."""
    import spikingjelly

    if "spikingjelly.clock_driven" not in sys.modules \
            and not _importable("spikingjelly.clock_driven"):
        cd = types.ModuleType("spikingjelly.clock_driven",
                              "svt-deploy stand-in for SpikingJelly's pre-2.0 package name")
        sys.modules["spikingjelly"] = spikingjelly
        _register({"spikingjelly.clock_driven": cd,
                   "spikingjelly.clock_driven.neuron": _clock_driven_neuron(),
                   "spikingjelly.clock_driven.functional": functional,
                   "spikingjelly.clock_driven.surrogate": surrogate,
                   "spikingjelly.clock_driven.layer": layer})
    if not _timm_works():
        _register(_timm_modules())


install()
