"""Integer precision: weight packing, the integer kernels against the PyTorch integer
reference, a tiny model end to end at every precision, the precision choice, and the
no-float check of an integer firmware for a core without FPU."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli

from svt_deploy.errors import SvtError
from svt_deploy.ops.lif import lif_integer
from svt_deploy.ops.ssa import ssa_reference
from svt_deploy.quant import pack, packed_bytes, quantize_ir, unpack
from svt_deploy.quant.packing import quantize_per_channel, quantize_per_tensor

KERNELS = REPO / "firmware_templates" / "kernels"
HARNESS = Path(__file__).parent / "kernels" / "integer_kernels_harness.c"
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed")
needs_qemu = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
    reason="qemu-system-arm and arm-none-eabi-gcc are needed")


# ----------------------------------------------------------------------------- packing

@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("shape", [(3, 8), (5, 7), (1, 1), (4, 0)])
def test_packing_round_trips(bits, shape):
    rng = np.random.default_rng(sum(shape) + bits)
    low, high = (-127, 127) if bits == 8 else (-8, 7)
    rows = rng.integers(low, high + 1, size=shape).astype(np.int8)
    if rows.size:
        rows.flat[0], rows.flat[-1] = low, high  # the extremes survive
    data = pack(rows, bits)
    assert data.dtype == np.uint8 and data.size == packed_bytes(*shape, bits)
    assert np.array_equal(unpack(data, *shape, bits), rows)


def test_int4_layout_is_low_nibble_first_and_rows_start_on_a_byte():
    rows = np.array([[1, -1, 7], [-8, 2, 0]], np.int8)
    # row 0: (1 | 0xF << 4), (7 | pad 0); row 1: (0x8 | 2 << 4), (0 | pad)
    assert pack(rows, 4).tolist() == [0xF1, 0x07, 0x28, 0x00]
    with pytest.raises(ValueError):
        pack(np.array([[9]], np.int8), 4)


def test_per_channel_quantization_error_is_half_a_step():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3, 3, 3))
    w[2] = 0.0  # an all-zero channel stays zero
    for bits, qmax in ((8, 127), (4, 7)):
        q, scale = quantize_per_channel(w, bits)
        assert q.dtype == np.int8 and np.abs(q).max() <= qmax
        assert np.all(np.abs(q[2]) == 0)
        err = np.abs(q * scale[:, None, None, None] - w)
        assert np.all(err <= scale[:, None, None, None] / 2 + 1e-12)
        assert np.all(np.abs(q).reshape(6, -1).max(1)[[0, 1, 3, 4, 5]] == qmax)
    q, scale = quantize_per_tensor(w[:, :, 0, 0], 8)
    assert np.all(scale == scale[0]) and np.abs(q).max() == 127


# ----------------------------------------------------------------------------- kernels

@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    """The integer kernels (svt_neuron_train_q, ssa_lif_q.c, ssa_counts.c) behind a stdin/stdout
    harness, built with the generated code's warnings as errors."""
    out = tmp_path_factory.mktemp("harness") / "integer_kernels"
    sources = [HARNESS] + [KERNELS / f for f in ("ssa_lif_q.c", "ssa_counts.c")]
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Wconversion", "-Wshadow",
                    "-Werror", "-I", str(KERNELS), "-o", str(out), *map(str, sources)],
                   check=True, capture_output=True)
    return out


def _run(binary: Path, mode: str, payload: bytes) -> bytes:
    proc = subprocess.run([str(binary), mode], input=payload, capture_output=True, check=True)
    return proc.stdout


def _u32(*values) -> bytes:
    return np.asarray(values, "<u4").tobytes()


def _pack_trains(spikes: np.ndarray) -> bytes:
    """[T, neurons] 0/1 -> the kernels' packed trains (neuron i's T bits at bit i*T)."""
    t, n = spikes.shape
    bits = spikes.T.reshape(-1).astype(np.uint8)  # neuron-major, step t at bit t
    return np.packbits(bits, bitorder="little").tobytes()


def _unpack_trains(data: bytes, t: int, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:n * t]
    return bits.reshape(n, t).T


@pytest.mark.parametrize("steps,shift", [(1, 1), (4, 1), (8, 1), (4, 0), (6, 3)])
def test_integer_lif_kernel_matches_reference(harness, steps, shift):
    rng = np.random.default_rng(steps * 10 + shift)
    n = 400
    current = rng.integers(-(2 ** 20), 2 ** 20, size=(steps, n)).astype(np.int32)
    current[:, :50] = 0  # silent neurons
    current[:, 50:100] = 2 ** 29  # always above threshold
    threshold = rng.integers(1, 2 ** 20, size=n).astype(np.int32)
    out = _run(harness, "lif", _u32(steps, n, shift) + threshold.astype("<i4").tobytes()
               + current.T.astype("<i4").tobytes())
    trains = np.frombuffer(out, "<u4")
    ref = lif_integer(torch.from_numpy(current).view(steps, n, 1, 1),
                      torch.from_numpy(threshold).view(n, 1, 1), shift)[..., 0, 0].numpy()
    got = np.array([[(trains[i] >> t) & 1 for i in range(n)] for t in range(steps)])
    assert np.array_equal(got, ref.astype(np.int64))
    assert got[:, :50].sum() == 0 and got[-1, 50:100].all()  # the edge cases did happen


@pytest.mark.parametrize("density", [0.0, 1.0, 0.1, 0.4])
def test_integer_ssa_kernel_matches_reference(harness, density):
    """(q kᵀ) v counts and the attention LIF in integers: the C kernel against the op's
    integer run, on empty, full and sparse spike trains."""
    rng = np.random.default_rng(int(density * 10))
    steps, tokens, heads, head_dim, frac = 4, 9, 2, 4, 6
    c = heads * head_dim
    spikes = [(rng.random((steps, tokens * c)) < density).astype(np.uint8) for _ in range(3)]
    threshold = np.full(c, 4 << frac, np.int32)  # v_th 0.5 at scale 0.125
    out = _run(harness, "ssa", _u32(steps, tokens, heads, head_dim, frac)
               + threshold.astype("<i4").tobytes() + b"".join(_pack_trains(s) for s in spikes))
    got = _unpack_trains(out, steps, tokens * c)

    def as_tensor(s):  # [T, tokens*C] token-major -> [T, 1, C, tokens, 1]
        return torch.from_numpy(s.reshape(steps, tokens, c).transpose(0, 2, 1)
                                .astype(np.float32))[:, None, :, :, None]

    counts = ssa_reference(*(as_tensor(s) for s in spikes), heads, 1.0)
    current = counts.round().to(torch.int32) * (1 << frac)
    ref = lif_integer(current, torch.from_numpy(threshold).view(-1, 1, 1), 1)
    ref = ref[:, 0, :, :, 0].numpy().transpose(0, 2, 1).reshape(steps, -1)
    assert np.array_equal(got, ref.astype(np.uint8))
    if density == 1.0:
        assert got.any()


# ----------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_tiny_model_on_the_host_at_every_precision(tiny_reference, tmp_path, precision):
    """The generated C and the PyTorch reference at each precision: integer models give
    identical int32 scores on every image, from uint8 pixels; weights shrink 4x / ~8x."""
    weights, data = tiny_reference
    out = run_cli("emulate", "--weights", str(weights), "--data", str(data), "--precision",
                  precision, "--samples", "60", "--out", str(tmp_path / "gen"), "--json", "-q",
                  check=True)
    result = json.loads(out.stdout)
    assert result["agreement"] == 1.0
    model_h = (tmp_path / "gen" / "model.h").read_text()
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert manifest["model"]["precision"] == precision
    if precision == "fp32":
        assert "typedef float svt_input_t;" in model_h
        return
    assert result["identical_scores"] == 1.0 and result["max_abs_score_diff"] == 0
    assert "typedef uint8_t svt_input_t;" in model_h and "int32_t svt_score_t" in model_h
    assert result["reference_accuracy"] >= 0.5  # a trained tiny model, still classifying
    weights_c = (tmp_path / "gen" / "model_weights.c").read_text()
    assert "const float" not in weights_c and f"int{precision[-1]} weight" in weights_c


def test_integer_kernels_run_clean_under_the_sanitizers(tiny_reference, tmp_path):
    """ASan and UBSan over the int4 model's C (packed nibbles, shifts, int32 sums)."""
    weights, data = tiny_reference
    out = run_cli("emulate", "--weights", str(weights), "--data", str(data), "--precision",
                  "int4", "--samples", "10", "--sanitize", "--out", str(tmp_path / "gen"),
                  "--json", "-q", check=True)
    assert json.loads(out.stdout)["identical_scores"] == 1.0


def test_quantized_weight_bytes_follow_the_precision(tiny_reference):
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model
    from svt_deploy.memory import plan_memory

    loaded = load_model(None, tiny_reference[0])
    sizes = {}
    for precision in ("fp32", "int8", "int4"):
        ir = quantize_ir(extract_ir(loaded.model, (1, 28, 28)), precision)
        sizes[precision] = plan_memory(ir).weight_bytes
        for n in ir.nodes:
            if n.weight is not None:
                assert n.attrs["precision"] == precision
    assert 0.24 < sizes["int8"] / sizes["fp32"] < 0.30  # 1 B per weight + int32 biases
    assert 0.12 < sizes["int4"] / sizes["fp32"] < 0.17


def test_integer_precision_refuses_unsupported_structures(sdt_trained):
    """The Spike-driven Transformer's membrane shortcut is float: a one-line refusal that
    names the way out, not a silently different model."""
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model

    model_def, weights, _ = sdt_trained
    ir = extract_ir(load_model(model_def, weights).model, (1, 28, 28))
    with pytest.raises(SvtError, match="--precision fp32"):
        quantize_ir(ir, "int8")


def test_auto_precision_quantizes_before_pruning(tiny_reference, tmp_path):
    """A budget of 40 % of the fp32 bytes: int8 meets it unpruned, so auto takes int8 and
    prunes nothing; the checkpoint records the precision and evaluate measures it."""
    weights, data = tiny_reference
    run_cli("prune", "--weights", str(weights), "--data", str(data), "--max-reduction", "60",
            "--max-drop", "5", "--check-samples", "300", "--profile-samples", "100",
            "--out", str(tmp_path), "-q", check=True)
    plan = json.loads((tmp_path / "prune_plan.json").read_text())
    assert plan["precision"] == "int8"
    tried = [row["precision"] for row in plan["precisions_tried"]]
    assert tried == ["fp32", "int8"]
    assert plan["totals"]["params_after"] == plan["totals"]["params_before"]
    assert plan["pruned"]["weight_bytes"] <= 0.4 * plan["baseline"]["weight_bytes"]
    assert {row["precision"] for row in plan["layers"]} == {"int8"}
    out = run_cli("evaluate", "--weights", str(tmp_path / "pruned_model.pt"), "--data",
                  str(data), "--json", check=True)
    assert abs(json.loads(out.stdout)["accuracy"] - plan["test"]["final"]) < 1e-9


def test_auto_turns_precision_and_pruning_rate_together(tiny_reference, tmp_path):
    """A budget between the int4 and the int8 bytes: auto starts from int8 and, group by
    group (largest first), chooses int4 and/or a pruning rate, each measured before it is
    taken; the largest group goes first and the mixed C matches its reference."""
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model
    from svt_deploy.memory import plan_memory

    weights, data = tiny_reference
    loaded = load_model(None, weights)
    plans = {p: plan_memory(quantize_ir(extract_ir(loaded.model, (1, 28, 28)), p))
             for p in ("int8", "int4")}
    flash = (plans["int8"].weight_bytes + plans["int4"].weight_bytes) // 2
    run_cli("prune", "--weights", str(weights), "--data", str(data), "--target-flash",
            str(flash), "--max-drop", "5", "--check-samples", "300", "--profile-samples",
            "100", "--out", str(tmp_path), "-q", check=True)
    plan = json.loads((tmp_path / "prune_plan.json").read_text())
    assert plan["precision"] == "int8+int4"
    assert [r["precision"] for r in plan["precisions_tried"]] == ["fp32", "int8"]
    assert plan["pruned"]["weight_bytes"] <= flash
    # the largest group was the first one cut, and int4 was among its candidates
    largest = max(plan["groups"], key=lambda g: g["params_before"])["group"]
    assert plan["explored"][0]["group"] == largest
    assert any(e.get("precision") == "int4" for e in plan["explored"])
    lowered = [g for g in plan["groups"] if g["precision"] == "int4"]
    assert lowered and any(g["precision"] == "int8" for g in plan["groups"])
    # a group's precision is that of the layers producing its channels; the head is in none
    layers = {r["name"]: r["precision"] for r in plan["layers"]}
    assert set(layers.values()) == {"int8", "int4"}
    assert layers["head"] == "int8"
    out = run_cli("emulate", "--weights", str(tmp_path / "pruned_model.pt"), "--data",
                  str(data), "--samples", "40", "--out", str(tmp_path / "gen"), "--json", "-q",
                  check=True)
    result = json.loads(out.stdout)
    assert result["identical_scores"] == 1.0
    weights_c = (tmp_path / "gen" / "model_weights.c").read_text()
    assert "int4 weight" in weights_c and "int8 weight" in weights_c


def test_precision_knob_owns_every_weighted_layer_but_the_head_once(tiny_reference):
    """Each weighted layer's output channels lie in one group's space, so a group's
    precision knob sets its producers and no two groups fight over a layer; lowering a
    group moves exactly those layers from int8 to int4."""
    from svt_deploy.loading import load_model
    from svt_deploy.prune.groups import discover_groups
    from svt_deploy.prune.precision import (at_precision, group_precision, layer_precisions,
                                            lowered, owned_layers)
    from svt_deploy.quant.reference import deployed_ir

    weights, _ = tiny_reference
    loaded = at_precision(load_model(None, weights), "int8", None)
    ir = deployed_ir(loaded, (1, 28, 28))
    groups = discover_groups(loaded, ir)
    owned = [name for g in groups for name in owned_layers(ir, g.spaces)]
    assert len(owned) == len(set(owned))
    assert set(layer_precisions(loaded, ir)) - set(owned) == {"head"}
    g = groups[0]
    low = lowered(loaded, ir, g.spaces)
    assert group_precision(low, ir, g.spaces) == "int4"
    assert {k: v for k, v in low.precision.items() if v == "int4"} == \
        {name: "int4" for name in owned_layers(ir, g.spaces)}
    assert lowered(low, ir, g.spaces) is None  # int4 has nowhere lower to go
    assert all(group_precision(low, ir, o.spaces) == "int8" for o in groups[1:])


def _off_grid(loaded, input_shape) -> float:
    """The largest distance of a deployed (BN-folded) weight from its integer grid, in grid
    steps: 0 when quantizing gives back exactly the weights."""
    from svt_deploy.quant.reference import deployed_ir

    worst = 0.0
    for n in deployed_ir(loaded, input_shape).nodes:
        if getattr(n.quant, "q", None) is None:
            continue
        scale = np.asarray(n.quant.scale, np.float64).reshape(-1, *([1] * (n.quant.q.ndim - 1)))
        w = np.asarray(n.weight, np.float64).reshape(n.quant.q.shape)
        worst = max(worst, float(np.abs(w / scale - n.quant.q).max()))
    return worst


def test_integer_fine_tuning_is_quantization_aware(tiny_reference, tmp_path):
    """Pruning an int4 model with fine-tuning trains through the int4 grid and leaves every
    weight on it, so the deploy rounds nothing away; a float fine-tune leaves them off it."""
    from svt_deploy.data import load_dataset
    from svt_deploy.loading import load_model
    from svt_deploy.prune.precision import at_precision
    from svt_deploy.training import train_steps

    weights, data = tiny_reference
    ds = load_dataset(data)
    x, y = ds.split("train", 256)
    plain = at_precision(load_model(None, weights), "int4", ds.normalize)
    train_steps(plain.model, ds, x, y, epochs=1, lr=5e-4, seed=0)
    assert _off_grid(plain, ds.input_shape) > 0.05  # float training leaves the grid

    out = run_cli("prune", "--weights", str(weights), "--data", str(data), "--precision",
                  "int4", "--max-reduction", "90", "--max-drop", "40", "--finetune-epochs", "1",
                  "--finetune-samples", "256", "--check-samples", "200", "--profile-samples",
                  "100", "--out", str(tmp_path), check=True)
    assert "fine-tune in float" not in out.stdout  # every layer of our model trains on its grid
    trained = json.loads((tmp_path / "prune_plan.json").read_text())["finetuned"]
    assert trained["quantization_aware"]["float"] == []
    assert "head" in trained["quantization_aware"]["on_grid"]
    pruned = load_model(None, tmp_path / "pruned_model.pt")
    assert pruned.precision == "int4"
    assert _off_grid(pruned, ds.input_shape) < 1e-3


# ----------------------------------------------------------------------------- no float

@needs_arm
def test_odd_int4_rows_link_to_exactly_the_planned_bytes(tmp_path):
    """int4 rows of odd widths leave byte arrays of any length before word-aligned int32
    arrays: the flash section must still hold exactly the planned bytes (build_firmware
    refuses a mismatch)."""
    from svt_deploy.boards import load_board
    from svt_deploy.firmware import build_firmware, generate_firmware
    from svt_deploy.ir import extract_ir
    from svt_deploy.memory import plan_memory
    from svt_deploy.model import SpikingViT, SViTConfig

    torch.manual_seed(0)
    model = SpikingViT(SViTConfig.reference(embed_dim=20, depth=1, heads=4, mlp_ratio=2,
                                            pool_after=[1, 2],
                                            stem_channels=[5, 11, 13])).eval()
    ir = quantize_ir(extract_ir(model, (1, 28, 28)), "int4")
    plan = plan_memory(ir)
    board = load_board("lm3s6965")
    generate_firmware(ir, plan, board, tmp_path / "p", "odd widths")
    build = build_firmware(tmp_path / "p", board)
    assert build.weight_bytes == plan.weight_bytes and plan.weight_bytes % 4 == 0


@needs_arm
def test_integer_firmware_for_a_core_without_fpu_has_no_float_code(tmp_path):
    from svt_deploy.boards import load_board
    from svt_deploy.firmware import build_firmware, float_code, generate_firmware
    from svt_deploy.ir import extract_ir
    from svt_deploy.memory import plan_memory
    from svt_deploy.model import SpikingViT, SViTConfig

    torch.manual_seed(0)
    model = SpikingViT(SViTConfig.reference(embed_dim=32, depth=1, heads=4, mlp_ratio=2,
                                            pool_after=[1, 2])).eval()
    found = {}
    for board_name, precision in (("lm3s6965", "int8"), ("lm3s6965", "fp32"),
                                  ("stm32f405", "fp32")):
        board = load_board(board_name)
        ir = quantize_ir(extract_ir(model, (1, 28, 28)), precision)
        project = tmp_path / f"{board_name}-{precision}"
        generate_firmware(ir, plan_memory(ir), board, project, "tiny")
        build = build_firmware(project, board)
        found[board_name, precision] = float_code(build.elf)
        if precision != "fp32":
            assert build.facts.float_code == []
    assert found["lm3s6965", "int8"] == []
    # the check can fail: soft-float helpers without an FPU, VFP instructions with one
    assert any(name.startswith("__aeabi_f") for name in found["lm3s6965", "fp32"])
    assert any(name.startswith("v") for name in found["stm32f405", "fp32"])


@needs_qemu
@pytest.mark.parametrize("board,precision", [("lm3s6965", "int8"), ("stm32h7", "int4")])
def test_integer_firmware_on_qemu_gives_the_reference_scores(tiny_reference, tmp_path, board,
                                                             precision):
    """The emulated board (a Cortex-M3 without FPU; a Cortex-M7) returns exactly the int32
    scores of the PyTorch integer reference and of the host C, image by image."""
    weights, data = tiny_reference
    proc = run_cli("run-qemu", "--board", board, "--precision", precision, "--weights",
                   str(weights), "--data", str(data), "--samples", "8", "--out",
                   str(tmp_path / "fw"), "--json", "-q", check=True)
    r = json.loads(proc.stdout)
    assert r["samples"] == 8 and r["emulated"]
    assert r["identical_to_host"] and r["max_abs_diff_host"] == 0
    assert r["max_abs_diff_torch"] == 0 and r["agreement_torch"] == 1.0
