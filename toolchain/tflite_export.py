"""TFLite export of the IR, and runners for LiteRT and TensorFlow Lite Micro (TFLM).

The TensorFlow graph is built from the IR (not from the PyTorch modules), so it covers
every model the IR supports, pruned or not, ours or third-party. It follows ``run_ir``:

* layout NHWC; the T timesteps are folded into the batch dimension (``[T*B, H, W, C]``,
  timestep-major), so every conv/linear/pool runs once over all timesteps;
* direct encoding: the first conv sees the same image at every step, so it runs once;
* LIF unrolled over T with builtin ops only. SpikingJelly's
  ``h = v + (x - (v - v_reset)) / tau`` is regrouped (equal up to float rounding) as
  ``h = x/tau [+ v_reset/tau] + (1 - 1/tau) * v``; ``spike = h >= v_th`` (GREATER_EQUAL,
  SELECT_V2 to 1/0); the hard reset is fused with the decay,
  ``(1 - 1/tau) * v = h * (spike ? 0 : 1 - 1/tau)`` (SELECT_V2, MUL). Per step that is one
  ADD and one MUL to requantise in int8 (the literal form has four), and no
  SELECT_V2(spike, v_reset, h), whose int8 form would force h onto the scale of the
  reset potential and clip it below the threshold;
* SDSA (Spike-driven attention) as MUL and SUM (``Σ_tokens k ⊙ v``), the LIF, and a MUL
  broadcasting the channel mask over the tokens of ``q``; a max-pool on real values pads
  with the tensor's own minimum (PADV2), which never wins a max, as torch's -inf padding;
* SSA as two BATCH_MATMULs, ``q @ (kᵀ @ v) * scale``: on binary spikes every product is an
  exact integer in float32, so the result equals ``(q @ kᵀ) @ v`` bit for bit while the
  intermediate is ``d×d`` per head instead of ``N×N``.

All weights are graph constants (nothing to freeze, so the int8 conversion never meets
READ_VARIABLE). ``x/tau`` multiplies a conv/linear output before anything else reads it,
so the converter folds it into that layer's weights and the flatbuffer holds each weight
once (no second, pre-scaled copy; the tests check the size).

TensorFlow, LiteRT and tflite-micro are imported lazily: the rest of svt-deploy works
without them (``pip install .[tflite]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import SvtError

if TYPE_CHECKING:  # the TFLM child processes must not pay for importing torch
    from .ir import IR

INSTALL_HINT = "pip install .[tflite]"
REPRESENTATIVE_SAMPLES = 1000


# ----------------------------------------------------------------------------- imports

def _require(module: str, what: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SvtError(f"{what} is not installed; install the TFLite extra with: "
                       f"{INSTALL_HINT}") from None


def require_tensorflow(threads: int | None = None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.modules.get("tensorflow") is None:
        with _quiet_native_stderr():  # absl/oneDNN start-up notices on fd 2
            _require("tensorflow", "TensorFlow")
    import tensorflow as tf
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised: keep its setting
            pass
    return tf


# ----------------------------------------------------------------------------- graph

@dataclass
class TfContext:
    """What an op's ``tflite`` lowering needs: TensorFlow, the batch and step counts."""

    tf: object
    timesteps: int
    batch: int

    def const(self, a):
        return self.tf.constant(np.ascontiguousarray(a, np.float32))

    def per_step(self, x, timed):
        """The T per-step tensors ``[B, ...]`` of a value."""
        if not timed:
            return [x] * self.timesteps
        return self.tf.unstack(self.tf.reshape(x, [self.timesteps, self.batch, *x.shape[1:]]),
                               axis=0)


def build_tf_function(ir: IR, batch: int = 1):
    """A ``tf.function`` computing the IR's class scores from NHWC float32 images: each
    node lowered by its op's ``tflite``. Values are NHWC with time folded into the batch."""
    from . import ops  # here, not at the top: the TFLM child processes must not import torch

    tf = require_tensorflow()
    tfc = TfContext(tf, ir.timesteps, batch)
    c, h, w = ir.input_shape

    def forward(images):
        vals: dict[str, tuple] = {}  # name -> (tensor, timed)
        for n in ir.nodes:
            if n.op == "input":
                vals[n.name] = (images, False)
            else:
                vals[n.name] = ops.get(n.op).tflite(n, vals, tfc)
        return vals[ir.nodes[-1].name][0]

    spec = tf.TensorSpec([batch, h, w, c], tf.float32, name="image")
    return tf.function(forward, input_signature=[spec], autograph=False)


# ----------------------------------------------------------------------------- conversion

@dataclass
class Conversion:
    fp32: bytes
    int8: bytes | None
    int8_mode: str  # "full-integer" | "int8 with float fallback" | "failed: ..." | "skipped"
    representative: int  # training images used for calibration
    ops: dict = field(default_factory=dict)  # variant -> {op: count}
    seconds: float = 0.0


def to_nhwc(images_nchw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(images_nchw, np.float32).transpose(0, 2, 3, 1))


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the converter's C++ chatter (fd 2); replay it if something fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            tail = sink.read().decode(errors="replace").strip().splitlines()[-20:]
            if tail and os.environ.get("SVT_DEBUG"):
                print("\n".join(tail), file=sys.stderr)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def convert(ir: IR, representative: np.ndarray | None, threads: int = 1,
            log=lambda msg: None) -> Conversion:
    """float32 and int8 flatbuffers of the IR; ``representative`` are NHWC training images
    for the int8 calibration (None: float32 only)."""
    t0 = time.time()
    with _quiet_native_stderr():
        tf = require_tensorflow(threads)
        fn = build_tf_function(ir)

        def converter():
            return tf.lite.TFLiteConverter.from_concrete_functions(
                [fn.get_concrete_function()], fn)

        try:
            fp32 = converter().convert()
        except Exception as e:  # noqa: BLE001 - the converter raises many types
            raise SvtError(f"TFLite conversion failed: {_first_line(e)}") from None
        int8, mode = None, "skipped"
        if representative is not None and len(representative):
            def rep():
                for img in representative:
                    yield [img[None].astype(np.float32)]

            # full-integer first (what an MCU without an FPU needs); if some op has no
            # int8 kernel, fall back to int8 with float ops where needed
            for mode, strict in (("full-integer", True), ("int8 with float fallback", False)):
                conv = converter()
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = rep
                if strict:
                    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                    conv.inference_input_type = tf.int8
                    conv.inference_output_type = tf.int8
                try:
                    int8 = conv.convert()
                    break
                except Exception as e:  # noqa: BLE001 - any failure: try the next mode
                    log(f"{mode} int8 conversion failed: {_first_line(e)}")
                    mode = f"failed: {_first_line(e)}"
    ops = {"fp32": op_counts(fp32)}
    if int8 is not None:
        ops["int8"] = op_counts(int8)
    return Conversion(fp32, int8, mode, 0 if representative is None else len(representative),
                      ops, time.time() - t0)


def op_counts(model: bytes) -> dict[str, int]:
    """Builtin operator histogram of a flatbuffer (read with the tflite-micro schema)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return {}
    m = runtime.convert_bytearray_to_object(bytearray(model))
    names = {v: k for k, v in vars(runtime.schema_fb.BuiltinOperator).items()
             if not k.startswith("_")}
    counts: dict[str, int] = {}
    for sg in m.subgraphs:
        for op in sg.operators or []:
            code = runtime.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex])
            name = names.get(code, str(code))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


# ----------------------------------------------------------------------------- LiteRT

def quantize(x: np.ndarray, scale: float, zero: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


class LiteRTModel:
    """A .tflite flatbuffer run by LiteRT one image at a time (batch 1, as on the MCU).
    Quantised inputs/outputs are (de)quantised here, so callers see float images/scores."""

    def __init__(self, model: bytes, threads: int = 1):
        mod = _require("ai_edge_litert.interpreter", "ai-edge-litert (LiteRT)")
        with _quiet_native_stderr():  # "Created TensorFlow Lite XNNPACK delegate"
            self.interp = mod.Interpreter(model_content=model, num_threads=threads)
            self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def _run(self, image_nhwc: np.ndarray) -> np.ndarray:
        x = image_nhwc[None].astype(np.float32)
        if self.inp["dtype"] != np.float32:
            x = quantize(x, *self.inp["quantization"], self.inp["dtype"])
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])[0]
        return (dequantize(y, *self.out["quantization"]) if self.out["dtype"] != np.float32
                else y.astype(np.float32))

    def predict(self, images_nhwc: np.ndarray, progress=None) -> np.ndarray:
        out = []
        for img in images_nhwc:
            out.append(self._run(img))
            if progress is not None:
                progress(1)
        return np.stack(out) if out else np.zeros((0, 0), np.float32)

    def latency(self, images_nhwc: np.ndarray) -> float:
        """Mean wall seconds per image (set input, invoke, read output) at batch 1."""
        self._run(images_nhwc[0])  # warm-up
        start = time.perf_counter()
        for img in images_nhwc:
            self._run(img)
        return (time.perf_counter() - start) / max(1, len(images_nhwc))


def spike_flips(fp32: bytes, int8: bytes, images_nhwc: np.ndarray) -> dict:
    """Where int8 departs from fp32: the fraction of spikes that differ, per timestep (all
    LIF layers together) and per LIF layer, on ``images_nhwc``. The spike tensors are the
    inputs of the PACK ops that restack the T unrolled steps (input i = timestep i)."""
    from tflite_micro.python.tflite_micro import runtime

    mod = _require("ai_edge_litert.interpreter", "ai-edge-litert (LiteRT)")
    m = runtime.convert_bytearray_to_object(bytearray(fp32))
    sg = m.subgraphs[0]
    pack = runtime.schema_fb.BuiltinOperator.PACK
    layers = []  # [[tensor name at t=0, t=1, ...], ...]
    for op in sg.operators or []:
        code = runtime.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex])
        if code == pack:
            names = [sg.tensors[i].name for i in op.inputs]
            layers.append([n.decode() if isinstance(n, bytes) else n for n in names])

    def collect(model):
        with _quiet_native_stderr():
            it = mod.Interpreter(model_content=model, num_threads=1,
                                 experimental_preserve_all_tensors=True)
            it.allocate_tensors()
        by_name = {d["name"]: d for d in it.get_tensor_details()}
        inp = it.get_input_details()[0]
        out = {}
        for img in images_nhwc:
            x = img[None].astype(np.float32)
            if inp["dtype"] != np.float32:
                x = quantize(x, *inp["quantization"], inp["dtype"])
            it.set_tensor(inp["index"], x)
            it.invoke()
            for layer in layers:
                for name in layer:
                    d = by_name.get(name)
                    if d is None:
                        continue
                    v = it.get_tensor(d["index"])
                    if d["dtype"] != np.float32:
                        v = dequantize(v, *d["quantization"])
                    out.setdefault(name, []).append(v > 0.5)
        return {k: np.stack(v) for k, v in out.items()}

    a, b = collect(fp32), collect(int8)
    steps = max((len(layer) for layer in layers), default=0)
    diff, total = np.zeros(steps), np.zeros(steps)
    per_layer = []
    for layer in layers:
        flips = []
        for t, name in enumerate(layer):
            if name in a and name in b:
                d = int((a[name] != b[name]).sum())
                diff[t] += d
                total[t] += a[name].size
                flips.append(d / a[name].size)
        per_layer.append(flips)
    return {"images": len(images_nhwc), "layers": len(layers),
            "by_timestep": [float(d / n) if n else None for d, n in zip(diff, total)],
            "by_layer": per_layer}


# ----------------------------------------------------------------------------- TFLM

def _tflm_subprocess(model_path: Path, arena: int, images: np.ndarray | None,
                     timeout: float) -> tuple[int, dict]:
    """Run the TFLM worker in a fresh process: (returncode, its reply)."""
    with tempfile.TemporaryDirectory(prefix="svt_tflm_") as tmp:
        reply = Path(tmp) / "reply.json"
        args = [sys.executable, "-m", "svt_deploy.tflite_export", "tflm", str(model_path),
                str(arena), str(reply)]
        if images is not None:
            np.save(Path(tmp) / "images.npy", np.ascontiguousarray(images, np.float32))
            args.append(str(Path(tmp) / "images.npy"))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            proc = subprocess.run(args, capture_output=True, timeout=timeout, env=env,
                                  check=False)
        except subprocess.TimeoutExpired:
            return -1, {"error": f"timed out after {timeout:.0f} s"}
        data = json.loads(reply.read_text()) if reply.is_file() else {}
        if proc.returncode != 0 and "error" not in data:
            err = proc.stderr.decode(errors="replace").strip()
            data["error"] = err[-300:] or f"killed by signal {-proc.returncode}"
        if (Path(tmp) / "scores.npy").is_file():
            data["scores"] = np.load(Path(tmp) / "scores.npy")
        return proc.returncode, data


def tflm_probe(model_path: str | Path, arena: int, timeout: float = 300) -> bool:
    """Does TFLM allocate the model and run one inference in ``arena`` bytes? The probe runs
    in its own process: just below the limit TFLM can crash instead of raising."""
    rc, data = _tflm_subprocess(Path(model_path), arena, None, timeout)
    return rc == 0 and bool(data.get("ok"))


def tflm_min_arena(model_path: str | Path, granularity: int = 16,
                   log=lambda msg: None) -> int:
    """The smallest TFLM tensor arena (bytes, to ``granularity``) that runs the model, by
    binary search; every probe is a fresh process."""
    _require("tflite_micro", "tflite-micro")
    model_path = Path(model_path)
    hi = max(64 * 1024, model_path.stat().st_size)
    lo = 0  # largest size known to fail (0: assumed)
    while not tflm_probe(model_path, hi):
        log(f"  TFLM arena {hi:,} B: fails")
        if hi >= 2 ** 31:
            raise SvtError(f"TFLM cannot run {model_path.name} with any arena up to 2 GiB")
        lo, hi = hi, hi * 2
    log(f"  TFLM arena {hi:,} B: runs")
    while hi - lo > granularity:
        mid = (lo + hi) // 2 // granularity * granularity
        if mid <= lo:
            break
        ok = tflm_probe(model_path, mid)
        log(f"  TFLM arena {mid:,} B: {'runs' if ok else 'fails'}")
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi


def tflm_predict(model_path: str | Path, arena: int, images_nhwc: np.ndarray,
                 timeout: float = 7200) -> tuple[np.ndarray, float]:
    """Scores from the TFLM interpreter (own process) and its mean seconds per image."""
    rc, data = _tflm_subprocess(Path(model_path), arena, images_nhwc, timeout)
    if rc != 0 or "scores" not in data:
        raise SvtError(f"TFLM failed on {Path(model_path).name} (exit {rc}): "
                       f"{data.get('error', '')[:200]}")
    return data["scores"], data["seconds_per_image"]


def _tflm_worker(model_path: str, arena: int, reply: str, images: str | None) -> int:
    """Child process: allocate in ``arena`` bytes, run one zero image or the given images."""
    from tflite_micro.python.tflite_micro import runtime

    def qparams(details):
        if details["dtype"] == np.float32:
            return None
        q = details["quantization_parameters"]
        return float(q["scales"][0]), int(q["zero_points"][0])

    result: dict = {"ok": False}
    try:
        interp = runtime.Interpreter.from_bytes(Path(model_path).read_bytes(),
                                                arena_size=arena)
        inp, out = interp.get_input_details(0), interp.get_output_details(0)
        qin, qout = qparams(inp), qparams(out)
        data = np.load(images) if images else np.zeros((1, *inp["shape"][1:]), np.float32)
        scores, seconds = [], 0.0
        for img in data:
            x = img[None].astype(np.float32)
            x = quantize(x, *qin, inp["dtype"]) if qin else x
            start = time.perf_counter()
            interp.set_input(x, 0)
            interp.invoke()
            y = interp.get_output(0)[0]
            seconds += time.perf_counter() - start
            scores.append(dequantize(y, *qout) if qout else y.astype(np.float32))
        scores = np.stack(scores)
        result = {"ok": bool(np.isfinite(scores).all()),
                  "seconds_per_image": seconds / len(data)}
        if images:
            np.save(Path(reply).parent / "scores.npy", scores)
    except Exception as e:  # noqa: BLE001 - too small an arena raises RuntimeError
        result = {"ok": False, "error": _first_line(e)}
    Path(reply).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


# ----------------------------------------------------------------------------- checks

@dataclass
class RuntimeCheck:
    runtime: str
    samples: int
    accuracy: float
    agreement: float  # identical top-1 with PyTorch
    max_abs_score_diff: float
    seconds_per_image: float | None = None
    arena_bytes: int | None = None

    def as_dict(self) -> dict:
        d = {"runtime": self.runtime, "samples": self.samples,
             "accuracy": round(self.accuracy, 5), "agreement": round(self.agreement, 5),
             "max_abs_score_diff": float(f"{self.max_abs_score_diff:.3g}")}
        if self.seconds_per_image is not None:
            d["seconds_per_image"] = float(f"{self.seconds_per_image:.4g}")
        if self.arena_bytes is not None:
            d["arena_bytes"] = self.arena_bytes
        return d


def score_check(name: str, scores: np.ndarray, ref: np.ndarray, labels: np.ndarray,
                **extra) -> RuntimeCheck:
    pred = scores.argmax(1)
    return RuntimeCheck(name, len(labels), float((pred == labels).mean()),
                        float((pred == ref.argmax(1)).mean()),
                        float(np.abs(scores - ref).max()), **extra)


def check_litert(name: str, model: bytes, images_nhwc, labels, ref, threads: int = 1,
                 progress=None) -> RuntimeCheck:
    scores = LiteRTModel(model, threads).predict(images_nhwc, progress)
    return score_check(name, scores, ref, labels)


def check_tflm(name: str, model_path: str | Path, images_nhwc, labels, ref,
               arena: int | None = None, log=lambda msg: None) -> RuntimeCheck:
    arena = arena or tflm_min_arena(model_path, log=log)
    scores, sec = tflm_predict(model_path, arena, images_nhwc)
    return score_check(name, scores, ref, labels, seconds_per_image=sec, arena_bytes=arena)


# ----------------------------------------------------------------------------- export

FP32_FILE, INT8_FILE, META_FILE = "model_fp32.tflite", "model_int8.tflite", "tflite_export.json"


def representative_images(ds, count: int) -> np.ndarray:
    """NHWC calibration images from the TRAINING split (never validation or test)."""
    return to_nhwc(ds.as_tensor(ds.split("train", count)[0]).numpy())


def export(ir: IR, ds, out_dir: str | Path, representative: int = REPRESENTATIVE_SAMPLES,
           threads: int = 1, log=lambda msg: None) -> tuple[Conversion, dict]:
    """Write model_fp32.tflite, model_int8.tflite (calibrated on ``representative``
    training images) and tflite_export.json into ``out_dir``; returns the conversion and
    the metadata written."""
    out_dir = Path(out_dir)
    rep = representative_images(ds, representative) if representative > 0 else None
    conv = convert(ir, rep, threads=threads, log=log)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {FP32_FILE: conv.fp32}
    if conv.int8 is not None:
        files[INT8_FILE] = conv.int8
    elif (out_dir / INT8_FILE).exists():
        (out_dir / INT8_FILE).unlink()  # never leave a stale int8 model beside a new fp32
    for name, data in files.items():
        tmp = out_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(out_dir / name)
    c, h, w = ir.input_shape
    meta = {"input": {"layout": "NHWC", "shape": [1, h, w, c], "dtype": "float32 (fp32); "
                      "int8 with the input tensor's scale/zero point (int8)",
                      "preprocessing": "as for PyTorch: uint8/255, then --normalize"},
            "timesteps": ir.timesteps, "num_classes": ir.num_classes, "params": ir.params,
            "bytes": {k: len(v) for k, v in files.items()}, "int8_mode": conv.int8_mode,
            "representative": {"split": "train", "images": conv.representative},
            "ops": conv.ops, "convert_seconds": round(conv.seconds, 1)}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    return conv, meta


if __name__ == "__main__":  # child process of the TFLM probes and runs
    if len(sys.argv) >= 5 and sys.argv[1] == "tflm":
        sys.exit(_tflm_worker(sys.argv[2], int(sys.argv[3]), sys.argv[4],
                              sys.argv[5] if len(sys.argv) > 5 else None))
    print("internal entry point: python -m svt_deploy.tflite_export tflm MODEL ARENA REPLY "
          "[IMAGES.npy]", file=sys.stderr)
    sys.exit(2)
