"""Host check stage: the generated C built with gcc, run over test images and compared
image by image with PyTorch. Reads the number of classes from the project manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..codegen import Generated
from ..data import Dataset
from ..evaluate import predict
from ..hostemu import Comparison, build_host, compare, run_host
from ..loading import LoadedModel
from ..quant.reference import c_images, reference_model
from ..manifest import read_manifest
from .common import Log, progress_bar
from .generation import generate_sources


@dataclass(frozen=True)
class HostEmulation:
    """`svt-deploy emulate`: the comparison, the C's wall seconds and the sources."""

    comparison: Comparison
    seconds: float
    generated: Generated


def host_emulation(loaded: LoadedModel, ds: Dataset, out_dir: str | Path,
                   samples: int | None, quiet: bool, sanitize: bool = False,
                   workers: int | None = None) -> HostEmulation:
    """Generate, build with gcc and compare with PyTorch on the first ``samples`` test images."""
    ir, _, gen = generate_sources(loaded, ds.input_shape, out_dir)
    binary = build_host(out_dir, sanitize=sanitize)
    x, y = ds.split("test", samples)
    c_scores, seconds = run_host(binary, c_images(loaded, ds.as_tensor(x)), ir.num_classes,
                                 workers=workers)
    with progress_bar(len(y), "pytorch", quiet) as bar:
        ref = predict(reference_model(loaded, ds.input_shape), ds, x, progress=bar.update)
    return HostEmulation(compare(c_scores, ref, y), seconds, gen)


@dataclass(frozen=True)
class HostCheck:
    """The deploy's host check: C against PyTorch on ``samples`` test images."""

    samples: int
    accuracy: float  # the C's
    reference_accuracy: float  # PyTorch's
    agreement: float
    max_abs_score_diff: float
    identical_scores: float  # fraction of images with every score equal
    seconds: float


def host_check(loaded: LoadedModel, ds: Dataset, project: Path, samples: int, quiet: bool,
               log: Log) -> HostCheck:
    """The generated project's C (its host build) against PyTorch."""
    model = read_manifest(project).model
    x, y = ds.split("test", samples)
    log(f"host emulation: gcc build over {len(y):,} test images")
    binary = build_host(project)
    c_scores, seconds = run_host(binary, c_images(loaded, ds.as_tensor(x)), model.num_classes)
    with progress_bar(len(y), "PyTorch (host check)", quiet) as bar:
        ref = predict(reference_model(loaded, ds.input_shape), ds, x, progress=bar.update)
    return HostCheck(**compare(c_scores, ref, y).as_dict(), seconds=round(seconds, 2))
