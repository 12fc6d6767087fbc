import argparse
import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

from conftest import FIXTURES, randomize_bn, run_cli
from svt_deploy.cli_args import add_budget_args
from svt_deploy.forward import run_model
from svt_deploy.ir import extract_ir, run_ir
from svt_deploy.loading import LoadedModel, load_model
from svt_deploy.memory import plan_memory
from svt_deploy.model import SViTConfig, SpikingViT
from svt_deploy.prune import (Budget, PruneOptions, discover_groups, prune_space, pruned_copy,
                             single_space_groups, unit_importance)
from svt_deploy.prune.profile import NOISE_ALLOWANCE, _truncated
from svt_deploy.stages import StageCache, stage_key

sys.path.insert(0, str(FIXTURES))
import published_spikformer  # noqa: E402


def tiny():
    torch.manual_seed(0)
    return randomize_bn(SpikingViT(SViTConfig.reference(embed_dim=32, depth=2, heads=4,
                                                        pool_after=[1, 2])))


def zero_units(model, ir, space, units):
    """Make ``units`` of ``space`` worthless: producer rows, their BN, consumer columns."""
    sp = ir.spaces[space]
    chans = torch.as_tensor(np.concatenate([np.arange(u * sp.unit, (u + 1) * sp.unit)
                                            for u in units]))
    mods = dict(model.named_modules())
    with torch.no_grad():
        for name in sp.producers:
            mods[name].weight[chans] = 0
            if mods[name].bias is not None:
                mods[name].bias[chans] = 0
        for name in sp.norms:
            mods[name].weight[chans] = 0
            mods[name].bias[chans] = 0
        for name in sp.consumers:
            mods[name].weight[:, chans] = 0


@pytest.mark.parametrize("which", ["sps.stages.1", "mlp", "heads", "embedding"])
def test_pruning_zero_importance_units_leaves_outputs_unchanged(which):
    model = tiny()
    ir = extract_ir(model, (1, 28, 28))
    group = next(g for g in single_space_groups(ir) if which in g.label
                 or (which == "heads" and g.step > 1))
    sp = ir.spaces[group.space]
    dead = [1, sp.units - 1]
    zero_units(model, ir, group.space, dead)
    ir = extract_ir(model, (1, 28, 28))
    imp = unit_importance(ir, group.space)
    assert (imp[dead] == 0).all() and (np.delete(imp, dead) > 0).all()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = run_model(model, x)
    loaded = LoadedModel(model, None, "m")
    prune_space(loaded, ir, group.space, sp.units - len(dead))
    after_ir = extract_ir(loaded.model, (1, 28, 28))
    assert after_ir.spaces[group.space].units == sp.units - 2
    with torch.no_grad():
        after = run_model(loaded.model, x)
    assert torch.allclose(before, after, atol=1e-5)


def test_bn_aware_importance_uses_the_folded_scale():
    model = tiny()
    ir = extract_ir(model, (1, 28, 28))
    space = next(g for g in single_space_groups(ir) if "fc1" in g.label).space
    fc1, bn = model.blocks[0].mlp.fc1.linear, model.blocks[0].mlp.fc1.bn
    with torch.no_grad():
        fc1.weight[0] *= 50  # large raw weights...
        bn.weight[0] = 1e-4  # ...that BN scales to almost nothing
        bn.bias[0] = 0
        model.blocks[0].mlp.fc2.linear.weight[:, 0] = 1e-4
    imp = unit_importance(extract_ir(model, (1, 28, 28)), space)
    assert imp.argmin() == 0


def test_coupled_groups_shrink_every_module_consistently(tmp_path):
    model = tiny()
    loaded = LoadedModel(model, None, tmp_path / "m.pt", input_shape=(1, 28, 28))
    ir = extract_ir(model, (1, 28, 28))
    for label, keep in (("embedding", 24), ("heads of blocks.1", 2), ("fc1", 40),
                        ("sps.stages.2", 9)):
        g = next(g for g in single_space_groups(ir) if label in g.label)
        loaded, ir = pruned_copy(loaded, ir, g, keep)  # re-traced and verified vs torch
    cfg = loaded.model.current_config()
    assert cfg.embed_dim == 24 and cfg.blocks[1].heads == 2 and cfg.blocks[0].mlp_hidden == 40
    assert model.blocks[1].attn.num_heads == 4  # the original is untouched
    emb = next(sp for sp in ir.spaces.values() if "embedding" in sp.label)
    mods = dict(loaded.model.named_modules())
    assert all(mods[p].weight.shape[0] == 24 for p in emb.producers)
    assert all(mods[c].weight.shape[1] == 24 for c in emb.consumers)
    loaded.save(tmp_path / "m.pt")
    again = load_model(weights=tmp_path / "m.pt")
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(run_model(again.model, x), run_model(loaded.model, x))
    assert torch.allclose(run_ir(ir, x), run_model(loaded.model, x), atol=1e-4)


def test_published_layout_links_the_widths_its_forward_ties_together():
    model = randomize_bn(published_spikformer.build())
    loaded = LoadedModel(model, "published", "w")
    ir = extract_ir(model, (1, 28, 28))
    groups = {g.label: g for g in discover_groups(loaded, ir)}
    linked = next(g for g in groups.values() if len(g.spaces) == 2)
    assert "embedding" in linked.label and "heads" in linked.label and linked.step == 8
    assert any("fc1" in label for label in groups)  # c_hidden follows the new width
    new, new_ir = pruned_copy(loaded, ir, linked, 3)
    assert new.attrs["block.0.attn"]["num_heads"] == 3
    mlp = next(g for g in groups.values() if "fc1" in g.label)
    new, _ = pruned_copy(new, new_ir, mlp, 40)
    assert new.model.block[0].mlp.c_hidden == 40


def _prune(ckpt, data, out, *extra, max_drop="6"):
    return run_cli("prune", "--weights", str(ckpt), "--data", str(data), "--out", str(out),
                   "--max-drop", max_drop, "--profile-samples", "300", "--check-samples", "600",
                   "--precision", "fp32",  # pruning behaviour; quantization: test_quant.py
                   *extra)


# the uniform baseline loses more accuracy at the same cut: give it room to finish
@pytest.mark.parametrize("policy,max_drop", [("prioritized", 6), ("uniform", 30)])
def test_both_policies_meet_the_budget_and_reload(tiny_reference, tmp_path, policy, max_drop):
    ckpt, data = tiny_reference
    proc = _prune(ckpt, data, tmp_path / "o", "--board", "stm32h7", "--max-reduction", "25",
                  "--policy", policy, max_drop=str(max_drop))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "o" / "prune_plan.json").read_text())
    assert plan["policy"] == policy
    assert plan["pruned"]["weight_bytes"] <= plan["budget"]["flash_bytes"]
    assert plan["pruned"]["weight_bytes"] <= 0.75 * plan["baseline"]["weight_bytes"] + 4
    assert (plan["baseline"]["val_accuracy"] - plan["pruned"]["val_accuracy"]) * 100 \
        <= max_drop + 1e-9
    assert {"params_before", "params_after", "rate", "measured_drop"} <= set(plan["groups"][0])
    assert "profiling" in plan["timings_s"] or policy == "uniform"
    assert "test accuracy" in proc.stdout
    reloaded = run_cli("evaluate", "--weights", str(tmp_path / "o" / "pruned_model.pt"),
                       "--data", str(data), "--json", check=True)
    assert json.loads(reloaded.stdout)["accuracy"] == pytest.approx(plan["test"]["final"],
                                                                    abs=1e-6)


def test_sensitivity_profile_is_cached(tiny_reference, tmp_path):
    ckpt, data = tiny_reference
    first = _prune(ckpt, data, tmp_path / "o", "--max-reduction", "20")
    assert first.returncode == 0, first.stderr
    assert list((tmp_path / "o" / ".cache").glob("sensitivity-*.json"))
    n1 = json.loads((tmp_path / "o" / "prune_plan.json").read_text())["validation"]["evaluations"]
    second = _prune(ckpt, data, tmp_path / "o", "--max-reduction", "20")
    plan = json.loads((tmp_path / "o" / "prune_plan.json").read_text())
    assert second.returncode == 0 and plan["validation"]["evaluations"] < n1
    assert plan["timings_s"]["profiling"] < 1.0


def test_infeasible_budget_fails_clearly_and_writes_no_result(tiny_reference, tmp_path):
    ckpt, data = tiny_reference
    proc = _prune(ckpt, data, tmp_path / "o", "--board", "stm32h7", "--target-flash", "10KB")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot meet" in last and "smallest model reached" in last and "pt" in last
    assert not (tmp_path / "o" / "pruned_model.pt").exists()
    assert not (tmp_path / "o" / "prune_plan.json").exists()


def test_third_party_model_prunes_with_max_reduction(published_trained, tmp_path):
    model_def, weights, data = published_trained
    proc = run_cli("prune", "--model-def", model_def, "--weights", str(weights), "--data",
                   str(data), "--max-reduction", "15", "--max-drop", "8", "--out",
                   str(tmp_path / "o"), "--profile-samples", "300", "--check-samples", "600")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "o" / "prune_plan.json").read_text())
    assert plan["pruned"]["weight_bytes"] <= 0.85 * plan["baseline"]["weight_bytes"] + 4
    reloaded = run_cli("evaluate", "--weights", str(tmp_path / "o" / "pruned_model.pt"),
                       "--data", str(data), "--json", check=True)
    assert json.loads(reloaded.stdout)["accuracy"] == pytest.approx(plan["test"]["final"],
                                                                    abs=1e-6)


def test_a_deeper_cached_profile_serves_a_smaller_drop_exactly():
    rows = [{"keep": 9, "drop": 0.5}, {"keep": 8, "drop": 3.0 + NOISE_ALLOWANCE + 0.1},
            {"keep": 7, "drop": 1.0}, {"keep": 6, "drop": 20.0}]
    # a fresh profile for max_drop 3 stops after the second row: the noisy third is unseen
    assert [r["keep"] for r in _truncated(rows, 3.0)] == [9, 8]
    assert _truncated(rows, 50.0) == rows

    # the precision knob's row survives the truncation of the ladder
    knob = {"keep": 10, "rate": 0.0, "precision": "int4", "drop": 0.2}
    assert _truncated(rows + [knob], 3.0) == rows[:2] + [knob]


def _candidate(weight_bytes, drop, precision=None, arena_bytes=100):
    from types import SimpleNamespace

    from svt_deploy.prune.pruner import Candidate

    plan = SimpleNamespace(weight_bytes=weight_bytes, arena_bytes=arena_bytes)
    return Candidate({"keep": 1, "rate": 0.1}, None, None, plan, drop, precision)


def test_the_joint_loop_takes_the_cheapest_bytes_the_budget_still_needs():
    """With the precision knob among a group's cuts, the order is estimated drop per byte
    of what the budget still needs: int4 alone first when it is cheaper per byte, even if
    it leaves the budget to the next group; savings past the budget are worth nothing; a
    drop below the profile's resolution counts as that resolution."""
    from types import SimpleNamespace

    from svt_deploy.prune.pruner import try_order

    cur = SimpleNamespace(plan=SimpleNamespace(weight_bytes=1000, arena_bytes=100))
    budget = Budget(800, None, 3.0)

    def order(cands):
        saved = {id(c): 1000 - c.plan.weight_bytes for c in cands}
        return [cands.index(c) for c in try_order(cands, cur, budget,
                                                  lambda c: saved[id(c)], 0.1)]

    int4 = _candidate(850, 0.1, "int4")  # 150 B for 0.1 pt, misses the budget
    int4_pruned = _candidate(700, 0.5, "int4")  # 300 B (200 needed) for 0.5 pt
    pruned = _candidate(790, 1.0)  # 210 B for 1.0 pt
    assert order([pruned, int4_pruned, int4]) == [2, 1, 0]
    int4.drop = 0.6  # now 0.004 pt per byte against 0.0025
    assert order([pruned, int4_pruned, int4]) == [1, 2, 0]
    # drops below the resolution count as the resolution: the larger saving goes first,
    # but of two that meet the budget at the same cost, the milder
    free_small, free_large = _candidate(900, -0.3, "int4"), _candidate(850, 0.0)
    assert order([free_small, free_large]) == [1, 0]
    meets_mild, meets_hard = _candidate(790, 0.05, "int4"), _candidate(500, 0.0)
    assert order([meets_hard, meets_mild]) == [1, 0]
    # pruning alone keeps PrimeSVT's rule: the mildest cut that meets the budget first
    mild, hard, short = _candidate(790, 2.0), _candidate(600, 0.1), _candidate(900, 0.0)
    assert order([hard, short, mild]) == [2, 1]


# ----------------------------------------------------------------------------- options, cache

def _other(value):
    """A value of the same kind that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, tuple):
        return value[:-1]
    return "other" if value is None or isinstance(value, str) else None


def test_every_prune_option_is_part_of_the_stage_key():
    """Keys hash the typed options field by field: no option can be left off by hand."""
    base = PruneOptions(max_drop=3, board="stm32h7")
    key = stage_key("prune", base, "model", "data")
    assert key == stage_key("prune", PruneOptions(max_drop=3, board="stm32h7"), "model", "data")
    for f in dataclasses.fields(PruneOptions):
        changed = dataclasses.replace(base, **{f.name: _other(getattr(base, f.name))})
        assert stage_key("prune", changed, "model", "data") != key, f.name


def test_every_prune_command_line_option_reaches_the_options():
    p = argparse.ArgumentParser()
    add_budget_args(p)
    args = p.parse_args(["--max-drop", "3", "--board", "stm32h7"])
    # every option of the prune stage is a field, and so part of the stage's key
    assert set(vars(args)) <= {f.name for f in dataclasses.fields(PruneOptions)}
    opts = PruneOptions.from_args(args)
    assert opts.max_drop == 3 and opts.board == "stm32h7" and opts.policy == "prioritized"


def test_budget_uses_the_one_fit_check():
    ir = extract_ir(tiny(), (1, 28, 28))
    plan = plan_memory(ir)
    w, a = plan.weight_bytes, plan.arena_bytes
    for flash, sram in ((None, None), (w, a), (w - 1, None), (None, a - 1), (w + 1, a + 1)):
        budget = Budget(flash, sram, 3.0)
        assert budget.fits(plan) == ((flash is None or w <= flash) and (sram is None or a <= sram))
        assert budget.fit(plan).fits == budget.fits(plan)
    board, budget = PruneOptions(max_drop=2, board="stm32h7", max_reduction=25).budget(w)
    assert board.name == "stm32h7" and budget.flash_bytes == min(board.flash_budget,
                                                                 int(w * 0.75))
    assert budget.sram_bytes == board.sram_budget and budget.max_drop == 2


def test_stage_cache_layouts(tmp_path):
    stages = StageCache(tmp_path)  # one record per stage: a new key replaces the old one
    stages.put("prune", "k1", {"a": 1})
    assert stages.get("prune", "k1") == {"a": 1}
    stages.put("prune", "k2", {"a": 2})
    assert stages.get("prune", "k1") is None and stages.get("prune", "k2") == {"a": 2}
    assert (tmp_path / ".stages" / "prune.json").is_file()
    work = StageCache.work(tmp_path)  # one record per key: results side by side
    work.put("sensitivity", "k1", {"a": 1})
    work.put("sensitivity", "k2", {"a": 2})
    assert work.get("sensitivity", "k1") == {"a": 1} and work.get("sensitivity", "k2") == {"a": 2}
    cells = work.cells("sensitivity", "k1")
    cells.put("abc", "3", {"accuracy": 0.5})
    assert (tmp_path / ".cache" / "sensitivity-k1.cells" / "abc-3.json").is_file()
    assert cells.get("abc", "3") == {"accuracy": 0.5}
    (tmp_path / ".cache" / "sensitivity-k2.json").write_text("{not json")
    assert work.get("sensitivity", "k2") is None  # damaged: recomputed, not an error
    assert work.agreed("sensitivity", "k1", valid=lambda r: r["a"] > 1) is None
    calls = []
    assert work.through("test", "k", lambda: calls.append(1) or {"accuracy": 0.25}) \
        == {"accuracy": 0.25}
    assert work.through("test", "k", lambda: calls.append(1) or {}) == {"accuracy": 0.25}
    assert calls == [1]
