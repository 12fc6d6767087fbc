"""Generate stage: IR -> memory plan -> C sources (and, for a board, its firmware/), with
the project manifest (``manifest.json``: ModelFacts) that every later stage reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..boards import Board
from ..codegen import Generated, generate
from ..errors import SvtError
from ..firmware import generate_firmware
from ..ir import IR
from ..quant.reference import deployed_ir
from ..loading import LoadedModel
from ..manifest import MANIFEST
from ..memory import Fit, MemoryPlan, check_fit, plan_memory
from ..stages import file_digest
from .common import Log

# what counts as a generated source in a project ("" covers the Makefiles); the manifest
# does not: the firmware stage adds to it
SOURCE_SUFFIXES = {".c", ".h", ".ld", ".json", ".md", ""}


def _shape(loaded: LoadedModel, input_shape) -> tuple[int, int, int]:
    shape = input_shape if input_shape is not None else loaded.input_shape
    if shape is None:
        raise SvtError("the model's input shape is unknown; pass --data")
    return tuple(shape)


def generate_sources(loaded: LoadedModel, input_shape, out_dir: str | Path,
                     kernels: str = "event") -> tuple[IR, MemoryPlan, Generated]:
    """The model's C for the host build in ``out_dir``: (ir, plan, Generated)."""
    ir = deployed_ir(loaded, _shape(loaded, input_shape))
    plan = plan_memory(ir)
    return ir, plan, generate(ir, plan, out_dir, source=str(loaded.weights), kernels=kernels)


def generate_project(loaded: LoadedModel, input_shape, board: Board, out_dir: str | Path,
                     kernels: str = "event") -> tuple[IR, MemoryPlan, Generated]:
    """The model's C plus firmware/ for ``board`` in ``out_dir``: (ir, plan, Generated)."""
    ir = deployed_ir(loaded, _shape(loaded, input_shape))
    plan = plan_memory(ir)
    return ir, plan, generate_firmware(ir, plan, board, out_dir, source=str(loaded.weights),
                                       kernels=kernels)


@dataclass(frozen=True)
class CheckedSources:
    """`svt-deploy generate`: the sources written, and how the plan compares with a board."""

    generated: Generated
    fit: Fit


def generate_checked(loaded: LoadedModel, board: Board, out_dir: str | Path,
                     kernels: str = "event") -> CheckedSources:
    _, plan, gen = generate_sources(loaded, None, out_dir, kernels)
    return CheckedSources(gen, check_fit(plan, board))


def project_digest(project: Path) -> str:
    """Hash of the generated sources only: build outputs (build*/, svt_host*) and the
    manifest (which the firmware stage completes) never count."""
    h = hashlib.sha256()
    for f in sorted(project.rglob("*")):
        rel = f.relative_to(project)
        if (f.is_file() and f.suffix in SOURCE_SUFFIXES and not f.name.startswith("svt_host")
                and rel.as_posix() != MANIFEST
                and not any(part.startswith("build") for part in rel.parts[:-1])):
            h.update(str(rel).encode() + file_digest(f).encode())
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class GenerateResult:
    project_hash: str  # project_digest of the generated sources


def generate_stage(pruned: LoadedModel, input_shape, board: Board, project: Path,
                   log: Log, kernels: str = "event") -> GenerateResult:
    log(f"generating C into {project}" + (" (dense kernels)" if kernels == "dense" else ""))
    generate_project(pruned, input_shape, board, project, kernels)
    return GenerateResult(project_digest(project))


def project_valid(project: Path) -> bool:
    """A generated project is still there (its sources and manifest)."""
    return (project / "model.h").is_file() and (project / MANIFEST).is_file()
