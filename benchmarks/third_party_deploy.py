#!/usr/bin/env python3
"""Third-party SViTs, unchanged, through the whole pipeline.

    python benchmarks/third_party_deploy.py            # both families, train then deploy
    python benchmarks/third_party_deploy.py --table-only

For each model file in the published layout (tests/fixtures/official_spikformer.py: the
Spikformer CIFAR-10 source's layout; tests/fixtures/official_sdt.py: the Spike-driven
Transformer's), at the size its ``build_fmnist`` factory gives:

1. train it on Fashion-MNIST with the published recipe's loop shape (AdamW, cosine, label
   smoothing; the model never resets itself) and save a plain state dict; a finished
   training is reused (delete the weights file to retrain);
2. measure its test accuracy with its own loop (``functional.reset_net`` after each batch,
   as the published training scripts do), with ``svt-deploy evaluate``, and with the loop
   without the reset (what ``evaluate`` reported before it reset neurons itself);
3. run ``svt-deploy --board stm32h7 --max-drop 3 --model-def FILE:build_fmnist --weights W
   --data D --max-reduction 25`` (its stage cache makes a rerun cheap).

Prints a markdown table for docs/benchmarks.md and writes the rows to
out/third_party/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAMILIES = {
    "Spikformer (official CIFAR-10 layout)": REPO / "tests/fixtures/official_spikformer.py",
    "Spike-driven Transformer (official layout)": REPO / "tests/fixtures/official_sdt.py",
}
FACTORY = "build_fmnist"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(model_def: str, weights: Path, data: str | None, samples: int, epochs: float,
          lr: float) -> float:
    import torch

    from svt_deploy.checkpoint import atomic_torch_save
    from svt_deploy.data import load_dataset
    from svt_deploy.loading import import_factory
    from svt_deploy.training import train_steps

    ds = load_dataset(data)
    torch.manual_seed(0)
    model = import_factory(model_def)()
    x, y = ds.split("train", samples)
    t = time.time()
    train_steps(model, ds, x, y, epochs=epochs, lr=lr, seed=0)
    atomic_torch_save(model.state_dict(), weights)
    return time.time() - t


def own_loop_accuracy(model_def: str, weights: Path, data: str | None,
                      reset: bool = True) -> float:
    """Test accuracy as the published scripts measure it: reset_net after every batch.
    ``reset=False`` is what svt-deploy's evaluate did before it reset neurons itself."""
    import torch
    from spikingjelly.activation_based import functional

    from svt_deploy.data import load_dataset
    from svt_deploy.forward import logits_of
    from svt_deploy.loading import load_model

    model = load_model(model_def, weights).model
    ds = load_dataset(data)
    x, y = ds.split("test")
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), 250):
            out = logits_of(model(ds.as_tensor(x[i:i + 250])))
            correct += int((out.argmax(1).numpy() == y[i:i + 250]).sum())
            if reset:
                functional.reset_net(model)
    return correct / len(y)


def svt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "svt_deploy", *args], cwd=REPO, text=True,
                          capture_output=True, check=False)


def run_family(name: str, path: Path, args) -> dict:
    out = Path(args.out) / path.stem
    out.mkdir(parents=True, exist_ok=True)
    model_def, weights = f"{path}:{FACTORY}", out / "weights.pt"
    data = ["--data", args.data] if args.data else []
    row = {"family": name, "model_def": f"{path.relative_to(REPO)}:{FACTORY}"}
    if not weights.is_file():
        log(f"{name}: training on {args.train_samples} images for {args.epochs} epochs")
        row["train_s"] = round(train(model_def, weights, args.data, args.train_samples,
                                     args.epochs, args.lr))
    row["own_loop_accuracy"] = own_loop_accuracy(model_def, weights, args.data)
    row["no_reset_accuracy"] = own_loop_accuracy(model_def, weights, args.data, reset=False)
    ev = svt("evaluate", "--model-def", model_def, "--weights", str(weights), *data, "--json")
    if ev.returncode != 0:
        raise SystemExit(f"{name}: evaluate failed: {ev.stderr.strip()}")
    row["evaluate"] = json.loads(ev.stdout)
    cmd = ["--board", "stm32h7", "--max-drop", "3", "--model-def", model_def, "--weights",
           str(weights), *data, "--max-reduction", str(args.max_reduction), "--out",
           str(out / "deploy"), "--quiet"]
    log(f"{name}: svt-deploy {' '.join(cmd)}")
    t = time.time()
    proc = svt(*cmd)
    row["deploy_s"] = round(time.time() - t)
    row["deploy_rc"] = proc.returncode
    if proc.returncode != 0:
        row["deploy_error"] = proc.stderr.strip().splitlines()[-1:]
        return row
    report = json.loads((out / "deploy" / "report.json").read_text())
    row.update(baseline=report["baseline"], pruned=report["pruned"],
               host=report["host_emulation"], device=report["device"])
    return row


def table(rows: list[dict]) -> str:
    lines = ["| family | params | own-loop test acc. | `evaluate` | without reset | structure "
             "| deployed acc. (drop) | weights B (cut) | host C agreement | QEMU agreement "
             "| instr./inference |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ev = r["evaluate"]
        if r.get("deploy_rc"):
            lines.append(f"| {r['family']} | {ev['params']:,} | {r['own_loop_accuracy']:.4f} | "
                         f"{ev['accuracy']:.4f} | {r['no_reset_accuracy']:.4f} | "
                         f"{ev['structure']} | failed: {' '.join(r.get('deploy_error', []))} "
                         "| | | | |")
            continue
        b, p, h, d = r["baseline"], r["pruned"], r["host"], r["device"]
        drop = (b["accuracy"] - p["accuracy"]) * 100
        cut = 100 * (1 - p["flash_bytes"] / b["flash_bytes"])
        lines.append(
            f"| {r['family']} | {ev['params']:,} | {r['own_loop_accuracy']:.4f} | "
            f"{ev['accuracy']:.4f} | {r['no_reset_accuracy']:.4f} | {ev['structure']} "
            f"| {p['accuracy']:.4f} ({drop:+.2f} pt) "
            f"| {p['flash_bytes']:,} ({cut:.1f} %) | {h['agreement']:.4f} on {h['samples']:,} "
            f"| {d['agreement']:.4f} on {d['samples']} | {d['instructions_per_inference']:,} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="default: Fashion-MNIST from apt")
    p.add_argument("--train-samples", type=int, default=20000)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-reduction", type=float, default=25.0)
    p.add_argument("--out", default=str(REPO / "out" / "third_party"))
    p.add_argument("--only", choices=("spikformer", "sdt"), default=None)
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args()
    results = Path(args.out) / "results.json"
    if args.table_only:
        print(table(json.loads(results.read_text())))
        return 0
    done = {r["family"]: r for r in json.loads(results.read_text())} \
        if results.is_file() else {}
    for name, path in FAMILIES.items():
        if args.only and args.only not in path.stem:
            continue
        done[name] = run_family(name, path, args)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(list(done.values()), indent=1))
    print(table(list(done.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
