"""The Spike-driven Transformer family (BICLab's published layout): SDSA attention, max-pool on
BatchNorm outputs and the real-valued membrane-shortcut stream, through IR, pruning, C (host
and emulated device) and TFLite. The fixture never resets its neurons and returns
(logits, hook), as the published code does."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron

from conftest import SDT_DEF, evaluate_against_published_loop, randomize_bn, run_cli
from svt_deploy.codegen import generate
from svt_deploy.errors import SvtError
from svt_deploy.forward import run_model
from svt_deploy.hostemu import build_host, run_host
from svt_deploy.ir import extract_ir, run_ir
from svt_deploy.loading import LoadedModel, import_factory
from svt_deploy.memory import plan_memory
from svt_deploy.prune import discover_groups, pruned_copy


def random_sdt(**overrides):
    model = import_factory(SDT_DEF)()
    if overrides:
        model = type(model)(**{**dict(img_size_h=28, img_size_w=28, patch_size=4,
                                      in_channels=1, num_classes=10, embed_dims=32,
                                      num_heads=4, mlp_ratios=2, depths=1, T=4,
                                      pooling_stat="0011"), **overrides})
    return randomize_bn(model)


def images(n, seed=0):
    return torch.rand((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))


def test_sdsa_membrane_stream_and_bn_maxpool_are_understood():
    ir = extract_ir(random_sdt(), (1, 28, 28))  # verified against the model's forward
    ops = [n.op for n in ir.nodes]
    assert ops.count("kv_sum") == 1 and ops.count("mask") == 1
    kv = next(n for n in ir.nodes if n.op == "kv_sum")
    assert kv.attrs == {"head_dim": 8, "heads": 4}
    assert ir.consumers(kv.name)[0].attrs["v_threshold"] == 0.5
    pool = ir.node("patch_embed.maxpool3")
    assert pool.kind == "current" and (pool.height, pool.width) == (7, 7)
    assert [n.kind for n in ir.nodes if n.op == "add"] == ["current"] * 3
    head_lif = ir.node("head_lif")
    assert ir.node(head_lif.inputs[0]).op == "mean" and head_lif.tokens == 1
    assert [n.op for n in ir.nodes[-2:]] == ["mean", "dense"]


@pytest.mark.parametrize("overrides", [{}, {"pooling_stat": "1100", "T": 3},
                                       {"mlp_ratios": 1, "num_heads": 2, "depths": 2}])
def test_host_c_equals_pytorch(tmp_path, overrides):
    """Stem pooling on spikes and on BN outputs, another T, and an MLP whose hidden width
    equals the input (the published code then adds the residual inside the MLP)."""
    model = random_sdt(**overrides)
    ir = extract_ir(model, (1, 28, 28))
    plan = plan_memory(ir)
    kernels = {s.kernel for s in plan.steps}
    assert {"sdsa_kv_lif", "spike_mask", "add_membrane", "lif_layer"} <= kernels
    generate(ir, plan, tmp_path / "gen", source="sdt")
    x = images(40)
    scores, _ = run_host(build_host(tmp_path / "gen"), x.numpy(), ir.num_classes, workers=1)
    ref = run_model(model, x).detach().numpy()
    assert np.abs(scores - ref).max() < 1e-4
    assert (scores.argmax(1) == ref.argmax(1)).all()
    np.testing.assert_allclose(run_ir(ir, x).numpy(), ref, atol=1e-4)


class PooledStream(nn.Module):
    """Two BatchNorm outputs added into a real-valued stream, then max-pooled: the pool
    cannot be fused into one conv, so the stream is pooled as membrane floats."""

    def __init__(self):
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.a, self.a_bn = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b, self.b_bn = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.lif0, self.lif1 = (neuron.LIFNode(tau=2.0, step_mode="m") for _ in range(2))
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        t, b = 4, x.shape[0]
        x = x.unsqueeze(0).repeat(t, 1, 1, 1, 1).flatten(0, 1)
        s = self.lif0(self.stem_bn(self.stem(x)).reshape(t, b, 8, 28, 28)).flatten(0, 1)
        stream = self.a_bn(self.a(s)) + self.b_bn(self.b(s))
        out = self.lif1(self.pool(stream).reshape(t, b, 8, 14, 14))
        return self.head(out.flatten(3).mean(3).mean(0))


def test_max_pool_of_a_membrane_stream_equals_pytorch(tmp_path):
    model = randomize_bn(PooledStream())
    ir = extract_ir(model, (1, 28, 28))
    plan = plan_memory(ir)
    assert {"add_membrane", "maxpool2d_membrane", "lif_layer"} <= {s.kernel for s in plan.steps}
    generate(ir, plan, tmp_path / "gen", source="pool")
    x = images(20)
    scores, _ = run_host(build_host(tmp_path / "gen", sanitize=True), x.numpy(),
                         ir.num_classes, workers=1)
    ref = run_model(model, x).detach().numpy()
    assert np.abs(scores - ref).max() < 1e-4
    assert (scores.argmax(1) == ref.argmax(1)).all()


def test_sanitizer_build_runs_clean(tmp_path):
    model = random_sdt()
    ir = extract_ir(model, (1, 28, 28))
    generate(ir, plan_memory(ir), tmp_path / "gen", source="sdt")
    binary = build_host(tmp_path / "gen", sanitize=True)
    scores, _ = run_host(binary, images(4).numpy(), ir.num_classes, workers=1,
                         env={"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                              "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
    assert np.abs(scores - run_model(model, images(4)).detach().numpy()).max() < 1e-4


def test_pruning_groups_follow_the_forward():
    """Heads, MLP hidden, embedding and stem filters; the published reshape ties the
    embedding to the heads (C // num_heads), so they shrink together."""
    model = random_sdt()
    loaded = LoadedModel(model, SDT_DEF, "w", input_shape=(1, 28, 28))
    ir = extract_ir(model, (1, 28, 28))
    groups = {g.label: g for g in discover_groups(loaded, ir)}
    tied = next(g for label, g in groups.items() if "embedding" in label)
    assert "heads of block.0.attn" in tied.label and tied.step == 8
    assert any("fc1_conv" in label for label in groups)
    assert sum("patch_embed.proj_conv" in label for label in groups) == 3
    for g in groups.values():  # every group prunes and the result re-verifies
        new, new_ir = pruned_copy(loaded, ir, g, g.units - 1)
        assert new_ir.params < ir.params
    new, _ = pruned_copy(loaded, ir, tied, tied.units - 1)
    assert new.model.block[0].attn.num_heads == 3


def test_unsupported_family_features_are_one_line():
    with pytest.raises(SvtError, match="parametric LIF"):
        extract_ir(random_sdt(spike_mode="plif"), (1, 28, 28))
    with pytest.raises(SvtError, match="Erode"):
        extract_ir(random_sdt(dvs_mode=True), (1, 28, 28))
    with pytest.raises(SvtError, match="per timestep"):  # TET: scores [T, B, classes]
        extract_ir(random_sdt(TET=True), (1, 28, 28))


def test_tflite_fp32_equals_pytorch():
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    from svt_deploy.tflite_export import LiteRTModel, convert

    model = random_sdt()
    ir = extract_ir(model, (1, 28, 28))
    x = images(20)
    ref = run_model(model, x).detach().numpy()
    scores = LiteRTModel(convert(ir, None).fp32).predict(x.permute(0, 2, 3, 1).numpy())
    assert np.abs(scores - ref).max() < 1e-4


def test_evaluate_equals_the_published_training_loops_measure(sdt_trained):
    result = evaluate_against_published_loop(*sdt_trained)
    assert result["accuracy"] > 0.3  # trained briefly (4 passes over 2,400 images); chance 0.1


def test_deploys_end_to_end(sdt_trained, tmp_path):
    model_def, weights, data = sdt_trained
    out = tmp_path / "sdt"
    proc = run_cli("--board", "stm32h7", "--max-drop", "8", "--max-reduction", "15",
                   "--model-def", model_def, "--weights", str(weights), "--data", str(data),
                   "--out", str(out), "--host-samples", "300", "--device-samples", "5",
                   "--profile-samples", "300", "--check-samples", "600")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["pruned"]["flash_bytes"] <= 0.85 * report["baseline"]["flash_bytes"] + 4
    assert report["host_emulation"]["agreement"] >= 0.995
    assert report["device"]["agreement"] == 1.0 and report["firmware"]["fits"]
