#!/usr/bin/env python3
"""Sensitivity profiling of a larger Spikformer: one process vs ``torchrun`` ranks.

    python benchmarks/distributed_profile.py                 # 1 process, then 2 ranks
    python benchmarks/distributed_profile.py --ranks 1 2 4   # on a machine with more cores

The model is the official Spikformer CIFAR-10 layout (tests/fixtures/official_spikformer.py)
at its published CIFAR-10 size, 4 blocks x 384 (about 9 M parameters), randomly initialised
(its accuracy is near chance, so no group stops its ladder early: the profile measures every
cell, the heaviest case). For each rank count the same command runs,

    [torchrun --standalone --nproc_per_node N -m] toolchain prune --max-reduction 26.7
        --max-drop 3 --model-def ...:build_cifar10_size --weights W ...

each rank limited to one thread (OMP_NUM_THREADS=1), so N ranks use N cores. It reports the
profiling stage's wall time (``timings_s.profiling`` of prune_plan.json), the speed-up over
one process, and whether the plan (groups, rates, bytes) equals the one-process plan.
Writes a markdown table to stdout and the rows to out/distributed_profile/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODEL_DEF = f"{REPO / 'tests/fixtures/official_spikformer.py'}:build_cifar10_size"
PLAN_KEYS = ("budget", "baseline", "pruned", "groups", "group_steps", "layers", "totals")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--profile-samples", type=int, default=24)
    p.add_argument("--check-samples", type=int, default=48)
    p.add_argument("--out", default=str(REPO / "out" / "distributed_profile"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "random_init.pt"
    if not weights.is_file():
        import torch

        from svt_deploy.loading import import_factory

        torch.save(import_factory(MODEL_DEF)().state_dict(), weights)
    rows, plans = [], {}
    for n in args.ranks:
        run_dir = out / f"ranks{n}"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", str(n), "-m", "svt_deploy"] if n > 1 \
            else [sys.executable, "-m", "svt_deploy"]
        cmd = [*launcher, "prune", "--max-reduction", "26.7", "--max-drop", "3",
               "--model-def", MODEL_DEF, "--weights", str(weights),
               "--profile-samples", str(args.profile_samples),
               "--check-samples", str(args.check_samples), "--test-samples", "200",
               "--out", str(run_dir), "-q"]
        if (run_dir / ".cache").exists():  # a timing must measure every cell afresh
            subprocess.run(["rm", "-rf", str(run_dir / ".cache")], check=True)
        print(f"ranks {n}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        t = time.time()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.time() - t
        if proc.returncode != 0:
            raise SystemExit(f"ranks {n} failed: {proc.stderr.strip()[-500:]}")
        plan = json.loads((run_dir / "prune_plan.json").read_text())
        plans[n] = {k: plan[k] for k in PLAN_KEYS}
        rows.append({"ranks": n, "profiling_s": plan["timings_s"]["profiling"],
                     "total_s": round(wall, 1), "params": plan["baseline"]["params"],
                     "evaluations": plan["validation"]["evaluations"],
                     "same_plan": plans[n] == plans[args.ranks[0]]})
    base = rows[0]["profiling_s"]
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("| ranks (1 thread each) | profiling wall time | speed-up | whole prune | "
          "validation passes | plan equals 1 process |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ranks']} | {r['profiling_s']:.1f} s | {base / r['profiling_s']:.2f}x | "
              f"{r['total_s']:.1f} s | {r['evaluations']} | {r['same_plan']} |")
    print(f"\n{rows[0]['params']:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
