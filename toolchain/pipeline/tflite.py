"""TFLite stage (outside the deploy): the IR exported to float32 and int8 .tflite, checked
with LiteRT and TensorFlow Lite Micro against PyTorch. TensorFlow is imported on use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import Dataset
from ..evaluate import predict
from ..ir import IR, extract_ir
from ..loading import LoadedModel
from ..tflite_export import (FP32_FILE, INT8_FILE, META_FILE, REPRESENTATIVE_SAMPLES, _require,
                             check_litert, check_tflm, export, require_tensorflow, to_nhwc)
from .common import Log, progress_bar
from .inputs import ModelInputs, load_inputs


@dataclass(frozen=True)
class TfliteOptions:
    out: Path
    representative: int = REPRESENTATIVE_SAMPLES  # training images for int8 (0: fp32 only)
    samples: int = 1000  # test images for LiteRT
    tflm_samples: int = 200  # test images for TFLM (0: skip it)
    check: bool = True  # run LiteRT (and TFLM) at all
    threads: int = 1


def run_checks(loaded: LoadedModel, ds: Dataset, ir: IR, out_dir: Path, conv, samples: int,
               tflm_samples: int, threads: int, quiet: bool, log: Log
               ) -> tuple[dict, list[dict]]:
    """LiteRT on ``samples`` and TFLM on ``tflm_samples`` test images, against PyTorch."""
    x, y = ds.split("test", samples)
    with progress_bar(len(y), "pytorch", quiet) as bar:
        ref = predict(loaded.model, ds, x, progress=bar.update)
    images = to_nhwc(ds.as_tensor(x).numpy())
    reference = {"samples": len(y), "accuracy": float((ref.argmax(1) == y).mean())}
    variants = [("fp32", conv.fp32, FP32_FILE)]
    if conv.int8 is not None:
        variants.append(("int8", conv.int8, INT8_FILE))
    checks = []
    for name, model, _ in variants:
        with progress_bar(len(y), f"LiteRT {name}", quiet) as bar:
            checks.append(check_litert(f"LiteRT {name}", model, images, y, ref, threads,
                                       progress=bar.update))
    n = min(tflm_samples, len(y))
    if n > 0:
        for name, _, file in variants:
            log(f"TFLM {name}: searching the smallest arena (one process per probe)")
            checks.append(check_tflm(f"TFLM {name}", out_dir / file, images[:n], y[:n],
                                     ref[:n], log=log))
    return reference, [c.as_dict() for c in checks]


def export_tflite(inputs: ModelInputs, options: TfliteOptions, quiet: bool, log: Log) -> dict:
    """Export (and check) the model; returns tflite_export.json's content."""
    require_tensorflow(options.threads)  # fail fast, with the install hint, before any work
    if options.check:
        _require("ai_edge_litert.interpreter", "ai-edge-litert (LiteRT)")
        if options.tflm_samples:
            _require("tflite_micro", "tflite-micro")
    torch.set_num_threads(options.threads)
    loaded, ds = load_inputs(inputs)
    ir = extract_ir(loaded.model, ds.input_shape)
    out_dir = Path(options.out)
    log(f"converting ({ir.params:,} parameters, T={ir.timesteps})")
    conv, meta = export(ir, ds, out_dir, options.representative, options.threads, log)
    if options.check:
        reference, checks = run_checks(loaded, ds, ir, out_dir, conv, options.samples,
                                       options.tflm_samples, options.threads, quiet, log)
        meta["checks"] = {"pytorch": reference, "runtimes": checks}
        (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta
