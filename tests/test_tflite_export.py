"""TFLite export: the IR built in TensorFlow, converted to fp32/int8 .tflite, run with
LiteRT and with TensorFlow Lite Micro. Skipped where the [tflite] extra is not installed
(except the missing-TensorFlow error, which is checked everywhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO


def run_svt(*args: str, prelude: str = "pass", timeout: int = 600) -> subprocess.CompletedProcess:
    """``svt-deploy ARGS`` through ``svt_deploy.cli.main`` in a fresh interpreter."""
    code = (f"import sys; {prelude}; from svt_deploy.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore",
                               "OMP_NUM_THREADS": "1"})


def test_without_tensorflow_the_error_is_one_line_with_the_install_hint(tmp_path):
    proc = run_svt("export-tflite", "--out", str(tmp_path / "t"),
                   prelude="sys.modules['tensorflow'] = None")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "pip install .[tflite]" in proc.stderr and "Traceback" not in proc.stderr


tflite_deps = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None
        for m in ("tensorflow", "ai_edge_litert", "tflite_micro")),
    reason="needs the [tflite] extra: tensorflow-cpu, ai-edge-litert, tflite-micro")


class SplitSpy:
    """A dataset wrapper that records which splits were read."""

    def __init__(self, ds):
        self._ds, self.splits = ds, []

    def split(self, which, *a, **k):
        self.splits.append(which)
        return self._ds.split(which, *a, **k)

    def __getattr__(self, name):
        return getattr(self._ds, name)


@pytest.fixture(scope="module")
def tiny_export(tiny_reference, tmp_path_factory):
    """The tiny trained SViT exported to fp32 + int8: (loaded, ds, ir, out_dir, meta, spy)."""
    pytest.importorskip("tensorflow")
    from svt_deploy.data import load_dataset
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model
    from svt_deploy.tflite_export import export

    ckpt, data = tiny_reference
    loaded = load_model(None, ckpt)
    ds = load_dataset(data)
    ir = extract_ir(loaded.model, ds.input_shape)
    out = tmp_path_factory.mktemp("tflite")
    spy = SplitSpy(ds)
    _, meta = export(ir, spy, out, representative=100)
    return loaded, ds, ir, out, meta, spy


@tflite_deps
def test_export_writes_fp32_and_full_integer_int8_calibrated_on_training_images(tiny_export):
    _, _, ir, out, meta, spy = tiny_export
    assert (out / "model_fp32.tflite").stat().st_size == meta["bytes"]["model_fp32.tflite"]
    assert meta["int8_mode"] == "full-integer"
    assert (out / "model_int8.tflite").stat().st_size < meta["bytes"]["model_fp32.tflite"]
    assert spy.splits == ["train"] and meta["representative"] == {"split": "train",
                                                                  "images": 100}
    # weights are stored once: the fp32 flatbuffer holds the fp32 parameters plus a graph
    # much smaller than them (no second, pre-scaled weight copy)
    assert ir.params * 4 < meta["bytes"]["model_fp32.tflite"] < ir.params * 4 + 80_000
    ops = meta["ops"]["fp32"]
    assert ops["BATCH_MATMUL"] == 2 and ops["CONV_2D"] == 5  # SSA; stem + RPE convs once
    assert "CAST" not in ops and set(meta["ops"]["int8"]) == set(ops)


@tflite_deps
def test_litert_fp32_agrees_with_pytorch_and_int8_runs(tiny_export):
    from svt_deploy.evaluate import predict
    from svt_deploy.tflite_export import LiteRTModel, to_nhwc

    loaded, ds, _, out, _, _ = tiny_export
    x, y = ds.split("test", 300)
    ref = predict(loaded.model, ds, x)
    images = to_nhwc(ds.as_tensor(x).numpy())
    fp32 = LiteRTModel((out / "model_fp32.tflite").read_bytes()).predict(images)
    assert (fp32.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert np.median(np.abs(fp32 - ref)) < 1e-4
    int8 = LiteRTModel((out / "model_int8.tflite").read_bytes()).predict(images)
    assert int8.shape == ref.shape and np.isfinite(int8).all()
    torch_acc, int8_acc = (ref.argmax(1) == y).mean(), (int8.argmax(1) == y).mean()
    assert int8_acc > 0.5 and int8_acc > torch_acc - 0.10, (torch_acc, int8_acc)


@tflite_deps
def test_tflm_smallest_arena_and_outputs_match_litert(tiny_export):
    from svt_deploy.tflite_export import (
        LiteRTModel,
        tflm_min_arena,
        tflm_predict,
        tflm_probe,
        to_nhwc,
    )

    _, ds, _, out, _, _ = tiny_export
    images = to_nhwc(ds.as_tensor(ds.split("test", 12)[0]).numpy())
    for name in ("model_fp32.tflite", "model_int8.tflite"):
        path = out / name
        arena = tflm_min_arena(path)
        assert 10_000 < arena < 4_000_000
        assert tflm_probe(path, arena) and not tflm_probe(path, arena - 16)
        scores, seconds = tflm_predict(path, arena, images)
        lite = LiteRTModel(path.read_bytes()).predict(images)
        assert seconds > 0 and scores.shape == lite.shape
        if name == "model_fp32.tflite":
            np.testing.assert_allclose(scores, lite, atol=1e-4)
        else:  # TFLM's reference int8 kernels round slightly differently from LiteRT's
            assert (scores.argmax(1) == lite.argmax(1)).mean() >= 0.9
            assert np.abs(scores - lite).max() <= 0.25 * (np.abs(lite).max() + 1)


@tflite_deps
def test_lif_with_other_tau_and_reset_matches_run_ir():
    """Non-default LIF constants (tau 3, v_reset -0.2): the regrouped LIF arithmetic and
    the reset term follow SpikingJelly's, up to float rounding."""
    from spikingjelly.activation_based import neuron

    from svt_deploy.ir import extract_ir, run_ir
    from svt_deploy.model import SpikingViT, SViTConfig
    from svt_deploy.tflite_export import LiteRTModel, convert, to_nhwc

    torch.manual_seed(1)
    model = SpikingViT(SViTConfig.reference(embed_dim=16, depth=1, heads=2, mlp_ratio=2,
                                            pool_after=[1, 2])).eval()
    for m in model.modules():
        if isinstance(m, neuron.LIFNode):
            m.tau, m.v_reset = 3.0, -0.2
    for p in model.parameters():  # a livelier untrained net: more spikes everywhere
        if p.dim() > 1:
            p.data *= 3
    ir = extract_ir(model, (1, 28, 28))
    images = torch.rand(16, 1, 28, 28)
    ref = run_ir(ir, images).numpy()
    scores = LiteRTModel(convert(ir, None).fp32).predict(to_nhwc(images.numpy()))
    assert np.abs(ref).max() > 0.1  # the check is not vacuous
    assert (np.abs(scores - ref) <= 1e-4 + 1e-3 * np.abs(ref)).mean() >= 0.9
    assert (scores.argmax(1) == ref.argmax(1)).mean() >= 0.9


@tflite_deps
def test_third_party_published_layout_exports_fp32(published_trained, tmp_path):
    from svt_deploy.data import load_dataset
    from svt_deploy.evaluate import predict
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model
    from svt_deploy.tflite_export import LiteRTModel, export, to_nhwc

    model_def, weights, data = published_trained
    loaded = load_model(model_def, weights)
    ds = load_dataset(data)
    ir = extract_ir(loaded.model, ds.input_shape)
    _, meta = export(ir, ds, tmp_path, representative=0)
    assert meta["int8_mode"] == "skipped" and not (tmp_path / "model_int8.tflite").exists()
    x, _ = ds.split("test", 200)
    ref = predict(loaded.model, ds, x)
    scores = LiteRTModel((tmp_path / "model_fp32.tflite").read_bytes()).predict(
        to_nhwc(ds.as_tensor(x).numpy()))
    assert (scores.argmax(1) == ref.argmax(1)).mean() >= 0.99


@tflite_deps
def test_cli_export_tflite_json(tiny_reference, tmp_path):
    ckpt, data = tiny_reference
    proc = run_svt("export-tflite", "--weights", str(ckpt), "--data", str(data), "--out",
                   str(tmp_path), "--representative", "50", "--samples", "100",
                   "--tflm-samples", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    saved = json.loads((tmp_path / "tflite_export.json").read_text())
    assert result == saved
    runtimes = {c["runtime"]: c for c in result["checks"]["runtimes"]}
    assert set(runtimes) == {"LiteRT fp32", "LiteRT int8", "TFLM fp32", "TFLM int8"}
    assert runtimes["LiteRT fp32"]["agreement"] >= 0.99
    assert runtimes["TFLM fp32"]["samples"] == 5 and runtimes["TFLM fp32"]["arena_bytes"] > 0
    assert runtimes["TFLM int8"]["arena_bytes"] < runtimes["TFLM fp32"]["arena_bytes"]
