import gzip
import pickle

import numpy as np
import pytest

from svt_deploy.data import load_dataset
from svt_deploy.errors import SvtError


def _write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_gzipped_or_raw(tmp_path, gz):
    rng = np.random.default_rng(1)
    x_tr = rng.integers(0, 256, (50, 6, 5), dtype=np.uint8)
    y_tr = rng.integers(0, 10, 50).astype(np.uint8)
    x_te = rng.integers(0, 256, (7, 6, 5), dtype=np.uint8)
    y_te = rng.integers(0, 10, 7).astype(np.uint8)
    for name, arr in (("train-images-idx3-ubyte", x_tr), ("train-labels-idx1-ubyte", y_tr),
                      ("t10k-images-idx3-ubyte", x_te), ("t10k-labels-idx1-ubyte", y_te)):
        _write_idx(tmp_path / name, arr, gz)
    ds = load_dataset(tmp_path)
    assert ds.x_train.shape == (50, 1, 6, 5) and ds.x_test.shape == (7, 1, 6, 5)
    np.testing.assert_array_equal(ds.x_train[:, 0], x_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    t = ds.as_tensor(ds.x_test)
    assert t.dtype.is_floating_point and 0.0 <= t.min() and t.max() <= 1.0
    np.testing.assert_allclose(t[:, 0].numpy(), x_te / 255.0, rtol=1e-6)


def test_default_is_fashion_mnist(fmnist):
    assert fmnist.x_train.shape == (60000, 1, 28, 28) and fmnist.x_test.shape == (10000, 1, 28, 28)
    assert fmnist.num_classes == 10


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(1, 6):
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, 4))}
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [1, 2, 3]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(test))
    ds = load_dataset(tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and list(ds.y_test) == [1, 2, 3]
    np.testing.assert_array_equal(ds.x_test[0].reshape(-1), test[b"data"][0])


@pytest.mark.parametrize("layout", ["NHW", "NCHW"])
def test_npz_uint8_layouts(tmp_path, layout):
    rng = np.random.default_rng(3)
    shape = (30, 8, 8) if layout == "NHW" else (30, 2, 8, 8)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = rng.integers(0, 3, 30)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.x_train.shape == ((30, 1, 8, 8) if layout == "NHW" else (30, 2, 8, 8))


def test_float_images_are_used_as_given_and_normalize_is_opt_in(tmp_path):
    x = np.linspace(-2, 3, 4 * 16, dtype=np.float32).reshape(4, 4, 4)
    y = np.arange(4)
    np.savez(tmp_path / "f.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    ds = load_dataset(tmp_path / "f.npz")
    np.testing.assert_allclose(ds.as_tensor(ds.x_test)[:, 0].numpy(), x)
    ds = load_dataset(tmp_path / "f.npz", normalize=(0.5, 2.0))
    np.testing.assert_allclose(ds.as_tensor(ds.x_test)[:, 0].numpy(), (x - 0.5) / 2.0, rtol=1e-6)


def test_validation_split_is_fixed_disjoint_and_from_training(fmnist):
    xv, yv = fmnist.split("val")
    xt, yt = fmnist.split("train")
    assert len(yv) == 5000 and len(yt) == 55000
    xv2, _ = fmnist.split("val")
    np.testing.assert_array_equal(xv, xv2)  # fixed seed
    from svt_deploy.data import train_val_indices
    tr, va = train_val_indices(60000, 5000)
    assert not set(tr) & set(va) and len(set(tr) | set(va)) == 60000
    xte, _ = fmnist.split("test")
    assert len(xte) == 10000  # the test split is never carved


def test_bad_paths_give_one_line_errors(tmp_path):
    for path, needle in ((tmp_path / "missing", "does not exist"),
                         (tmp_path, "has no train-images")):
        with pytest.raises(SvtError) as e:
            load_dataset(path)
        assert needle in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(SvtError):
        load_dataset(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", x_train=np.zeros((2, 3, 3)))
    with pytest.raises(SvtError, match="lacks array"):
        load_dataset(tmp_path / "y.npz")
