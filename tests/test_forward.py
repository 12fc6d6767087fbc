"""Neuron state is the tool's job: every forward starts from reset neurons, whatever the user's
module does, and forwards that return (logits, extras) are read for their logits. The models
here never reset themselves, as published SpikingJelly code does not."""

import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import (FIXTURES, OFFICIAL_DEF, OFFICIAL_PER_STEP_DEF,
                      evaluate_against_published_loop, randomize_bn)

sys.path.insert(0, str(FIXTURES))
import published_spikformer  # noqa: E402

from svt_deploy.data import load_dataset  # noqa: E402
from svt_deploy.errors import SvtError  # noqa: E402
from svt_deploy.evaluate import accuracy, predict  # noqa: E402
from svt_deploy.ir import TRACE_BATCH, extract_ir  # noqa: E402
from svt_deploy.loading import import_factory, load_model  # noqa: E402
from svt_deploy.training import train_steps  # noqa: E402


def test_the_fixture_really_leaks_state_when_run_bare():
    """Guards the other tests: without our reset this model's scores depend on history."""
    model = randomize_bn(published_spikformer.build())
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = model(x).clone()
        second = model(x)
    assert not torch.allclose(first, second)


def test_scores_do_not_depend_on_batch_size_or_order(small_npz):
    ds = load_dataset(small_npz)
    model = randomize_bn(published_spikformer.build())
    x, _ = ds.split("test", 24)
    one_by_one = predict(model, ds, x, batch_size=1)
    batched = predict(model, ds, x, batch_size=6)  # four equal-size batches: the leak case
    order = np.random.default_rng(0).permutation(len(x))
    shuffled = predict(model, ds, x[order], batch_size=6)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(shuffled, one_by_one[order], atol=1e-5)


def test_trained_model_without_reset_same_accuracy_batch_250_and_image_by_image(
        published_trained):
    model_def, weights, data = published_trained
    loaded = load_model(model_def, weights)
    ds = load_dataset(data)
    x, y = ds.split("test")
    assert len(y) == 500
    assert accuracy(loaded.model, ds, x, y, batch_size=250) == \
        accuracy(loaded.model, ds, x, y, batch_size=1)


def test_evaluate_equals_the_training_loops_own_measure(published_trained):
    """The published training scripts reset with functional.reset_net after every batch."""
    evaluate_against_published_loop(*published_trained)


def test_trace_ignores_state_left_by_an_earlier_forward():
    model = randomize_bn(published_spikformer.build())
    with torch.no_grad():  # same batch size as the trace: the state would be inherited
        model(torch.rand(TRACE_BATCH, 1, 28, 28))
    extract_ir(model, (1, 28, 28))  # verifies against the model; raised before the fix


def test_training_steps_start_from_reset_state(small_npz):
    """Two identical training runs from the same weights must match, whatever state the
    module was left in before (a leaked state would change the first step's loss)."""
    ds = load_dataset(small_npz)
    x, y = ds.split("train", 64)
    a = randomize_bn(published_spikformer.build())
    b = randomize_bn(published_spikformer.build())
    with torch.no_grad():
        b(torch.rand(64, 1, 28, 28))  # leaves a membrane state of the training batch's shape
    loss_a = train_steps(a, ds, x, y, epochs=1, lr=1e-3, batch_size=64)
    loss_b = train_steps(b, ds, x, y, epochs=1, lr=1e-3, batch_size=64)
    assert loss_a == pytest.approx(loss_b, abs=1e-6)


class TupleOut(nn.Module):
    """A forward that returns (logits, hook), as the Spike-driven Transformer's does."""

    def __init__(self):
        super().__init__()
        self.inner = published_spikformer.build()

    def forward(self, x):
        return self.inner(x), {"hook": 1}


def test_tuple_output_is_read_for_its_logits(small_npz):
    ds = load_dataset(small_npz)
    wrapped = TupleOut().eval()
    randomize_bn(wrapped.inner)
    x, _ = ds.split("test", 6)
    np.testing.assert_allclose(predict(wrapped, ds, x), predict(wrapped.inner, ds, x))
    extract_ir(wrapped, (1, 28, 28))


def test_non_tensor_output_is_one_clear_error(small_npz):
    class DictOut(nn.Module):
        def forward(self, x):
            return {"logits": x.flatten(1)[:, :10]}

    ds = load_dataset(small_npz)
    with pytest.raises(SvtError, match="expected the class scores as a tensor"):
        predict(DictOut(), ds, ds.split("test", 2)[0])


def test_head_per_timestep_folds_into_one_head():
    per_step = randomize_bn(import_factory(OFFICIAL_PER_STEP_DEF)())
    ir = extract_ir(per_step, (1, 28, 28))  # verified against the model's own forward
    assert [n.op for n in ir.nodes[-2:]] == ["mean", "dense"]
    assert ir.nodes[-2].attrs == {"tokens": True, "time": True, "has_time": False}
    after_mean = randomize_bn(import_factory(OFFICIAL_DEF)())
    after_mean.load_state_dict(per_step.state_dict())
    x = torch.rand(5, 1, 28, 28)
    from svt_deploy.forward import run_model
    with torch.no_grad():
        torch.testing.assert_close(run_model(per_step, x), run_model(after_mean, x))


class PerTokenHead(nn.Module):
    """The head on every token at every timestep, averaged over tokens and then time."""

    def __init__(self):
        super().__init__()
        self.inner = published_spikformer.build()

    def forward(self, x):
        inner = self.inner
        x = x.unsqueeze(0).repeat(inner.T, 1, 1, 1, 1)
        x = inner.patch_embed(x)
        for blk in inner.block:
            x = blk(x)
        return inner.head(x.transpose(-1, -2)).mean(2).mean(0)


def test_head_per_token_and_timestep_folds_into_one_head():
    model = PerTokenHead()
    randomize_bn(model.inner)
    ir = extract_ir(model.eval(), (1, 28, 28))
    assert [n.op for n in ir.nodes[-2:]] == ["mean", "dense"]
    assert ir.nodes[-2].attrs["tokens"] and ir.nodes[-2].attrs["time"]


def test_official_source_imports_resolve_without_changes():
    """clock_driven.MultiStepLIFNode(backend='cupy') and timm's helpers load through the
    compatibility import, as SpikingJelly 2.0 neurons in multi-step mode."""
    import svt_deploy.compat  # noqa: F401
    from spikingjelly.activation_based import neuron
    from spikingjelly.clock_driven.neuron import MultiStepLIFNode

    lif = MultiStepLIFNode(tau=2.0, v_threshold=0.5, detach_reset=True, backend="cupy")
    assert isinstance(lif, neuron.LIFNode) and lif.step_mode == "m" and lif.v_threshold == 0.5
    model = import_factory(OFFICIAL_DEF)()
    assert any(isinstance(m, MultiStepLIFNode) for m in model.modules())


def test_parametric_lif_is_named_in_one_line():
    import svt_deploy.compat  # noqa: F401
    from spikingjelly.clock_driven.neuron import MultiStepParametricLIFNode

    model = randomize_bn(published_spikformer.build())
    model.patch_embed.proj_lif = MultiStepParametricLIFNode(init_tau=2.0, backend="cupy")
    with pytest.raises(SvtError, match=r"patch_embed\.proj_lif: a parametric LIF"):
        extract_ir(model, (1, 28, 28))


def test_host_c_scores_do_not_depend_on_order(tmp_path):
    """The generated C keeps no state between images either: shuffled in, permuted out."""
    from svt_deploy.codegen import generate
    from svt_deploy.hostemu import build_host, run_host
    from svt_deploy.memory import plan_memory

    model = randomize_bn(published_spikformer.build())
    ir = extract_ir(model, (1, 28, 28))
    generate(ir, plan_memory(ir), tmp_path / "gen", source="order")
    binary = build_host(tmp_path / "gen")
    x = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(3)).numpy()
    order = np.random.default_rng(1).permutation(len(x))
    forward, _ = run_host(binary, x, ir.num_classes, workers=1)
    shuffled, _ = run_host(binary, x[order], ir.num_classes, workers=2)
    np.testing.assert_array_equal(shuffled, forward[order])
