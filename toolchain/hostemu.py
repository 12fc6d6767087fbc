"""Host emulation: compile the generated C with the system gcc and compare it with PyTorch.

The harness reads images from a file and writes scores (float32 both, or uint8 pixels and
int32 scores for an integer model); images are split across worker processes (one per
core). Agreement is the fraction of images where the C
and PyTorch predict the same class.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SvtError
from .tools import require_tool

WARNINGS = ["-Wall", "-Wextra", "-Wconversion", "-Wshadow", "-Werror"]
CFLAGS = ["-std=c99", "-O2", *WARNINGS, "-ffp-contract=off"]
# ASan and UBSan; any report ends the run (no recovery), so a test sees it as a failure.
SANITIZE = ["-std=c99", "-O1", "-g", *WARNINGS, "-ffp-contract=off",
            "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer"]


def c_sources(src_dir: Path) -> list[Path]:
    return sorted(p for p in Path(src_dir).glob("*.c"))


def build_host(src_dir: str | Path, sanitize: bool = False, output: str | Path | None = None,
               compiler: str = "gcc") -> Path:
    """Compile the generated sources and the harness; return the binary's path."""
    src_dir = Path(src_dir)
    cc = require_tool(compiler)
    out = Path(output) if output else src_dir / ("svt_host_asan" if sanitize else "svt_host")
    cmd = [cc, *(SANITIZE if sanitize else CFLAGS), "-I", str(src_dir), "-o", str(out),
           *map(str, c_sources(src_dir)), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
        raise SvtError(f"compiling the generated C failed: {first[:200]}")
    return out


def run_host(binary: str | Path, images: np.ndarray, num_classes: int,
             workers: int | None = None, env: dict | None = None) -> tuple[np.ndarray, float]:
    """Scores ``[N, classes]`` from the host binary, and the wall seconds it took. uint8
    images (an integer model's pixels) give int32 scores; other images are sent as float32
    and give float32 scores."""
    integer = np.asarray(images).dtype == np.uint8
    score_type = np.int32 if integer else np.float32
    images = np.ascontiguousarray(images, np.uint8 if integer else np.float32)
    n = len(images)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    chunks = np.array_split(np.arange(n), workers)
    with tempfile.TemporaryDirectory(prefix="svt_host_") as tmp:
        procs = []
        start = time.perf_counter()
        for i, idx in enumerate(chunks):
            src, dst = Path(tmp) / f"in{i}.f32", Path(tmp) / f"out{i}.f32"
            images[idx].tofile(src)
            procs.append((subprocess.Popen([str(binary), str(src), str(dst)],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           env={**os.environ, **(env or {})}), dst, len(idx)))
        results = []
        for proc, dst, count in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SvtError(f"the host build crashed (exit {proc.returncode}): "
                               f"{err.decode(errors='replace').strip()[:300]}")
            scores = np.fromfile(dst, score_type)
            if scores.size != count * num_classes:
                raise SvtError(f"the host build returned {scores.size} scores for {count} images")
            results.append(scores.reshape(count, num_classes))
        seconds = time.perf_counter() - start
    return np.concatenate(results), seconds


@dataclass
class Comparison:
    samples: int
    accuracy: float  # the C's top-1 accuracy
    reference_accuracy: float  # PyTorch's on the same images
    agreement: float  # fraction of identical predictions
    max_abs_score_diff: float
    identical: float = 0.0  # fraction of images whose scores are all equal (integer models)

    def as_dict(self) -> dict:
        return {"samples": self.samples, "accuracy": round(self.accuracy, 5),
                "reference_accuracy": round(self.reference_accuracy, 5),
                "agreement": round(self.agreement, 5),
                "max_abs_score_diff": float(f"{self.max_abs_score_diff:.3g}"),
                "identical_scores": round(self.identical, 5)}


def compare(c_scores: np.ndarray, ref_scores: np.ndarray, labels: np.ndarray) -> Comparison:
    c_pred, ref_pred = c_scores.argmax(1), ref_scores.argmax(1)
    return Comparison(samples=len(labels), accuracy=float((c_pred == labels).mean()),
                      reference_accuracy=float((ref_pred == labels).mean()),
                      agreement=float((c_pred == ref_pred).mean()),
                      max_abs_score_diff=float(np.abs(c_scores - ref_scores).max()),
                      identical=float((c_scores == ref_scores).all(axis=1).mean()))
