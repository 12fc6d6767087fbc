"""The IR's data: nodes, channel spaces and the graph that holds them.

Kept apart from the tracer (``ir.py``) so that the op modules (``ops/``) can build and read
nodes without importing the tracer that dispatches to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Node:
    name: str
    op: str  # input | conv2d | linear | lif | maxpool2d | add | ssa | kv_sum | mask | mean | dense
    inputs: list[str]
    kind: str  # analog | current | spikes | count | vector | scores
    channels: int
    height: int = 1
    width: int = 1
    weight: np.ndarray | None = None  # folded: [Cout, Cin, kh, kw] or [Cout, Cin]
    bias: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)  # torch modules this node came from
    space: str = ""  # channel space of the output
    quant: object | None = None  # integer arithmetic (quant/integer.py), None in fp32

    @property
    def tokens(self) -> int:
        return self.height * self.width

    @property
    def params(self) -> int:
        return sum(a.size for a in (self.weight, self.bias) if a is not None)


@dataclass
class ChannelSpace:
    """Channels that must be removed together: one prunable group."""

    name: str
    size: int
    unit: int = 1  # channels per prunable unit (head_dim for attention)
    producers: list[str] = field(default_factory=list)  # modules whose output dim is here
    consumers: list[str] = field(default_factory=list)  # modules whose input dim is here
    norms: list[str] = field(default_factory=list)  # BatchNorms on this space
    heads_attr: tuple[str, str] | None = None  # (module, attribute) holding the head count
    prunable: bool = True
    reason: str = ""
    label: str = ""  # human-readable name

    @property
    def units(self) -> int:
        return self.size // self.unit


@dataclass
class IR:
    nodes: list[Node]
    spaces: dict[str, ChannelSpace]
    timesteps: int
    input_shape: tuple[int, int, int]
    num_classes: int

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)
