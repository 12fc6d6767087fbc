"""The op registry: an op added from outside the package, through the registry alone (one
Python class and one C kernel file), runs through IR -> memory plan -> C -> host build."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron

from conftest import randomize_bn
from svt_deploy import ops
from svt_deploy.codegen import generate
from svt_deploy.errors import SvtError
from svt_deploy.forward import run_model
from svt_deploy.graph import Node
from svt_deploy.hostemu import build_host, run_host
from svt_deploy.ir import extract_ir, run_ir
from svt_deploy.memory import plan_memory
from svt_deploy.ops.base import CCall, Op, Step, spike_bytes

TOY_KERNEL = """\
/* Toy op for the registry test: a NOT of every spike train. */
#include <string.h>

#include "svt_kernels.h"

void toy_spike_invert(const uint8_t *in, uint32_t neurons, uint32_t T, uint8_t *out)
{
    const uint32_t all = (1u << T) - 1u;
    memset(out, 0, (neurons * T + 7u) / 8u);
    for (uint32_t i = 0; i < neurons; ++i) {
        svt_spikes_or(out, i, T, ~svt_spikes_get(in, i, T) & all);
    }
}
"""


class SpikeInvert(nn.Module):
    """1 - spikes: a layer the package has never heard of."""

    def forward(self, x):
        return 1.0 - x


def make_invert_op(kernel_dir):
    class Invert(Op):
        kind = "spike_invert"
        modules = (SpikeInvert,)
        kernels = {"toy_spike_invert": ("toy_spike_invert.c",)}
        c_declarations = ("void toy_spike_invert(const uint8_t *in, uint32_t neurons, "
                          "uint32_t T, uint8_t *out);",)

        def capture_module(self, b, name, m, x, out):
            src = b.src(x, name)
            if src.kind != "spikes":
                raise SvtError(f"{name}: SpikeInvert needs spikes")
            b.add_node(Node(name, self.kind, [src.name], "spikes", src.channels, src.height,
                            src.width, modules=[name]))
            b.bind(out, name)
            return True

        def run(self, n, vals, ir):
            return 1.0 - vals[n.inputs[0]]

        def schedule(self, n, s):
            return Step(n.name, "toy_spike_invert", [n.name], s.inputs(n), "spikes",
                        n.channels, n.height, n.width,
                        spike_bytes(n.tokens * n.channels, s.timesteps), op=n.op)

        def c_call(self, step, c):
            return CCall("toy_spike_invert", [c.arena(step.inputs[0]), c.u(step.neurons), c.T,
                                              c.arena(step.name)])

    op = Invert()
    op.kernel_dir = kernel_dir
    return op


class ToyNet(nn.Module):
    def __init__(self, timesteps=3):
        super().__init__()
        self.timesteps = timesteps
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, 1, 1), nn.BatchNorm2d(4)
        self.lif1 = neuron.LIFNode(tau=2.0, step_mode="m", detach_reset=True)
        self.invert = SpikeInvert()
        self.conv2, self.bn2 = nn.Conv2d(4, 8, 3, 2, 1), nn.BatchNorm2d(8)
        self.lif2 = neuron.LIFNode(tau=2.0, step_mode="m", detach_reset=True)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.bn1(self.conv1(x)).unsqueeze(0).repeat(self.timesteps, 1, 1, 1, 1)
        x = self.invert(self.lif1(x))
        t, b = x.shape[:2]
        x = self.bn2(self.conv2(x.flatten(0, 1)))
        x = self.lif2(x.reshape(t, b, *x.shape[1:]))
        return self.head(x.flatten(3).mean(3).mean(0))


@pytest.fixture
def invert_op(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "toy_spike_invert.c").write_text(TOY_KERNEL)
    op = ops.register(make_invert_op(tmp_path / "kernels"))
    yield op
    ops.unregister(op.kind)


def toy_model():
    torch.manual_seed(0)
    return randomize_bn(ToyNet()).eval()


def test_an_unregistered_layer_is_refused_in_one_line():
    with pytest.raises(SvtError, match=r"unsupported layer invert \(SpikeInvert\)"):
        extract_ir(toy_model(), (1, 12, 12))


def test_toy_op_runs_through_ir_plan_c_and_host_build(invert_op, tmp_path):
    model = toy_model()
    x = torch.rand((24, 1, 12, 12), generator=torch.Generator().manual_seed(1))
    ir = extract_ir(model, (1, 12, 12))  # verifies run_ir (the op's run) against PyTorch
    assert [n.op for n in ir.nodes].count("spike_invert") == 1
    plan = plan_memory(ir)
    step = plan.step("invert")
    assert (step.kernel, step.out_bytes) == ("toy_spike_invert", spike_bytes(4 * 144, 3))
    generated = generate(ir, plan, tmp_path / "gen", source="toy")
    assert "toy_spike_invert.c" in generated.files
    assert "toy_spike_invert(ARENA(" in (tmp_path / "gen" / "model.c").read_text()
    binary = build_host(tmp_path / "gen")  # -Wall -Wextra -Wconversion -Wshadow -Werror
    scores, _ = run_host(binary, x.numpy(), ir.num_classes, workers=1)
    with torch.no_grad():
        ref = run_model(model, x).numpy()
        interpreted = run_ir(ir, x).numpy()
    assert np.abs(scores - ref).max() < 1e-3
    assert np.abs(interpreted - ref).max() < 1e-4
    assert (scores.argmax(1) == ref.argmax(1)).all()
