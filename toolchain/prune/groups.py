"""Which channels are coupled, and cutting them.

Units are whole channels of a channel space from the IR (SPS conv filters, MLP hidden
channels, attention heads, the embedding width across the residual stream); removing a
unit shrinks every module on that space (producers' outputs, their BatchNorms, consumers'
inputs), so the result is a smaller dense model. A group is one prunable unit type:
usually one space, several when the model's own forward ties their widths together.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SvtError
from ..ir import IR, _common_prefix
from ..quant.reference import deployed_ir
from ..loading import LoadedModel
from ..surgery import keep_inputs, keep_outputs
from .importance import SYNAPTIC, ranked_units


@dataclass
class Group:
    """One prunable unit type: usually one channel space; several when the model's own
    forward ties their widths together (e.g. published Spikformer code reshapes q/k/v
    with the embedding width, so the embedding and the heads shrink in step)."""

    spaces: tuple[str, ...]
    label: str
    step: int  # channels each space loses per unit
    units: int = 0
    params: int = 0  # parameters of all layers touching the group (the ranking key)

    @property
    def space(self) -> str:
        return self.spaces[0]

    def keep_units(self, ir: IR, space: str, keep: int) -> int:
        """Units of ``space`` kept when the group keeps ``keep`` units."""
        return keep * self.step // ir.spaces[space].unit


def touching_params(ir: IR, spaces) -> int:
    spaces = set(spaces)
    return sum(n.params for n in ir.nodes if n.op in SYNAPTIC and (
        n.space in spaces or ir.node(n.inputs[0]).space in spaces))


def touching_steps(ir: IR, plan, spaces) -> list[str]:
    """Steps of ``plan`` whose output or an input lies in one of ``spaces``: the steps
    whose work shrinks when the group does."""
    spaces = set(spaces)

    def space_of(name: str) -> str | None:
        return None if name == "input" else ir.node(name).space

    return [s.name for s in plan.steps
            if any(space_of(n) in spaces for n in s.nodes[:1] + ir.node(s.nodes[0]).inputs)]


def group_units(ir: IR, g: Group) -> int:
    """Units ``g`` has in ``ir`` (0 once its space is gone)."""
    return ir.spaces[g.space].size // g.step if g.space in ir.spaces else 0


def keep_count(units: int, rate: float) -> int:
    """Units kept when ``rate`` of ``units`` are pruned (at least one)."""
    return max(1, units - int(round(rate * units)))


def sized_groups(ir: IR, groups: list[Group]) -> list[Group]:
    """The groups with their current sizes in ``ir``, largest first; spent ones dropped."""
    out = []
    for g in groups:
        if g.space not in ir.spaces:
            continue
        units = ir.spaces[g.space].size // g.step
        if units >= 2:
            out.append(Group(g.spaces, g.label, g.step, units, touching_params(ir, g.spaces)))
    return sorted(out, key=lambda g: (-g.params, g.label))


def single_space_groups(ir: IR) -> list[Group]:
    """Every prunable space as its own group (no check that the forward follows)."""
    return sized_groups(ir, [Group((sp.name,), sp.label, sp.unit)
                             for sp in ir.spaces.values() if sp.prunable])


def discover_groups(loaded: LoadedModel, ir: IR, log=None) -> list[Group]:
    """Prunable groups of this model, checked by trial surgery: a space that cannot be
    pruned alone is tried together with the other spaces of the same width (at their
    common granularity), keeping the smallest set that works. Spaces that cannot be
    pruned at all are reported through ``log`` and left out."""
    candidates = [sp for sp in ir.spaces.values() if sp.prunable]

    def works(spaces: list[str]) -> int | None:
        step = math.lcm(*(ir.spaces[s].unit for s in spaces))
        if any(ir.spaces[s].size <= step for s in spaces):
            return None
        g = Group(tuple(spaces), "", step)
        try:
            pruned_copy(loaded, ir, g, ir.spaces[spaces[0]].size // step - 1)
            return step
        except SvtError:
            return None

    groups, failed = [], []
    for sp in candidates:
        if works([sp.name]) is not None:
            groups.append(Group((sp.name,), sp.label, sp.unit))
        else:
            failed.append(sp.name)
    linked: set[str] = set()
    for name in failed:
        if name in linked:
            continue
        size = ir.spaces[name].size
        spaces = [name] + [o.name for o in candidates
                           if o.name != name and o.size == size and o.name not in linked]
        if len(spaces) == 1 or works(spaces) is None:
            if log is not None:
                log(f"  {ir.spaces[name].label}: cannot be pruned (the model's forward does "
                    "not follow a smaller width); left as is")
            continue
        for partner in spaces[1:]:  # keep only the partners the forward really needs
            trial = [s for s in spaces if s != partner]
            if len(trial) > 1 and works(trial) is not None:
                spaces = trial
        linked.update(spaces)
        groups = [g for g in groups if g.space not in spaces]
        label = " + ".join(ir.spaces[s].label for s in spaces) + " (widths tied by the forward)"
        groups.append(Group(tuple(spaces), label, works(spaces)))
    return sized_groups(ir, groups)


# ----------------------------------------------------------------------------- surgery

def _record_attr(loaded: LoadedModel, path: str, attr: str, value: int) -> None:
    loaded.attrs = {**loaded.attrs, path: {**loaded.attrs.get(path, {}), attr: value}}


def prune_space(loaded: LoadedModel, ir: IR, space: str, keep_units: int) -> None:
    """Remove the least important units of ``space`` in place (physical surgery).

    Besides the tensors, integer attributes of the module that owns the space and hold
    its width (e.g. a stored hidden size used in a reshape) follow the new width; the
    caller re-derives and verifies the IR, so a wrong guess cannot pass silently."""
    sp = ir.spaces[space]
    if keep_units >= sp.units:
        return
    keep = ranked_units(ir, space, keep_units)
    channels = torch.as_tensor((keep[:, None] * sp.unit + np.arange(sp.unit)).reshape(-1))
    modules = dict(loaded.model.named_modules())
    for name in sp.producers + sp.norms:
        keep_outputs(modules[name], channels)
    for name in sp.consumers:
        keep_inputs(modules[name], channels)
    if sp.heads_attr is not None:
        path, attr = sp.heads_attr
        setattr(modules[path], attr, keep_units)
        _record_attr(loaded, path, attr, keep_units)
    owner = _common_prefix(sp.producers + sp.norms + sp.consumers)
    if owner:
        for attr, value in list(vars(modules[owner]).items()):
            if type(value) is int and value == sp.size and (owner, attr) != sp.heads_attr:
                setattr(modules[owner], attr, len(channels))
                _record_attr(loaded, owner, attr, len(channels))


def prune_group(loaded: LoadedModel, ir: IR, group: Group, keep: int) -> None:
    for space in group.spaces:
        prune_space(loaded, ir, space, group.keep_units(ir, space, keep))


def pruned_copy(loaded: LoadedModel, ir: IR, group: Group, keep: int) -> tuple[LoadedModel, IR]:
    """A pruned copy and its re-derived (and verified) IR; a model whose forward cannot
    follow the surgery raises SvtError naming the group."""
    new = copy.deepcopy(loaded)
    prune_group(new, ir, group, keep)
    try:
        return new, deployed_ir(new, ir.input_shape)
    except (RuntimeError, SvtError) as e:
        raise SvtError(f"pruning {group.label or group.space} breaks the model's forward "
                       f"({str(e).splitlines()[0][:120]})") from None
