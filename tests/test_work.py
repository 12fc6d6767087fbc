"""The work an inference costs (svt_deploy.work, svt-deploy analyze): synaptic operations
counted by each op against a brute-force count of the same events, on tiny untrained
models of both families (BatchNorm randomized so they spike)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import run_cli
from svt_deploy.codegen import model_hash
from svt_deploy.data import load_dataset
from svt_deploy.ir import extract_ir, run_ir
from svt_deploy.loading import load_model
from svt_deploy.manifest import Manifest, ModelFacts
from svt_deploy.memory import plan_memory
from svt_deploy.work import count_work


@pytest.fixture(params=["spikformer", "sdt"])
def trained(request, tiny_reference, sdt_trained):
    """(model, validation images) of a briefly trained tiny model: trained models spike in
    every layer, attention included, where untrained ones may stay silent."""
    if request.param == "spikformer":
        ckpt, data = tiny_reference
        loaded = load_model(weights=ckpt)
    else:
        model_def, weights, data = sdt_trained
        loaded = load_model(model_def, weights)
    ds = load_dataset(data)
    return loaded.model, ds.as_tensor(ds.split("val", 4)[0])


def brute_conv_sops(x: np.ndarray, out_c: int, k: int, stride: int, pad: int,
                    out_h: int, out_w: int) -> int:
    """Σ over input events (a count of k is k spikes) of the output pixels (x every output
    channel) whose window holds the event, by walking every output pixel's window."""
    total = 0
    for frame in x.reshape(-1, *x.shape[-3:]):
        active = frame.astype(np.int64)
        for oy in range(out_h):
            for ox in range(out_w):
                for ky in range(k):
                    for kx in range(k):
                        iy, ix = oy * stride - pad + ky, ox * stride - pad + kx
                        if 0 <= iy < frame.shape[1] and 0 <= ix < frame.shape[2]:
                            total += int(active[:, iy, ix].sum())
    return total * out_c


def test_sops_match_a_brute_force_count(trained):
    model, x = trained
    ir = extract_ir(model, (1, 28, 28))
    plan = plan_memory(ir)
    work = {s.name: s for s in count_work(ir, plan, x, batch_size=3).steps}
    _, vals = run_ir(ir, x, collect=True)
    checked = set()
    for n in ir.nodes:
        if n.name not in work:
            continue
        src = vals[n.inputs[0]].numpy() if n.inputs else None
        got = work[n.name].sops * len(x)
        if n.op == "conv2d" and ir.node(n.inputs[0]).kind != "analog":
            expect = brute_conv_sops(src, n.channels, n.attrs["kernel"], n.attrs["stride"],
                                     n.attrs["padding"], n.height, n.width)
            assert got == expect, n.name
            if expect:  # a layer no spike reached checks nothing
                checked.add("conv2d")
        elif n.op == "linear":
            assert got == int(src.sum()) * n.channels, n.name
            if got:
                checked.add("linear")
        elif n.op == "ssa":
            q, k, v = (vals[i].numpy() for i in n.inputs)
            heads, d = n.attrs["heads"], n.attrs["head_dim"]
            t, b, _, h, w = q.shape
            pairs = 0
            for ti in range(t):
                for bi in range(b):
                    for head in range(heads):
                        rows = slice(head * d, (head + 1) * d)
                        for tok in range(h * w):
                            ky, kx = divmod(tok, w)
                            pairs += int(k[ti, bi, rows, ky, kx].sum()) * \
                                int(v[ti, bi, rows, ky, kx].sum())
            assert got == pairs + int(q.sum()) * d
            if pairs:
                checked.add("ssa")
        elif n.op == "kv_sum":
            k, v = (vals[i].numpy() for i in n.inputs)
            assert got == int((k * v).sum())
            if got:
                checked.add("kv_sum")
    # what was checked on events that occurred: the convs (and, in Spikformer, the linear
    # layers; the Spike-driven layout projects with 1x1 convs) and the attention
    assert "conv2d" in checked and checked & {"ssa", "kv_sum"}, checked


def test_neuron_updates_and_dense_macs_follow_the_shapes(trained):
    model, x = trained
    ir = extract_ir(model, (1, 28, 28))
    w = count_work(ir, plan_memory(ir), x)
    t = ir.timesteps
    lif_neurons = sum(n.channels * n.tokens for n in ir.nodes if n.op == "lif")
    assert w.neuron_updates == lif_neurons * t
    for n in ir.nodes:
        step = next((s for s in w.steps if s.name == n.name), None)
        if n.op == "linear":
            assert step.macs == t * n.tokens * n.attrs["in_channels"] * n.channels
        if n.op == "conv2d" and ir.node(n.inputs[0]).kind != "analog":
            k = n.attrs["kernel"]
            assert step.macs == t * n.tokens * n.attrs["in_channels"] * k * k * n.channels
        if step is not None:
            assert step.sops <= step.macs, n.name  # an event-driven kernel never adds more
    assert 0 < w.sops < w.macs and w.floor == w.sops + w.neuron_updates


def test_analyze_reports_the_work(tiny_reference):
    ckpt, data = tiny_reference
    result = json.loads(run_cli("analyze", "--board", "stm32h7", "--weights", str(ckpt),
                                "--data", str(data), "--work-samples", "20", "--json",
                                check=True).stdout)
    work = result["work"]
    assert work["images"] == 20 and work["split"] == "validation"
    assert work["sops"] == sum(layer["sops"] for layer in result["layers"]) or \
        abs(work["sops"] - sum(layer["sops"] for layer in result["layers"])) <= len(
            result["layers"])  # per-layer figures are rounded
    assert 0 < work["sops"] < work["macs"] and work["floor"] > work["sops"]
    text = run_cli("analyze", "--board", "stm32h7", "--weights", str(ckpt), "--data",
                   str(data), "--work-samples", "20", check=True).stdout
    assert "floor (SOPs + neuron updates)" in text
    memory_only = json.loads(run_cli("analyze", "--board", "stm32h7", "--weights", str(ckpt),
                                     "--work-samples", "0", "--json", check=True).stdout)
    assert memory_only["work"] is None


def test_measured_from_another_models_deploy_is_refused(tmp_path, tiny_reference):
    ckpt, data = tiny_reference
    (tmp_path / "report.json").write_text(json.dumps({"device": {
        "instructions_per_inference": 123, "counter": "instructions (QEMU -icount)",
        "target": "qemu"}}))
    facts = ModelFacts(model_hash="0123456789abcdef", num_classes=10, input_shape=(1, 28, 28),
                       timesteps=4, params=1, weight_bytes=4, arena_bytes=8, precision="fp32",
                       kernels=())
    Manifest(facts).write(tmp_path / "firmware_project")
    args = ["analyze", "--board", "stm32h7", "--weights", str(ckpt), "--data", str(data),
            "--work-samples", "5", "--measured", str(tmp_path)]
    proc = run_cli(*args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "another model" in proc.stderr
    # the same directory holding this model's project: the measurement is shown
    loaded = load_model(weights=ckpt)
    own = model_hash(extract_ir(loaded.model, (1, 28, 28)))
    Manifest(dataclasses.replace(facts, model_hash=own)).write(tmp_path / "firmware_project")
    result = json.loads(run_cli(*args, "--json", check=True).stdout)
    assert result["measured"]["instructions_per_inference"] == 123
