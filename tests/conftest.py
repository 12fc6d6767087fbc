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

# at most 2 threads (the CI machine's cores); OMP_NUM_THREADS=1 when sharing the machine
torch.set_num_threads(max(1, min(int(os.environ.get("OMP_NUM_THREADS", 2)), os.cpu_count() or 1)))


def run_cli(*args: str, check: bool = False, timeout: int = 900,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``svt-deploy`` in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "toolchain", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or REPO,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check and proc.returncode != 0:
        raise AssertionError(f"svt-deploy {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def fmnist():
    from toolchain.data import load_dataset
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
    from toolchain.training import train_steps
    x, y = ds.split("train", samples)
    train_steps(model, ds, x, y, epochs=epochs, lr=lr, seed=0)
    model.eval()
    return model


@pytest.fixture(scope="session")
def published_trained(tmp_path_factory, small_npz):
    """The published-layout Spikformer (outside the package), trained briefly on the subset:
    returns (model_def, weights_path, data_path)."""
    sys.path.insert(0, str(FIXTURES))
    import published_spikformer
    from toolchain.data import load_dataset

    ds = load_dataset(small_npz)
    torch.manual_seed(0)
    model = train_tiny(published_spikformer.build(), ds, epochs=4, lr=5e-3)
    weights = tmp_path_factory.mktemp("published") / "weights.pt"
    torch.save(model.state_dict(), weights)
    return PUBLISHED_DEF, weights, small_npz


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory, small_npz):
    """Our own SViT at a tiny size (embed 32, 1 block, T=4; ~70 % test accuracy), trained
    briefly: (checkpoint, data)."""
    from toolchain.data import load_dataset
    from toolchain.loading import LoadedModel
    from toolchain.model import SViTConfig, SpikingViT

    ds = load_dataset(small_npz)
    torch.manual_seed(0)
    model = train_tiny(SpikingViT(SViTConfig.reference(embed_dim=32, depth=1, heads=4,
                                                       mlp_ratio=2, pool_after=[1, 2],
                                                       stem_channels=[8, 16, 32])),
                       ds, epochs=4, lr=5e-3)
    path = tmp_path_factory.mktemp("tiny") / "tiny_svit.pt"
    LoadedModel(model, None, path, input_shape=ds.input_shape).save(path)
    return path, small_npz
