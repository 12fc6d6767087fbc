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

from .errors import SvtError
from .ir import IR
from .manifest import MANIFEST, Manifest, ModelFacts
from .memory import MemoryPlan, Step, _align
from .resources import TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR
KERNEL_FILES = {
    "conv2d_analog_lif": "conv2d_analog_lif.c",
    "conv2d_spiking_lif": ("conv2d_spiking_lif.c", "conv2d_pixel.c"),
    "conv2d_spiking_maxpool": ("conv2d_spiking_maxpool.c", "conv2d_pixel.c"),
    "linear_spiking_lif": "linear_spiking_lif.c",
    "ssa_lif": "ssa_lif.c",
    "maxpool2d": "maxpool2d.c",
    "maxpool2d_membrane": "maxpool2d_membrane.c",
    "add": "add.c",
    "add_membrane": "add_membrane.c",
    "lif_layer": "lif_layer.c",
    "sdsa_kv_lif": "sdsa_kv_lif.c",
    "spike_mask": "spike_mask.c",
    "mean_tokens": "mean.c",
    "mean_time": "mean.c",
    "mean_tokens_time": "mean.c",
    "dense": "dense.c",
}
C_FORMAT = {"spikes": "SVT_SPIKES", "count": "SVT_COUNTS", "membrane": "SVT_MEMBRANE"}
MAX_TIMESTEPS = 8
VALUES_PER_LINE = 8


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


def _kernel_files(kernel: str) -> tuple[str, ...]:
    files = KERNEL_FILES[kernel]
    return files if isinstance(files, tuple) else (files,)


def _weight_layout(step: Step, weight: np.ndarray) -> tuple[np.ndarray, str]:
    """Reorder a folded weight for the kernel that reads it; return it and a comment."""
    # [out][in][ky][kx] -> [ky][kx][in][out]
    if step.kernel in ("conv2d_spiking_lif", "conv2d_spiking_maxpool"):
        k = weight.shape[-1]
        return (weight.transpose(2, 3, 1, 0),
                f"HWIO [{k}][{k}][{weight.shape[1]}][{weight.shape[0]}]")
    if step.kernel == "linear_spiking_lif":  # [out][in] -> [in][out]
        return weight.T, f"[in {weight.shape[1]}][out {weight.shape[0]}]"
    if step.kernel == "conv2d_analog_lif":
        k = weight.shape[-1]
        return weight, f"OIHW [{weight.shape[0]}][{weight.shape[1]}][{k}][{k}]"
    return weight, f"[out {weight.shape[0]}][in {weight.shape[1]}]"


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
    fmt = {s.name: s.out_format for s in plan.steps}
    arrays, lifs, steps = [], [], []
    offset = plan.arena.offset
    for s in plan.steps:
        n = nodes[s.name]
        src = nodes[n.inputs[0]]
        ctx = {"kernel": s.kernel, "out_c": s.channels, "out_h": s.height, "out_w": s.width,
               "channels": s.channels, "tokens": s.height * s.width,
               "neurons": s.neurons}
        if s.out_format != "scores":
            ctx["out"] = offset(s.name)
        for i, name in enumerate(s.inputs):
            if name != "input":
                ctx[f"in{i}"] = offset(name)
                ctx[f"in{i}_fmt"] = C_FORMAT.get(fmt[name], "")
        if n.weight is not None:
            w, layout = _weight_layout(s, n.weight)
            ctx["weight"], ctx["bias"] = symbol("svt_w_", s.name), symbol("svt_b_", s.name)
            arrays.append(_array(ctx["weight"], w, f"{s.name}: {s.kernel} weight, {layout}"))
            arrays.append(_array(ctx["bias"], n.bias, f"{s.name}: bias [{n.bias.size}]"))
            ctx["in_c"] = n.attrs["in_channels"]
        ctx["lif_ptr"] = "NULL"  # a synaptic layer without LIF keeps its currents
        if "lif" in s.attrs:
            ctx["lif"] = symbol("lif_", s.attrs["lif"])
            ctx["lif_ptr"] = "&" + ctx["lif"]
            lifs.append({"symbol": ctx["lif"], "tau": c_float(s.attrs["tau"]),
                         "v_th": c_float(s.attrs["v_threshold"]),
                         "v_reset": c_float(s.attrs["v_reset"])})
        if s.scratch_bytes:
            ctx["scratch"] = offset(f"{s.name}.scratch")
        if s.kernel in ("conv2d_analog_lif", "conv2d_spiking_lif", "maxpool2d",
                        "maxpool2d_membrane", "conv2d_spiking_maxpool"):
            ctx.update(in_h=src.height, in_w=src.width, kernel_size=s.attrs["kernel"],
                       stride=s.attrs["stride"], padding=s.attrs["padding"])
        if s.kernel == "conv2d_spiking_maxpool":
            ctx.update(conv_h=s.attrs["conv_height"], conv_w=s.attrs["conv_width"],
                       pool=s.attrs["pool"])
        if s.kernel == "ssa_lif":
            ctx.update(q=offset(s.inputs[0]), k=offset(s.inputs[1]), v=offset(s.inputs[2]),
                       heads=s.attrs["heads"], head_dim=s.attrs["head_dim"],
                       scale=c_float(s.attrs["scale"]), kv_bytes=s.attrs["kv_bytes"])
            kv = s.attrs["kv_bytes"] * ir.timesteps * s.channels * s.attrs["head_dim"]
            ctx["acc"] = ctx["scratch"] + _align(kv)
        if s.kernel.startswith("mean"):
            ctx["tokens"] = s.attrs["tokens"]
        if s.kernel == "lif_layer":
            ctx.update(neuron_stride=s.attrs["neuron_stride"], time_stride=s.attrs["time_stride"])
        if s.kernel in ("sdsa_kv_lif", "spike_mask"):
            ctx["tokens"] = s.attrs.get("in_tokens", ctx["tokens"])
        ins = ", ".join(f"{nodes[i].channels}x{nodes[i].height}x{nodes[i].width} "
                        f"{fmt.get(i, 'image')}" for i in s.inputs if i in nodes)
        ctx["comment"] = (f"{' + '.join(s.nodes)}: {ins or 'image'} -> "
                          f"{s.channels}x{s.height}x{s.width} {s.out_format}"
                          + (" (in place)" if s.in_place else ""))
        steps.append(ctx)
    return {"steps": steps, "arrays": arrays, "lifs": lifs, "source": source,
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
    kernels = sorted({name for s in plan.steps for name in _kernel_files(s.kernel)} | {"lif.c"})
    for name in kernels + ["svt_kernels.h"]:
        files[name] = (TEMPLATES / "kernels" / name).read_bytes()
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
