"""Shared fixtures: small real data subsets and tiny models, so CI stays fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PUBLISHED_DEF = f"{FIXTURES / 'published_spikformer.py'}:build"
OFFICIAL_DEF = f"{FIXTURES / 'official_spikformer.py'}:build"  # the official CIFAR-10 layout
OFFICIAL_PER_STEP_DEF = f"{FIXTURES / 'official_spikformer.py'}:build_head_per_step"
SDT_DEF = f"{FIXTURES / 'official_sdt.py'}:build"  # the official Spike-driven layout

# at most 2 threads (the CI machine's cores); OMP_NUM_THREADS=1 when sharing the machine
torch.set_num_threads(max(1, min(int(os.environ.get("OMP_NUM_THREADS", 2)), os.cpu_count() or 1)))


def randomize_bn(model):
    """Non-trivial BatchNorm statistics, so an untrained model spikes and a wrong structure
    shows in its outputs."""
    import torch.nn as nn

    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 2 + 0.5)
    return model.eval()


def run_cli(*args: str, check: bool = False, timeout: int = 900,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``svt-deploy`` in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "svt_deploy", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or REPO,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check and proc.returncode != 0:
        raise AssertionError(f"svt-deploy {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def evaluate_against_published_loop(model_def: str, weights, data) -> dict:
    """``svt-deploy evaluate --json`` on a third-party model, checked to the last image
    against the measure of the published training scripts: their own forward, with
    ``functional.reset_net`` after every batch. Returns evaluate's result."""
    import json

    from spikingjelly.activation_based import functional

    from svt_deploy.data import load_dataset
    from svt_deploy.loading import load_model

    model = load_model(model_def, weights).model
    ds = load_dataset(data)
    x, y = ds.split("test")
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), 100):
            out = model(ds.as_tensor(x[i:i + 100]))
            logits = out[0] if isinstance(out, tuple) else out  # (logits, hook) forwards
            correct += int((logits.argmax(1).numpy() == y[i:i + 100]).sum())
            functional.reset_net(model)
    proc = run_cli("evaluate", "--model-def", model_def, "--weights", str(weights),
                   "--data", str(data), "--json", check=True)
    result = json.loads(proc.stdout)
    assert result["samples"] == len(y)
    assert round(result["accuracy"] * len(y)) == correct
    assert result["structure"] == "verified"
    return result


@pytest.fixture(scope="session")
def fmnist():
    from svt_deploy.data import load_dataset
    return load_dataset()


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory, fmnist) -> Path:
    """3,000 training and 500 test Fashion-MNIST images as an NHW uint8 .npz."""
    path = tmp_path_factory.mktemp("data") / "fmnist_small.npz"
    rng = np.random.default_rng(0)
    tr = rng.permutation(len(fmnist.y_train))[:3000]
    np.savez(path, x_train=fmnist.x_train[tr, 0], y_train=fmnist.y_train[tr],
             x_test=fmnist.x_test[:500, 0], y_test=fmnist.y_test[:500])
    return path


def train_tiny(model, ds, epochs: float = 2, samples: int = 3000, lr: float = 3e-3):
    from svt_deploy.training import train_steps
    x, y = ds.split("train", samples)
    train_steps(model, ds, x, y, epochs=epochs, lr=lr, seed=0)
    model.eval()
    return model


def trained_third_party(model_def: str, data: Path, weights: Path):
    """A third-party model file, loaded the way the tool loads it, trained briefly on the
    subset: (model_def, weights_path, data_path)."""
    from svt_deploy.data import load_dataset
    from svt_deploy.loading import import_factory

    ds = load_dataset(data)
    torch.manual_seed(0)
    model = train_tiny(import_factory(model_def)(), ds, epochs=4, lr=5e-3)
    torch.save(model.state_dict(), weights)
    return model_def, weights, data


@pytest.fixture(scope="session")
def published_trained(tmp_path_factory, small_npz):
    """A Spikformer in the official CIFAR-10 source's layout (imports unchanged, no
    self-reset)."""
    return trained_third_party(OFFICIAL_DEF, small_npz,
                               tmp_path_factory.mktemp("published") / "weights.pt")


@pytest.fixture(scope="session")
def sdt_trained(tmp_path_factory, small_npz):
    """A Spike-driven Transformer in the official source's layout."""
    return trained_third_party(SDT_DEF, small_npz, tmp_path_factory.mktemp("sdt") / "weights.pt")


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory, small_npz):
    """Our own SViT at a tiny size (embed 32, 1 block, T=4; ~70 % test accuracy), trained
    briefly: (checkpoint, data)."""
    from svt_deploy.data import load_dataset
    from svt_deploy.loading import LoadedModel
    from svt_deploy.model import SViTConfig, SpikingViT

    ds = load_dataset(small_npz)
    torch.manual_seed(0)
    model = train_tiny(SpikingViT(SViTConfig.reference(embed_dim=32, depth=1, heads=4,
                                                       mlp_ratio=2, pool_after=[1, 2],
                                                       stem_channels=[8, 16, 32])),
                       ds, epochs=4, lr=5e-3)
    path = tmp_path_factory.mktemp("tiny") / "tiny_svit.pt"
    LoadedModel(model, None, path, input_shape=ds.input_shape).save(path)
    return path, small_npz
