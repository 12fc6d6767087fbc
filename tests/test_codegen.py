import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import FIXTURES, randomize_bn, run_cli
from svt_deploy.codegen import generate
from svt_deploy.errors import SvtError
from svt_deploy.forward import run_model
from svt_deploy.hostemu import build_host, compare, run_host
from svt_deploy.ir import extract_ir
from svt_deploy.loading import LoadedModel
from svt_deploy.memory import plan_memory
from svt_deploy.model import SViTConfig, SpikingViT
from svt_deploy.prune import prune_space, single_space_groups

sys.path.insert(0, str(FIXTURES))
import published_spikformer  # noqa: E402


def tiny(timesteps=4, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = SViTConfig.reference(embed_dim=32, depth=1, heads=4, mlp_ratio=2, pool_after=[1, 2],
                               timesteps=timesteps, **kw)
    return randomize_bn(SpikingViT(cfg))


def images(n=48, seed=0):
    return torch.rand((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))


def host_vs_torch(model, tmp_path, x):
    ir = extract_ir(model, tuple(x.shape[1:]))
    plan = plan_memory(ir)
    generate(ir, plan, tmp_path / "gen", source="test")
    binary = build_host(tmp_path / "gen")
    scores, _ = run_host(binary, x.numpy(), ir.num_classes, workers=1)
    with torch.no_grad():
        ref = run_model(model, x).numpy()
    return scores, ref, ir, plan


@pytest.mark.parametrize("make", [lambda: tiny(4), lambda: tiny(3, seed=1),
                                  lambda: tiny(5, seed=2),
                                  lambda: randomize_bn(published_spikformer.build())],
                         ids=["ours-T4", "ours-T3", "ours-T5", "published-conv1d-TBCN"])
def test_host_build_computes_what_pytorch_computes(make, tmp_path):
    # odd T: spike trains straddle byte boundaries in the bit-packed buffers
    model = make()
    scores, ref, _, _ = host_vs_torch(model, tmp_path, images())
    assert np.abs(scores - ref).max() < 1e-3
    assert (scores.argmax(1) == ref.argmax(1)).all()


def test_trained_tiny_model_agrees_on_real_images(tiny_reference, tmp_path):
    ckpt, data = tiny_reference
    proc = run_cli("emulate", "--weights", str(ckpt), "--data", str(data), "--out",
                   str(tmp_path / "emu"), "--json", check=True)
    result = json.loads(proc.stdout)
    assert result["samples"] == 500 and result["agreement"] >= 0.995
    assert abs(result["accuracy"] - result["reference_accuracy"]) <= 0.003
    assert result["reference_accuracy"] > 0.5


def _symbol_sizes(obj):
    out = subprocess.run(["nm", "-S", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def _pruned_variants():
    a = LoadedModel(tiny(seed=3), None, "a")
    ir = extract_ir(a.model, (1, 28, 28))
    groups = {g.label: g for g in single_space_groups(ir)}
    mlp = next(g for g in groups.values() if "fc1" in g.label)
    prune_space(a, ir, mlp.space, 16)
    b = LoadedModel(tiny(seed=3), None, "b")
    ir = extract_ir(b.model, (1, 28, 28))
    heads = next(g for g in single_space_groups(ir) if g.step > 1)
    prune_space(b, ir, heads.space, 2)
    ir = extract_ir(b.model, (1, 28, 28))
    emb = next(g for g in single_space_groups(ir) if "embedding" in g.label)
    prune_space(b, ir, emb.space, 24)
    return [a.model, b.model]


@pytest.mark.parametrize("index", [0, 1], ids=["mlp-pruned", "heads+embedding-pruned"])
def test_emitted_bytes_equal_the_memory_model(index, tmp_path):
    model = _pruned_variants()[index]
    ir = extract_ir(model, (1, 28, 28))
    plan = plan_memory(ir)
    gen = generate(ir, plan, tmp_path / "gen", source="test")
    objs = {}
    for name in ("model_weights", "model"):
        objs[name] = tmp_path / f"{name}.o"
        subprocess.run(["gcc", "-std=c99", "-O2", "-c", str(gen.directory / f"{name}.c"),
                        "-I", str(gen.directory), "-o", str(objs[name])], check=True)
    weights = _symbol_sizes(objs["model_weights"])
    emitted = sum(v for k, v in weights.items() if k.startswith(("svt_w_", "svt_b_")))
    assert emitted == plan.weight_bytes == gen.weight_bytes
    assert _symbol_sizes(objs["model"])["svt_arena"] == plan.arena_bytes
    header = (gen.directory / "model.h").read_text()
    assert f"SVT_WEIGHT_BYTES {plan.weight_bytes}u" in header
    assert f"SVT_ARENA_BYTES {plan.arena_bytes}u" in header
    # and the pruned C still computes what the pruned PyTorch model computes
    binary = build_host(gen.directory)
    scores, _ = run_host(binary, images(16).numpy(), ir.num_classes, workers=1)
    with torch.no_grad():
        ref = run_model(model, images(16)).numpy()
    assert compare(scores, ref, ref.argmax(1)).agreement == 1.0


SANITIZED_IMAGES = 300


def test_sanitizer_build_runs_clean(tmp_path):
    """ASan and UBSan, any report fatal (-fno-sanitize-recover=all), over a few hundred
    images (a blank and a saturated one among them; T=3 straddles bytes): the scores are
    the normal build's to the bit."""
    model = tiny(3, seed=4)
    ir = extract_ir(model, (1, 28, 28))
    generate(ir, plan_memory(ir), tmp_path / "gen", source="test")
    x = images(SANITIZED_IMAGES, seed=5)
    x[0], x[1] = 0.0, 1.0
    binary = build_host(tmp_path / "gen", sanitize=True)
    scores, _ = run_host(binary, x.numpy(), ir.num_classes, workers=1,
                         env={"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                              "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
    plain, _ = run_host(build_host(tmp_path / "gen"), x.numpy(), ir.num_classes, workers=1)
    np.testing.assert_array_equal(scores, plain)
    with torch.no_grad():
        ref = run_model(model, x).numpy()
    assert np.abs(scores - ref).max() < 1e-3


def test_too_many_timesteps_is_a_clear_error(tmp_path):
    model = tiny(9)
    ir = extract_ir(model, (1, 28, 28))
    with pytest.raises(SvtError, match="at most 8"):
        generate(ir, plan_memory(ir), tmp_path / "gen", source="test")


def test_unsupported_layer_stops_generate_naming_the_module(tmp_path):
    model_def = f"{FIXTURES / 'unsupported_model.py'}:build"
    sys.path.insert(0, str(FIXTURES))
    import unsupported_model
    weights = tmp_path / "w.pt"
    torch.save(unsupported_model.build().state_dict(), weights)
    proc = run_cli("generate", "--model-def", model_def, "--weights", str(weights),
                   "--data", "/usr/share/datasets/fashion-mnist", "--out", str(tmp_path / "g"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "block.0.mlp.fc1_lif" in proc.stderr and "GELU" in proc.stderr
    assert not (tmp_path / "g").exists()
