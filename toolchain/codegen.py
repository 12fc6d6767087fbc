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
from .ops.synaptic import weight_rows
from .quant.quantize import is_integer
from .quant.packing import pack, padded
from .resources import TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR
C_FORMAT = {"spikes": "SVT_SPIKES", "count": "SVT_COUNTS", "membrane": "SVT_MEMBRANE"}
MAX_TIMESTEPS = 8
VALUES_PER_LINE = 8
COMMON_KERNEL_FILES = ("lif.c",)  # svt_lif_train: every LIF-fused kernel calls it
INTEGER_KERNEL_FILES: tuple[str, ...] = ()  # svt_neuron_train_q is inline (svt_kernels.h)


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


KERNEL_STYLES = ("event", "dense")


def _kernel_sources(steps: list[Step], integer: bool, style: str = "event") -> dict[str, Path]:
    """C file name -> its path, for the kernels these steps call (from their ops); with
    style "dense", each op's dense twins in place of its event-driven files."""
    if style not in KERNEL_STYLES:
        raise SvtError(f"unknown kernel style {style!r}; use one of {', '.join(KERNEL_STYLES)}")
    common = INTEGER_KERNEL_FILES if integer else COMMON_KERNEL_FILES
    sources = {name: KERNELS_DIR / name for name in common}
    for s in steps:
        op = ops.for_kernel(s.kernel)
        for name in op.kernels[s.kernel]:
            if style == "dense":
                name = op.dense_twins.get(name, name)
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
        self.arrays: list[dict] = []  # constant arrays the calls need (integer thresholds)

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

    def arena_i32(self, name: str) -> str:
        return f"ARENA_I32({self.offset(name)}u)"

    def scratch_f32(self, step: Step) -> str:
        return self.arena_f32(f"{step.name}.scratch")

    def scratch_i32(self, step: Step) -> str:
        return self.arena_i32(f"{step.name}.scratch")

    def quant(self, step: Step):
        """The integer arithmetic of the step's first node (quant/integer.py)."""
        return self.ir.node(step.name).quant

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
        lq = self.ir.node(step.attrs["lif"]).quant
        if lq is not None:
            thresholds = symbol("svt_th_", step.attrs["lif"])
            self.arrays.append(_int_array(thresholds, lq.threshold, "int32_t",
                                          f"{step.attrs['lif']}: thresholds [{lq.threshold.size}]"))
            self.lifs[sym] = ParamStruct("svt_lif_q_t", sym, {
                "threshold": thresholds, "decay_shift": self.u(lq.decay_shift)})
            return "&" + sym
        self.lifs[sym] = ParamStruct("svt_lif_t", sym, {
            "tau": c_float(step.attrs["tau"]), "v_th": c_float(step.attrs["v_threshold"]),
            "v_reset": c_float(step.attrs["v_reset"])})
        return "&" + sym


def _array(sym: str, values: np.ndarray, comment: str) -> dict:
    flat = [c_float(v) for v in np.ascontiguousarray(values, np.float32).reshape(-1)]
    lines = [", ".join(flat[i:i + VALUES_PER_LINE]) + ","
             for i in range(0, len(flat), VALUES_PER_LINE)]
    return {"symbol": sym, "size": len(flat), "comment": comment, "lines": lines,
            "c_type": "float"}


def _int_array(sym: str, values: np.ndarray, c_type: str, comment: str) -> dict:
    """An integer array (``uint8_t`` packed weights, ``int32_t`` biases and thresholds)."""
    flat = np.asarray(values).reshape(-1)
    lo, hi = (0, 255) if c_type == "uint8_t" else (-2 ** 31, 2 ** 31 - 1)
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise SvtError(f"{comment}: a value does not fit {c_type}")
    per_line = VALUES_PER_LINE * (2 if c_type == "uint8_t" else 1)
    text = [f"{int(v)}" if c_type == "uint8_t" or v > -2 ** 31 else "INT32_MIN"
            for v in flat]
    lines = [", ".join(text[i:i + per_line]) + "," for i in range(0, len(text), per_line)]
    return {"symbol": sym, "size": len(text), "comment": comment, "lines": lines,
            "c_type": c_type}


def model_hash(ir: IR) -> str:
    """Hash of everything the C computes: reported by the firmware's info command."""
    h = hashlib.sha256(json.dumps([ir.timesteps, list(ir.input_shape)]).encode())
    for n in ir.nodes:
        h.update(json.dumps([n.name, n.op, n.inputs, n.channels, n.height, n.width,
                             sorted((k, str(v)) for k, v in n.attrs.items())]).encode())
        for a in (n.weight, n.bias):
            if a is not None:
                h.update(np.ascontiguousarray(a, np.float32).tobytes())
        if n.quant is not None:
            for name, v in sorted(vars(n.quant).items()):
                h.update(name.encode() + (np.ascontiguousarray(v).tobytes()
                                          if isinstance(v, np.ndarray) else repr(v).encode()))
    return h.hexdigest()[:16]


def precision_of(ir: IR) -> str:
    """The weights' precision: fp32, int8, int4, or the mix (e.g. "int8+int4")."""
    found = sorted({n.attrs["precision"] for n in ir.nodes if "precision" in n.attrs},
                   key=["fp32", "int8", "int4"].index)
    return "+".join(found) or "fp32"


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
        if n.weight is not None and n.quant is not None:
            wq = n.quant
            w, layout = op.weight_layout(s, wq.q)
            arrays.append(_int_array(c.weight(s), padded(pack(weight_rows(s, w), wq.bits)),
                                     "uint8_t",
                                     f"{s.name}: {s.kernel} int{wq.bits} weight, {layout}, "
                                     f"rows of {s.attrs['weight_rows']}"))
            arrays.append(_int_array(c.bias(s), wq.bias, "int32_t",
                                     f"{s.name}: int32 bias [{wq.bias.size}]"))
        elif n.weight is not None:
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
    integer = is_integer(ir)
    return {"steps": steps, "arrays": arrays + c.arrays, "integer": integer,
            "precision": precision_of(ir),
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
             extra_files: dict[str, bytes] | None = None, kernels: str = "event") -> Generated:
    """The model's C project. ``kernels``: "event" (event-driven spike-fed layers) or
    "dense" (the same layers as plain dense loops, for side-by-side measurement)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    ctx = render_context(ir, plan, source)
    files: dict[str, bytes] = {}
    for name in ("model.c", "model.h", "model_weights.c", "model_weights.h"):
        files[name] = env.get_template(f"model/{name}.j2").render(**ctx).encode()
    sources = _kernel_sources(plan.steps, ctx["integer"], kernels)
    for name, path in sources.items():
        files[name] = path.read_bytes()
    files["svt_kernels.h"] = (KERNELS_DIR / "svt_kernels.h").read_bytes()
    files["svt_config.h"] = svt_config(ir, ctx["banner"]).encode()
    files["host_main.c"] = (TEMPLATES / "host" / "host_main.c").read_bytes()
    files["Makefile"] = env.get_template("model/Makefile.j2").render(
        kernels=list(sources), **ctx).encode()
    files["memory_plan.json"] = json.dumps(plan_summary(plan), indent=1).encode()
    manifest = Manifest(ModelFacts(
        model_hash=ctx["model_hash"], num_classes=ir.num_classes,
        input_shape=tuple(ir.input_shape), timesteps=ir.timesteps, params=plan.params,
        weight_bytes=plan.weight_bytes, arena_bytes=plan.arena_bytes, precision=ctx["precision"],
        kernels=tuple(sources)))
    files[MANIFEST] = manifest.to_json()
    files.update(extra_files or {})
    write_tree(files, Path(out_dir))
    return Generated(Path(out_dir), sorted(files), plan.weight_bytes, plan.arena_bytes,
                     ctx["model_hash"])


def svt_config(ir: IR, banner: str) -> str:
    """svt_config.h: what the kernels may take as compile-time constants for this model
    (svt_kernels.h: SVT_STEPS, SVT_DECAY_SHIFT): its timesteps, and the integer LIF's
    decay shift when every LIF has the same one."""
    lines = [f"/* {banner} */", "/* Constants of this model for the kernels (svt_kernels.h). */",
             f"#define SVT_FIXED_TIMESTEPS {ir.timesteps}u"]
    shifts = {n.quant.decay_shift for n in ir.nodes
              if n.op == "lif" and n.quant is not None}
    if len(shifts) == 1:
        lines.append(f"#define SVT_FIXED_DECAY_SHIFT {shifts.pop()}u")
    return "\n".join(lines) + "\n"


def plan_summary(plan: MemoryPlan) -> dict:
    return {"weight_bytes": plan.weight_bytes, "arena_bytes": plan.arena_bytes,
            "timesteps": plan.timesteps,
            "buffers": {name: {"offset": b.offset, "size": b.size}
                        for name, b in plan.arena.buffers.items()},
            "steps": [{"name": s.name, "kernel": s.kernel, "out_format": s.out_format,
                       "out_bytes": s.out_bytes, "scratch_bytes": s.scratch_bytes,
                       "weight_bytes": s.weight_bytes} for s in plan.steps]}
