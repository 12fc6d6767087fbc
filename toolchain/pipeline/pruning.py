"""Prune stage: PrimeSVT to a budget (``prune.PruneOptions``), the test accuracies it is
reported with, and pruned_model.pt + prune_plan.json in the output directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..boards import KernelCosts, load_board
from ..data import Dataset
from ..errors import SvtError
from ..ir import extract_ir
from ..latency import require_covered
from ..loading import LoadedModel
from ..memory import plan_memory
from ..prune import Budget, PruneOptions, Pruner, PruneResult, plan_json, write_outputs
from ..prune.options import latency_budget
from ..prune.precision import at_precision, precision_label
from ..quant.packing import PRECISIONS
from ..quant.reference import deployed_ir, reference_model
from ..runtime import current
from ..stages import StageCache, file_digest, stage_key
from .common import Log, progress_bar
from .evaluation import cached_test_accuracy

PRUNED_MODEL = "pruned_model.pt"


@dataclass
class PruneOutcome:
    """A pruning run: the result, the budget it met, prune_plan.json's content, the test
    accuracies ({"baseline", "final", "samples", "drop"[, "pruned"]}) and the groups."""

    result: PruneResult
    budget: Budget
    plan: dict
    test: dict
    groups: list


def run_prune(loaded: LoadedModel, ds: Dataset, options: PruneOptions, out_dir: str | Path,
              log: Log, quiet: bool) -> PruneOutcome:
    """Prune, report on the test split, write pruned_model.pt + prune_plan.json."""
    t0 = time.time()
    out_dir = Path(out_dir)
    base_plan = plan_memory(extract_ir(loaded.model, ds.input_shape))
    latency_images = (ds.as_tensor(ds.split("val", options.latency_samples)[0])
                      if options.max_latency_ms is not None else None)
    board, budget = options.budget(base_plan.weight_bytes, latency_images)
    if budget.predictor is not None:
        require_latency_costs(budget.predictor.costs, options.precision, loaded, ds)
    cache_dir = out_dir / ".cache"
    bar = progress_bar(None, "measuring", quiet)
    pruner = Pruner(loaded, ds, budget, options, cache=StageCache.work(out_dir), log=log,
                    progress=bar.update)
    log(f"{options.policy} pruning: {budget.describe()}")
    try:
        result = pruner.run()
    finally:
        bar.close()
    t = time.time()

    def test_accuracy(lm: LoadedModel, desc: str) -> tuple[float, int]:
        return cached_test_accuracy(reference_model(lm, ds.input_shape), ds, lm.fingerprint(),
                                    options.test_samples,
                                    cache_dir, quiet, desc)

    base_acc, n = test_accuracy(loaded, "test (baseline)")
    final_acc, _ = test_accuracy(result.state.loaded, "test (final)")
    test = {"baseline": round(base_acc, 5), "final": round(final_acc, 5), "samples": n,
            "drop": round((base_acc - final_acc) * 100, 3)}
    if result.before_finetune is not None:  # final = after fine-tuning
        test["pruned"] = round(test_accuracy(result.before_finetune.loaded,
                                             "test (before fine-tuning)")[0], 5)
    timings = dict(pruner.timings, test=time.time() - t, total=time.time() - t0)
    plan = plan_json(result, budget, options.policy, pruner.groups, timings, test,
                     {"board": board.name if board else None, "allocation": options.allocation,
                      "precision": precision_label(result.state.loaded.precision),
                      "precisions_tried": pruner.precisions,
                      "validation": {"profile_samples": pruner.val.profile_samples,
                                     "check_samples": pruner.val.check_samples,
                                     "evaluations": pruner.val.evaluations}})
    if current().is_main:  # under torchrun every rank holds the same result
        write_outputs(out_dir, result, plan)
    return PruneOutcome(result, budget, plan, test, pruner.groups)


def require_latency_costs(costs: KernelCosts, precision: str, loaded: LoadedModel,
                          ds: Dataset) -> None:
    """Refuse now, not after the baseline's checks, when no precision the prune stage may
    choose has a cost for every kernel (``auto``: one of those calibrated must)."""
    tried = [precision] if precision != "auto" else \
        [p for p in costs.calibration.precisions if p in PRECISIONS] or ["int8"]
    for i, p in enumerate(tried):
        ir = deployed_ir(at_precision(loaded, p, ds.normalize), ds.input_shape)
        try:
            require_covered(costs, ir, plan_memory(ir))
            return
        except SvtError:
            if i == len(tried) - 1:
                raise


@dataclass(frozen=True)
class PruneRecord:
    """The deploy's prune stage result: the pruned model's file digest, prune_plan.json, the
    test accuracies and the budget."""

    digest: str
    plan: dict
    test: dict
    budget: dict  # {"flash_bytes", "sram_bytes", "max_drop", "latency"}


def prune_key(options: PruneOptions, model_fingerprint: str, data_fingerprint: str) -> str:
    """The prune stage's cache key: every field of the options, the model and the data;
    under a latency budget also the kernel costs it is predicted with."""
    costs = ()
    if options.max_latency_ms is not None:
        _, kernel_costs = latency_budget(load_board(options.board) if options.board else None,
                                         options.max_latency_ms)
        costs = (file_digest(kernel_costs.path),)
    return stage_key("prune", options, model_fingerprint, data_fingerprint, *costs)


def prune_stage(loaded: LoadedModel, ds: Dataset, options: PruneOptions, out: Path, log: Log,
                quiet: bool) -> PruneRecord:
    log("pruning (PrimeSVT)")
    outcome = run_prune(loaded, ds, options, out, log, quiet)
    b = outcome.budget
    return PruneRecord(file_digest(out / PRUNED_MODEL), outcome.plan, outcome.test,
                       {"flash_bytes": b.flash_bytes, "sram_bytes": b.sram_bytes,
                        "max_drop": b.max_drop,
                        "latency": None if b.latency is None else b.latency.as_dict()})


def pruned_model_valid(out: Path, record: PruneRecord) -> bool:
    """The pruned model on disk is the one the record describes."""
    path = out / PRUNED_MODEL
    return path.is_file() and file_digest(path) == record.digest
