"""Image folders (train/<class>/*.png|jpg, test/<class>/...): decoded on demand, streamed."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO, run_cli
from PIL import Image

from svt_deploy.data import batches, load_dataset, load_image_folder
from svt_deploy.errors import SvtError


def _write_split(root, split, images, labels, start=0):
    for i, (img, y) in enumerate(zip(images, labels), start):
        d = root / split / f"c{int(y)}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, tiny_reference):
    """300 training and the first 100 test images of the tiny model's .npz, as PNGs."""
    _, npz = tiny_reference
    root = tmp_path_factory.mktemp("folder") / "fmnist_png"
    with np.load(npz) as z:
        _write_split(root, "train", z["x_train"][:300], z["y_train"][:300])
        _write_split(root, "test", z["x_test"][:100], z["y_test"][:100])
    return root


def test_folder_decodes_to_the_stored_pixels_in_a_fixed_mixed_order(png_folder, tiny_reference):
    ds = load_dataset(png_folder)
    assert ds.store is not None and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.x_train.shape == (300,) and ds.x_test.shape == (100,)  # indices, not pixels
    x, y = ds.split("test")
    with np.load(tiny_reference[1]) as z:
        original = [int(os.path.basename(ds.store.files[i])[:5]) for i in x]
        np.testing.assert_array_equal(ds.as_tensor(x)[:, 0].numpy() * 255,
                                      z["x_test"][original].astype(np.float32))
        np.testing.assert_array_equal(y, z["y_test"][original])
    assert len(set(y[:20])) > 3  # the first test images are not all of one class
    (xv, yv), (xt, yt) = ds.split("val"), ds.split("train")
    assert len(yv) == 60 and len(yt) == 240 and not set(xv) & set(xt)
    assert ds.fingerprint() == load_dataset(png_folder).fingerprint()


def test_evaluate_gives_the_npz_accuracy(png_folder, tiny_reference):
    ckpt, npz = tiny_reference
    results = [json.loads(run_cli("evaluate", "--weights", str(ckpt), "--data", str(data),
                                  "--samples", "100", "--json", check=True).stdout)
               for data in (png_folder, npz)]
    assert results[0]["samples"] == results[1]["samples"] == 100
    assert results[0]["accuracy"] == results[1]["accuracy"]


def test_prune_runs_on_a_folder(png_folder, tiny_reference, tmp_path):
    ckpt, _ = tiny_reference
    proc = run_cli("prune", "--max-reduction", "15", "--max-drop", "8", "--weights", str(ckpt),
                   "--data", str(png_folder), "--profile-samples", "50", "--check-samples", "50",
                   "--test-samples", "100", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "o" / "prune_plan.json").read_text())
    assert plan["pruned"]["weight_bytes"] <= 0.85 * plan["baseline"]["weight_bytes"] + 4


_PEAK = textwrap.dedent("""
    import resource, sys
    from svt_deploy.data import batches, load_dataset
    ds = load_dataset(sys.argv[1])
    total = 0.0
    for which in ("train", "val", "test"):
        x, y = ds.split(which)
        for images, _ in batches(ds, x, y, 100):
            total += float(images.sum())
    print(len(ds.y_train) + len(ds.y_test), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """128x128 RGB: 1,200 decoded images are 59 MB as uint8 (236 MB as float), 300 are 15 MB;
    streamed, both peaks are one batch above the interpreter's."""
    gradient = np.linspace(0, 255, 128, dtype=np.float32)
    small, large = tmp_path / "small", tmp_path / "large"
    for i in range(300):
        img = np.stack([np.add.outer(gradient, gradient) / 2, np.full((128, 128), i % 256),
                        np.add.outer(gradient, -gradient) / 2 + 128], -1).astype(np.uint8)
        split, cls = ("train" if i < 240 else "test"), f"c{i % 3}"
        (small / split / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(small / split / cls / f"{i}.png", compress_level=1)
        for copy in range(4):  # the same files, four times over
            (large / split / cls).mkdir(parents=True, exist_ok=True)
            os.link(small / split / cls / f"{i}.png", large / split / cls / f"{i}_{copy}.png")
    # A fixed mmap threshold stops glibc from keeping freed batch buffers on its heap (its
    # dynamic threshold does, for a few batches more in the longer run): what is measured
    # is what the reader holds. Loading all images at once measures 244 MiB more here.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    peaks = {}
    for root in (small, large):
        out = subprocess.run([sys.executable, "-c", _PEAK, str(root)], capture_output=True,
                             text=True, check=True, cwd=REPO, env=env).stdout.split()
        peaks[int(out[0])] = int(out[1]) / 1024  # MiB (ru_maxrss is in KiB on Linux)
    assert set(peaks) == {300, 1200}
    assert peaks[1200] - peaks[300] < 12, peaks


def _one_line_error(path, needle, **kw):
    with pytest.raises(SvtError) as e:
        ds = load_image_folder(path, **kw)
        ds.as_tensor(ds.split("train")[0])
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_bad_folders_give_one_line_errors(tmp_path):
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    _one_line_error(tmp_path / "empty", "holds no images")
    flat = tmp_path / "flat"
    _write_split(flat, "cat", [np.zeros((4, 4), np.uint8)], [0])
    with pytest.raises(SvtError, match="but no train/ and test/: an image folder is"):
        load_dataset(flat / "cat")
    bad = tmp_path / "bad"
    _write_split(bad, "train", [np.zeros((4, 4), np.uint8)] * 2, [0, 1])
    _write_split(bad, "test", [np.zeros((4, 4), np.uint8)], [0])
    (bad / "train" / "c1" / "notes.txt").write_text("hello")
    _one_line_error(bad, "notes.txt is not a JPEG/PNG file")
    (bad / "train" / "c1" / "notes.txt").unlink()
    (bad / "train" / "c1" / "broken.png").write_bytes(b"not a png")
    _one_line_error(bad, "broken.png is not a readable JPEG/PNG image", mode="L", size=(4, 4))
    (bad / "train" / "c1" / "broken.png").unlink()
    _write_split(bad, "test", [np.zeros((4, 4), np.uint8)], [7])
    _one_line_error(bad, "has classes that train/ lacks: c7")


def test_other_sizes_are_resized_and_center_cropped_and_rgb_is_kept(tmp_path):
    first = np.full((20, 20, 3), (10, 200, 30), np.uint8)
    halves = np.zeros((20, 40, 3), np.uint8)
    halves[:, 20:] = 255  # left half black, right half white
    _write_split(tmp_path, "train", [first, halves], [0, 0])
    Image.fromarray(np.full((60, 30, 3), 90, np.uint8)).save(tmp_path / "train" / "c0" / "x.jpg")
    _write_split(tmp_path, "test", [first], [0])
    ds = load_dataset(tmp_path)
    assert ds.input_shape == (3, 20, 20)
    x = ds.as_tensor(ds.x_train).numpy() * 255
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), first, atol=1e-4)
    np.testing.assert_allclose(x[1, :, :, :10], 0, atol=1e-4)  # center 20 of 40 columns
    np.testing.assert_allclose(x[1, :, :, 10:], 255, atol=1e-4)
    assert abs(x[2].mean() - 90) < 3  # the JPEG, scaled to 20x40 and cropped
    gray = load_image_folder(tmp_path, mode="L", size=(8, 12))
    assert gray.input_shape == (1, 8, 12) and gray.as_tensor(gray.x_test).shape == (1, 1, 8, 12)
    assert gray.fingerprint() != ds.fingerprint()
    assert next(batches(gray, gray.x_train, gray.y_train, 2))[0].shape == (2, 1, 8, 12)
