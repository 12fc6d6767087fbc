"""Image classification datasets: IDX (MNIST family), CIFAR-10 python batches, .npz, and
image folders (``train/<class>/*.png|jpg`` and ``test/<class>/...``).

Images are kept as they were stored (uint8 or float) in NCHW numpy arrays; ``as_tensor``
converts on demand: uint8 -> [0, 1], float used as given, then the optional
``normalize=(mean, std)``. An image folder is streamed instead: its ``x_train``/``x_test``
are integer indices into an ``ImageStore``, and ``as_tensor`` decodes just the files it is
given. A validation split is carved from the training split with a fixed seed; the test
split is only for reporting.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import SvtError

DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_VAL_SIZE = 5000
SPLIT_SEED = 0

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FOLDER_LAYOUT = "{d}/train/<class>/*.png|jpg and {d}/test/<class>/*.png|jpg"

_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class ImageStore:
    """Image files under ``root``, decoded on demand to uint8 ``[N, C, H, W]``.

    ``mode`` is ``"L"`` (1 channel) or ``"RGB"`` (3); by default the first file's decides
    (grayscale modes give L, everything else RGB). ``size`` is ``(H, W)``, by default the
    first file's; other sizes are resized (bilinear) until they cover it, then center-cropped.
    """

    def __init__(self, root: Path, files: list[str], mode: str | None = None,
                 size: tuple[int, int] | None = None):
        from PIL import Image

        self.root, self.files = root, files
        if mode is None or size is None:
            im = self._load(0)
            mode = mode or ("L" if Image.getmodebase(im.mode) == "L" else "RGB")
            size = size or (im.height, im.width)
        if mode not in ("L", "RGB"):
            raise SvtError(f"image mode {mode!r}: use 'L' (1 channel) or 'RGB' (3)")
        self.mode, self.size = mode, (int(size[0]), int(size[1]))
        self._fingerprint: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, *self.size)

    def _load(self, i: int, mode: str | None = None):
        """File ``i`` decoded, converted to ``mode`` (default: as stored)."""
        from PIL import Image

        path = self.root / self.files[i]
        try:
            with Image.open(path) as im:
                return im.convert(mode or im.mode)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise SvtError(f"{path} is not a readable JPEG/PNG image ({e})") from None

    def _decode(self, i: int) -> np.ndarray:
        from PIL import Image

        im = self._load(i, self.mode)
        (h, w), (th, tw) = (im.height, im.width), self.size
        if (h, w) != (th, tw):
            scale = max(th / h, tw / w)
            nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
            left, top = (nw - tw) // 2, (nh - th) // 2
            im = im.resize((nw, nh), Image.Resampling.BILINEAR).crop(
                (left, top, left + tw, top + th))
        a = np.asarray(im, np.uint8)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), np.uint8)
        for k, i in enumerate(np.asarray(indices).reshape(-1)):
            out[k] = self._decode(int(i))
        return out

    def fingerprint(self) -> str:
        """Hash of the decode settings and every file's relative path, size and mtime."""
        if self._fingerprint is None:
            h = hashlib.sha256(repr((self.mode, self.size)).encode())
            for rel in self.files:
                st = os.stat(self.root / rel)
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # [N, C, H, W] uint8 or float32, or [N] indices into ``store``
    y_train: np.ndarray  # [N] int64
    x_test: np.ndarray
    y_test: np.ndarray
    normalize: tuple[float, float] | None = None
    store: ImageStore | None = None  # set for streamed image folders
    classes: list[str] | None = None  # class names of an image folder (label order)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self.store is not None:
            return self.store.shape
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def fingerprint(self) -> str:
        """Content hash, used to key caches (sensitivity profiles, stage results)."""
        h = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(arr.shape).encode() + str(arr.dtype).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        if self.store is not None:
            h.update(self.store.fingerprint().encode())
        h.update(repr(self.normalize).encode())
        return h.hexdigest()[:16]

    def as_tensor(self, images: np.ndarray) -> torch.Tensor:
        if self.store is not None:  # indices of image files
            images = self.store.read(images)
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.normalize is not None:
            mean, std = self.normalize
            x = (x - mean) / std
        return x

    def split(self, which: str, size: int | None = None,
              val_size: int = DEFAULT_VAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of ``train`` (training minus validation), ``val`` or ``test``.

        ``size`` takes the first ``size`` of the split (the split order is already a
        fixed random permutation for train/val; the test order is the file's).
        """
        if which == "test":
            return self.x_test[:size], self.y_test[:size]
        if which not in ("train", "val"):
            raise ValueError(f"unknown split {which!r}")
        train_idx, val_idx = train_val_indices(len(self.y_train), val_size)
        idx = (train_idx if which == "train" else val_idx)[:size]
        return self.x_train[idx], self.y_train[idx]


def train_val_indices(n_train: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    val_size = min(val_size, n_train // 5)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n_train)
    return perm[val_size:], perm[:val_size]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SvtError(f"{path} is not an unsigned-byte IDX file; pass an MNIST-style IDX "
                       "directory, a CIFAR-10 batch directory or an .npz file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset < count:
        raise SvtError(f"{path} is truncated ({len(raw) - offset} of {count} bytes); "
                       "re-download or reinstall the dataset")
    return np.frombuffer(raw, np.uint8, count, offset).reshape(dims).copy()


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                 stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def _load_idx_dir(directory: Path) -> Dataset:
    arrays = {}
    for key, stem in _IDX_NAMES.items():
        path = _find_idx(directory, stem)
        if path is None and any(p.is_dir() for p in directory.iterdir()):
            raise SvtError(f"{directory} has sub-directories but no train/ and test/: an image "
                           f"folder is {IMAGE_FOLDER_LAYOUT.format(d=directory)}")
        if path is None:
            raise SvtError(f"{directory} has no {stem}[.gz]; pass a directory with the four "
                           "IDX files, a CIFAR-10 batch directory or an .npz file")
        arrays[key] = _read_idx(path)
    for key in ("x_train", "x_test"):
        arrays[key] = arrays[key][:, None]  # NHW -> NCHW
    for key in ("y_train", "y_test"):
        arrays[key] = arrays[key].astype(np.int64)
    return Dataset(name=directory.name, **arrays)


def _load_cifar_dir(directory: Path) -> Dataset:
    def read(name):
        with open(directory / name, "rb") as f:
            # CIFAR-10's own format is a pickle; only load files the user pointed us to.
            batch = pickle.load(f, encoding="bytes")
        x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(batch[b"labels"], np.int64)

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return Dataset(name="cifar10", x_train=np.concatenate([t[0] for t in train]),
                   y_train=np.concatenate([t[1] for t in train]),
                   x_test=x_test, y_test=y_test)


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as e:
        raise SvtError(f"{path} lacks array {e}; an .npz needs x_train, y_train, x_test, "
                       "y_test") from None
    except (OSError, ValueError) as e:
        raise SvtError(f"{path} is not a readable .npz file ({e})") from None
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim != 4:
            raise SvtError(f"{path}: {key} has shape {x.shape}; expected NHW or NCHW")
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
        arrays[key] = x
    for key in ("y_train", "y_test"):
        arrays[key] = arrays[key].astype(np.int64).reshape(-1)
    return Dataset(name=path.stem, **arrays)


def _class_files(root: Path, split: str) -> dict[str, list[str]]:
    """Image files (paths relative to ``root``, sorted) per class sub-directory of ``split``."""
    per_class: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(root / split), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise SvtError(f"{entry.path}: images go in class sub-directories; an image folder "
                           f"is {IMAGE_FOLDER_LAYOUT.format(d=root)}")
        files = per_class.setdefault(entry.name, [])
        for dirpath, dirnames, filenames in os.walk(entry.path, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(f for f in filenames if not f.startswith(".")):
                path = os.path.join(dirpath, name)
                if not name.lower().endswith(IMAGE_SUFFIXES):
                    raise SvtError(f"{path} is not a JPEG/PNG file; an image folder holds only "
                                   "images in its class sub-directories")
                files.append(os.path.relpath(path, root))
    return per_class


def load_image_folder(directory: str | Path, mode: str | None = None,
                      size: tuple[int, int] | None = None) -> Dataset:
    """A streamed dataset from ``train/<class>/`` and ``test/<class>/`` image files.

    Labels are the indices of the sorted class names of ``train/``. ``mode`` and ``size``
    go to ``ImageStore`` (default: the first training image's). The test images are taken
    in a fixed shuffled order, so that the first N of them mix the classes.
    """
    directory = Path(directory)
    files: list[str] = []
    labels: dict[str, np.ndarray] = {}
    classes: list[str] = []
    for split in ("train", "test"):
        if not (directory / split).is_dir():
            raise SvtError(f"{directory} has no {split}/ sub-directory; an image folder is "
                           f"{IMAGE_FOLDER_LAYOUT.format(d=directory)}")
        per_class = _class_files(directory, split)
        classes = classes or sorted(per_class)
        unknown = sorted(set(per_class) - set(classes))
        if unknown:
            raise SvtError(f"{directory / split} has classes that train/ lacks: "
                           f"{', '.join(unknown[:5])}")
        label = {c: i for i, c in enumerate(classes)}
        ys = [label[c] for c in per_class for _ in per_class[c]]
        if not ys:
            raise SvtError(f"{directory / split} holds no images; an image folder is "
                           f"{IMAGE_FOLDER_LAYOUT.format(d=directory)}")
        files += [f for c in per_class for f in per_class[c]]
        labels[split] = np.asarray(ys, np.int64)
    n_train = len(labels["train"])
    test_order = np.random.default_rng(SPLIT_SEED).permutation(len(labels["test"]))
    return Dataset(name=directory.name, x_train=np.arange(n_train, dtype=np.int64),
                   y_train=labels["train"], x_test=n_train + test_order,
                   y_test=labels["test"][test_order],
                   store=ImageStore(directory, files, mode, size), classes=classes)


def load_dataset(path: str | Path | None = None,
                 normalize: tuple[float, float] | None = None) -> Dataset:
    """Load a dataset from an IDX directory, a CIFAR-10 directory, an image folder (streamed)
    or an .npz file."""
    path = Path(path) if path is not None else DEFAULT_DATA
    if path.is_dir():
        if (path / "data_batch_1").is_file():
            ds = _load_cifar_dir(path)
        elif (path / "train").is_dir() or (path / "test").is_dir():
            ds = load_image_folder(path)
        else:
            ds = _load_idx_dir(path)
    elif path.is_file() and path.suffix == ".npz":
        ds = _load_npz(path)
    elif path.is_file():
        raise SvtError(f"{path}: unsupported data file; pass an IDX directory, a CIFAR-10 "
                       "batch directory, an image folder or an .npz file")
    else:
        hint = (" (install it with: apt-get install dataset-fashion-mnist)"
                if path == DEFAULT_DATA else "")
        raise SvtError(f"data path {path} does not exist{hint}")
    ds.normalize = normalize
    return ds


def batches(ds: Dataset, images: np.ndarray, labels: np.ndarray, batch_size: int):
    for start in range(0, len(labels), batch_size):
        yield (ds.as_tensor(images[start:start + batch_size]),
               torch.from_numpy(labels[start:start + batch_size]))
