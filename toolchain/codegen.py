"""C code generation: the IR and its memory plan rendered through firmware_templates/.

Emits ``model.c/.h`` (the layer sequence behind ``svt_model_run``), ``model_weights.c/.h``
(const fp32 arrays, BN folded, laid out for each kernel), the kernels the model uses,
the host harness and a Makefile. Python only supplies values; all C lives in templates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from . import ops
from .errors import SvtError
from .ir import IR
from .manifest import MANIFEST, Manifest, ModelFacts
from .memory import MemoryPlan, Step
from .ops.base import KERNELS_DIR, ParamStruct
from .resources import TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR
C_FORMAT = {"spikes": "SVT_SPIKES", "count": "SVT_COUNTS", "membrane": "SVT_MEMBRANE"}
MAX_TIMESTEPS = 8
VALUES_PER_LINE = 8
COMMON_KERNEL_FILES = ("lif.c",)  # svt_lif_train: every LIF-fused kernel calls it


@dataclass
class Generated:
    directory: Path
    files: list[str]
    weight_bytes: int
    arena_bytes: int
    model_hash: str


def c_float(x: float) -> str:
    """Shortest decimal that reads back as the same float32, as a C float literal."""
    v = np.float32(x)
    if not np.isfinite(v):
        raise SvtError(f"the model holds a non-finite value ({v}); it cannot be exported")
    text = str(v)
    if "." not in text and "e" not in text:
        text += ".0"
    return text + "f"


def symbol(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def _kernel_sources(steps: list[Step]) -> dict[str, Path]:
    """C file name -> its path, for the kernels these steps call (from their ops)."""
    sources = {name: KERNELS_DIR / name for name in COMMON_KERNEL_FILES}
    for s in steps:
        op = ops.for_kernel(s.kernel)
        for name in op.kernels[s.kernel]:
            sources[name] = op.kernel_dir / name
    return dict(sorted(sources.items()))


class CallContext:
    """What an op's ``c_call`` needs to name its arguments: arena offsets, data formats,
    weight symbols and the LIF constants. Collects the parameter structs it hands out."""

    T = "SVT_TIMESTEPS"

    def __init__(self, ir: IR, plan: MemoryPlan):
        self.ir, self.plan = ir, plan
        self.timesteps = ir.timesteps
        self.formats = {s.name: s.out_format for s in plan.steps}
        self.lifs: dict[str, ParamStruct] = {}

    @staticmethod
    def u(n: int) -> str:
        return f"{int(n)}u"

    f = staticmethod(c_float)
    symbol = staticmethod(symbol)

    def offset(self, name: str) -> int:
        return self.plan.arena.offset(name)

    def arena(self, name: str) -> str:
        return f"ARENA({self.offset(name)}u)"

    def arena_f32(self, name: str) -> str:
        return f"ARENA_F32({self.offset(name)}u)"

    def scratch_f32(self, step: Step) -> str:
        return self.arena_f32(f"{step.name}.scratch")

    def fmt(self, name: str) -> str:
        return C_FORMAT[self.formats[name]]

    def weight(self, step: Step) -> str:
        return symbol("svt_w_", step.name)

    def bias(self, step: Step) -> str:
        return symbol("svt_b_", step.name)

    def source(self, step: Step, i: int = 0):
        """The IR node feeding input ``i`` of the step's first node."""
        return self.ir.node(self.ir.node(step.name).inputs[i])

    def lif(self, step: Step) -> str:
        """Pointer to the step's LIF constants, or NULL: a layer without LIF keeps its
        currents."""
        if "lif" not in step.attrs:
            return "NULL"
        sym = symbol("lif_", step.attrs["lif"])
        self.lifs[sym] = ParamStruct("svt_lif_t", sym, {
            "tau": c_float(step.attrs["tau"]), "v_th": c_float(step.attrs["v_threshold"]),
            "v_reset": c_float(step.attrs["v_reset"])})
        return "&" + sym


def _array(sym: str, values: np.ndarray, comment: str) -> dict:
    flat = [c_float(v) for v in np.ascontiguousarray(values, np.float32).reshape(-1)]
    lines = [", ".join(flat[i:i + VALUES_PER_LINE]) + ","
             for i in range(0, len(flat), VALUES_PER_LINE)]
    return {"symbol": sym, "size": len(flat), "comment": comment, "lines": lines}


def model_hash(ir: IR) -> str:
    """Hash of everything the C computes: reported by the firmware's info command."""
    h = hashlib.sha256(json.dumps([ir.timesteps, list(ir.input_shape)]).encode())
    for n in ir.nodes:
        h.update(json.dumps([n.name, n.op, n.inputs, n.channels, n.height, n.width,
                             sorted((k, str(v)) for k, v in n.attrs.items())]).encode())
        for a in (n.weight, n.bias):
            if a is not None:
                h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()[:16]


def render_context(ir: IR, plan: MemoryPlan, source: str) -> dict:
    if ir.timesteps > MAX_TIMESTEPS:
        raise SvtError(f"the model runs {ir.timesteps} timesteps; the C kernels pack at most "
                       f"{MAX_TIMESTEPS} spikes per neuron")
    nodes = {n.name: n for n in ir.nodes}
    c = CallContext(ir, plan)
    arrays, params, steps, declarations = [], [], [], []
    for s in plan.steps:
        n = nodes[s.name]
        op = ops.for_kernel(s.kernel)
        if n.weight is not None:
            w, layout = op.weight_layout(s, n.weight)
            arrays.append(_array(c.weight(s), w, f"{s.name}: {s.kernel} weight, {layout}"))
            arrays.append(_array(c.bias(s), n.bias, f"{s.name}: bias [{n.bias.size}]"))
        call = op.c_call(s, c)
        params.extend(call.params)
        declarations.extend(d for d in op.c_declarations if d not in declarations)
        ins = ", ".join(f"{nodes[i].channels}x{nodes[i].height}x{nodes[i].width} "
                        f"{c.formats.get(i, 'image')}" for i in s.inputs if i in nodes)
        comment = (f"{' + '.join(s.nodes)}: {ins or 'image'} -> "
                   f"{s.channels}x{s.height}x{s.width} {s.out_format}"
                   + (" (in place)" if s.in_place else ""))
        steps.append({"comment": comment, "function": call.function, "args": call.args})
    return {"steps": steps, "arrays": arrays,
            "param_structs": list(c.lifs.values()) + params,
            "declarations": declarations, "source": source,
            "timesteps": ir.timesteps, "input_shape": list(ir.input_shape),
            "num_classes": ir.num_classes, "params": plan.params,
            "weight_bytes": plan.weight_bytes, "arena_bytes": plan.arena_bytes,
            "model_hash": model_hash(ir),
            "banner": "Generated by svt-deploy. Do not edit: rerun `svt-deploy generate`."}


def write_tree(files: dict[str, bytes], out_dir: Path) -> None:
    """Write all files into a fresh directory beside ``out_dir`` and swap it in, so an
    interrupted run never leaves a half-written source tree."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes it 0700; a source tree is the user's to share
    try:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def generate(ir: IR, plan: MemoryPlan, out_dir: str | Path, source: str,
             extra_files: dict[str, bytes] | None = None) -> Generated:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    ctx = render_context(ir, plan, source)
    files: dict[str, bytes] = {}
    for name in ("model.c", "model.h", "model_weights.c", "model_weights.h"):
        files[name] = env.get_template(f"model/{name}.j2").render(**ctx).encode()
    sources = _kernel_sources(plan.steps)
    kernels = list(sources)
    for name, path in sources.items():
        files[name] = path.read_bytes()
    files["svt_kernels.h"] = (KERNELS_DIR / "svt_kernels.h").read_bytes()
    files["host_main.c"] = (TEMPLATES / "host" / "host_main.c").read_bytes()
    files["Makefile"] = env.get_template("model/Makefile.j2").render(
        kernels=kernels, **ctx).encode()
    files["memory_plan.json"] = json.dumps(plan_summary(plan), indent=1).encode()
    manifest = Manifest(ModelFacts(
        model_hash=ctx["model_hash"], num_classes=ir.num_classes,
        input_shape=tuple(ir.input_shape), timesteps=ir.timesteps, params=plan.params,
        weight_bytes=plan.weight_bytes, arena_bytes=plan.arena_bytes, precision="fp32",
        kernels=tuple(kernels)))
    files[MANIFEST] = manifest.to_json()
    files.update(extra_files or {})
    write_tree(files, Path(out_dir))
    return Generated(Path(out_dir), sorted(files), plan.weight_bytes, plan.arena_bytes,
                     ctx["model_hash"])


def plan_summary(plan: MemoryPlan) -> dict:
    return {"weight_bytes": plan.weight_bytes, "arena_bytes": plan.arena_bytes,
            "timesteps": plan.timesteps,
            "buffers": {name: {"offset": b.offset, "size": b.size}
                        for name, b in plan.arena.buffers.items()},
            "steps": [{"name": s.name, "kernel": s.kernel, "out_format": s.out_format,
                       "out_bytes": s.out_bytes, "scratch_bytes": s.scratch_bytes,
                       "weight_bytes": s.weight_bytes} for s in plan.steps]}
