#!/usr/bin/env python3
"""Train the reference spiking ViT on Fashion-MNIST, resumably.

    python examples/train_reference.py            # start or resume
    python examples/train_reference.py --epochs 12

Progress is checkpointed every ``--save-every`` steps to ``--state`` (model, optimizer,
step, RNG), so the run can be killed and restarted at any time, across sessions. The
5,000-image validation split (fixed seed, the one pruning uses) is held out of training.
At the end the weights go to ``examples/reference_svit.pt`` and a model card with the
test accuracy on all 10,000 test images to ``examples/reference_svit.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from svt_deploy.checkpoint import atomic_torch_save, atomic_write_bytes, save_checkpoint  # noqa: E402
from svt_deploy.data import load_dataset  # noqa: E402
from svt_deploy.evaluate import accuracy  # noqa: E402
from svt_deploy.model import SViTConfig, SpikingViT  # noqa: E402
from svt_deploy.training import augment, cosine_lr  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="dataset path (default: Fashion-MNIST)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--state", default=str(REPO / "examples" / ".train_state.pt"))
    p.add_argument("--out", default=str(REPO / "examples" / "reference_svit.pt"))
    p.add_argument("--card", default=str(REPO / "examples" / "reference_svit.json"))
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop (resumably) after this many steps in this invocation")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    ds = load_dataset(args.data)
    x_train, y_train = ds.split("train")
    cfg = SViTConfig.reference(in_channels=ds.input_shape[0], img_size=ds.input_shape[1],
                               num_classes=ds.num_classes, pool_after=[1, 2])
    model = SpikingViT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(y_train) // args.batch_size
    total = steps_per_epoch * args.epochs
    step, seconds = 0, 0.0
    history = [{"from_step": 0, "epochs": args.epochs}]  # schedule changes across resumes
    state_path = Path(args.state)
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, seconds = state["step"], state["seconds"]
        history = state.get("history", [{"from_step": 0, "epochs": 10}])
        if history[-1]["epochs"] != args.epochs:
            history.append({"from_step": step, "epochs": args.epochs})
        print(f"resumed at step {step}/{total} ({seconds / 60:.1f} min so far)", flush=True)

    def save_state():
        atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(),
                           "step": step, "seconds": seconds, "history": history}, state_path)

    model.train()
    started_here = step
    t0 = t_started = time.time()
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        # the order of an epoch depends only on its number, so a resumed run sees the same data
        order = np.random.default_rng(1000 + epoch).permutation(len(y_train))
        gen = torch.Generator().manual_seed(step)
        idx = order[offset * args.batch_size:(offset + 1) * args.batch_size]
        x = augment(ds.as_tensor(x_train[idx]), gen)
        y = torch.from_numpy(y_train[idx])
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, total, args.lr, warmup=steps_per_epoch // 2)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 20 == 0:
            print(f"epoch {epoch + 1}/{args.epochs} step {step}/{total} loss {loss.item():.3f} "
                  f"({(time.time() - t_started) / (step - started_here):.2f} s/step)", flush=True)
        if step % args.save_every == 0 or step == total:
            seconds += time.time() - t0
            t0 = time.time()
            save_state()
        if args.max_steps is not None and step - started_here >= args.max_steps:
            seconds += time.time() - t0
            save_state()
            print("stopping early as asked; rerun to resume", flush=True)
            return 0

    model.eval()
    x_test, y_test = ds.split("test")
    acc = accuracy(model, ds, x_test, y_test)
    x_val, y_val = ds.split("val")
    val_acc = accuracy(model, ds, x_val, y_val)
    params = sum(p.numel() for p in model.parameters())
    save_checkpoint(args.out, model.state_dict(), cfg.to_dict())
    card = {
        "model": "reference spiking ViT (Spikformer-style, SpikingJelly multi-step LIF)",
        "dataset": "Fashion-MNIST" if args.data is None else args.data,
        "input_shape": list(ds.input_shape),
        "timesteps": cfg.timesteps,
        "embed_dim": cfg.embed_dim,
        "depth": len(cfg.blocks),
        "heads": cfg.blocks[0].heads,
        "params": params,
        "test_accuracy": round(acc, 4),
        "test_samples": int(len(y_test)),
        "val_accuracy": round(val_acc, 4),
        "val_samples": int(len(y_val)),
        "train_samples": int(len(y_train)),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"AdamW lr {args.lr} (warm-up, cosine) weight decay {args.weight_decay}",
        "augmentation": "random horizontal flip, random shift of up to 2 px",
        "train_minutes": round(seconds / 60, 1),
        "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "schedule_history": history if len(history) > 1 else None,
        "command": "python examples/train_reference.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
    }
    atomic_write_bytes(args.card, (json.dumps(card, indent=2) + "\n").encode())
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
