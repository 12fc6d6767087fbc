"""Evaluate and baseline stages: test accuracy (cached by model and data), the structure
check, and the baseline's memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import Dataset
from ..errors import SvtError
from ..evaluate import accuracy, cached_test_split_accuracy
from ..ir import extract_ir
from ..loading import LoadedModel
from ..memory import plan_memory
from ..quant.reference import deployed_ir, reference_model
from ..stages import StageCache
from .common import Log, progress_bar


def cached_test_accuracy(model, ds: Dataset, fingerprint: str, samples: int | None,
                         cache_dir: Path, quiet: bool, desc: str) -> tuple[float, int]:
    """Test accuracy (reporting only) on the first ``samples`` images, cached in
    ``cache_dir`` by model and data fingerprints (``evaluate.cached_test_split_accuracy``)."""
    return cached_test_split_accuracy(model, ds, fingerprint, samples,
                                      StageCache(cache_dir, None, keyed=True),
                                      bar=lambda total: progress_bar(total, desc, quiet))


def params_of(loaded: LoadedModel) -> int:
    return sum(t.numel() for t in loaded.model.parameters())


def structure_check(model, input_shape) -> str:
    """The deploy's structure check (IR extraction, verified against the model), as a line:
    "verified", or why the deploy would refuse this model."""
    try:
        extract_ir(model, input_shape)
    except SvtError as e:
        return f"could not verify: {e}"
    return "verified"


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    samples: int
    params: int
    structure: str


def evaluate_model(loaded: LoadedModel, ds: Dataset, samples: int | None,
                   quiet: bool) -> Evaluation:
    """`svt-deploy evaluate`: top-1 accuracy on the first ``samples`` test images."""
    x, y = ds.split("test", samples)
    with progress_bar(len(y), "evaluate", quiet) as bar:
        try:
            acc = accuracy(reference_model(loaded, ds.input_shape), ds, x, y,
                           progress=bar.update)
        except (RuntimeError, ValueError) as e:
            raise SvtError(f"the model failed on {ds.input_shape} images from the data: "
                           f"{str(e).splitlines()[0][:160]}") from None
    return Evaluation(acc, int(len(y)), params_of(loaded),
                      structure_check(loaded.model, ds.input_shape))


@dataclass(frozen=True)
class BaselineResult:
    """The unpruned model: test accuracy, and the memory the C would need."""

    accuracy: float
    samples: int
    weight_bytes: int
    arena_bytes: int
    params: int


def baseline(loaded: LoadedModel, ds: Dataset, test_samples: int | None, cache_dir: Path,
             quiet: bool, log: Log) -> BaselineResult:
    plan = plan_memory(deployed_ir(loaded, ds.input_shape))
    acc, n = cached_test_accuracy(reference_model(loaded, ds.input_shape), ds,
                                  loaded.fingerprint(), test_samples,
                                  cache_dir, quiet, "baseline (test)")
    log(f"baseline: test accuracy {acc:.4f} on {n:,} images, weights "
        f"{plan.weight_bytes:,} B, arena {plan.arena_bytes:,} B")
    return BaselineResult(acc, n, plan.weight_bytes, plan.arena_bytes, params_of(loaded))
