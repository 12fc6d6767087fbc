#!/usr/bin/env python3
"""Long link-fault runs: the firmware on QEMU behind svt_deploy.qemu.FaultyProxy.

    python benchmarks/link_faults.py --requests 300 --down-rate 1.2e-5 --up-rate 5e-4
    python benchmarks/link_faults.py --requests 150 --down-rate 1e-4 --up-rate 4.5e-3

(about 2 % and 20 % of all frames damaged). Builds the QEMU firmware of a model (default:
a tiny SViT, embed 32, 1 block, T=4, trained for one pass over 3,000 images, seeded; its
answers differ from image to image, which the script reports, so an answer given to the
wrong request would show), runs ``--requests`` test images once over a clean line, then
once more behind the proxy (bit flips, dropped and duplicated bytes, duplicated frames,
both directions, seeded), and counts: frames the proxy damaged, answers accepted that
differ from the clean run's (wrong answers), requests that got no valid answer or took
longer than ``--hang-seconds`` (hangs), and inferences the device ran (its STATS counters,
read over a clean line) against the requests sent. Prints one JSON object; exits 1 if
any answer was wrong, any request hung or any inference ran twice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def tiny_model(ds, seed: int):
    """Untrained, it hardly spikes and gives every image the same scores: train it a little."""
    import torch

    from svt_deploy.model import SpikingViT, SViTConfig
    from svt_deploy.training import train_steps

    torch.manual_seed(seed)
    model = SpikingViT(SViTConfig.reference(embed_dim=32, depth=1, heads=4, mlp_ratio=2,
                                            pool_after=[1, 2], stem_channels=[8, 16, 32]))
    x, y = ds.split("train", 3000)  # fewer steps leave it silent
    train_steps(model, ds, x, y, epochs=1, lr=5e-3, seed=seed)
    return model.eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="stm32h7")
    p.add_argument("--requests", type=int, default=300, help="INFER requests (test images)")
    p.add_argument("--down-rate", type=float, default=1.2e-5, help="host->device byte faults")
    p.add_argument("--up-rate", type=float, default=5e-4, help="device->host byte faults")
    p.add_argument("--drop-fraction", type=float, default=0.3)
    p.add_argument("--dup-fraction", type=float, default=0.3)
    p.add_argument("--frame-dup-rate", type=float, default=None,
                   help="frames sent twice (default: half the damaged-frame rate "
                        "the byte rates give a reply)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retries", type=int, default=20)
    p.add_argument("--hang-seconds", type=float, default=30.0)
    p.add_argument("--weights", help="a model instead of the tiny random one")
    p.add_argument("--model-def")
    p.add_argument("--data", help="dataset (default Fashion-MNIST)")
    args = p.parse_args()

    from svt_deploy.boards import load_board
    from svt_deploy.data import load_dataset
    from svt_deploy.errors import SvtError
    from svt_deploy.firmware import build_firmware, generate_firmware
    from svt_deploy.ir import extract_ir
    from svt_deploy.loading import load_model
    from svt_deploy.memory import plan_memory
    from svt_deploy.qemu import FaultyProxy, QemuDevice

    t0 = time.time()
    ds = load_dataset(args.data)
    model = load_model(args.model_def, args.weights).model if args.weights \
        else tiny_model(ds, args.seed)
    board = load_board(args.board)
    ir = extract_ir(model, ds.input_shape)
    project = Path(tempfile.mkdtemp(prefix="svt_link_faults_")) / "project"
    generate_firmware(ir, plan_memory(ir), board, project, args.weights or "tiny")
    elf = build_firmware(project, board, emulated=True).elf
    x = ds.as_tensor(ds.x_test[:args.requests]).numpy()

    with QemuDevice(elf, board) as dev:
        clean = np.stack([dev.link.infer(image, dev.info).scores for image in x])
    distinct = len({row.tobytes() for row in clean})

    if args.frame_dup_rate is None:  # about as many duplicated as damaged replies
        args.frame_dup_rate = 0.5 * (1 - (1 - args.up_rate) ** (12 + 12 + 4 * clean.shape[1]))
    proxy = FaultyProxy(args.down_rate, args.up_rate, args.drop_fraction, seed=args.seed,
                        dup_fraction=args.dup_fraction, frame_dup_rate=args.frame_dup_rate)
    wrong = hangs = 0
    slowest = 0.0
    try:
        with QemuDevice(elf, board, proxy=proxy, retries=args.retries) as dev:
            for i, image in enumerate(x):
                start = time.monotonic()
                try:
                    answer = dev.link.infer(image, dev.info)
                    wrong += not np.array_equal(answer.scores, clean[i])
                except SvtError as e:
                    hangs += 1
                    print(f"request {i}: {e}", file=sys.stderr)
                took = time.monotonic() - start
                slowest = max(slowest, took)
                hangs += took > args.hang_seconds
            proxy.heal()
            device = dev.link.device_stats()
            link = dev.link.link_stats()
    finally:
        proxy.close()
    down, up = proxy.down.summary(), proxy.up.summary()
    frames = down["frames"] + up["frames"]
    damaged = down["damaged"] + up["damaged"]
    print(json.dumps({
        "board": args.board, "requests": args.requests, "distinct_clean_answers": distinct,
        "rates": {"down": args.down_rate, "up": args.up_rate, "drop": args.drop_fraction,
                  "dup": args.dup_fraction, "frame_dup": round(args.frame_dup_rate, 5),
                  "seed": args.seed},
        "frames": frames, "damaged_frames": damaged,
        "damaged_fraction": round(damaged / max(frames, 1), 4),
        "duplicated_frames": down["duplicated"] + up["duplicated"],
        "down": down, "up": up,
        "wrong_answers_accepted": wrong, "hangs": hangs,
        "slowest_request_s": round(slowest, 2),
        "inferences_run": device["inferences"], "replays": device["replays"],
        "host_link": link, "device_stats": device, "seconds": round(time.time() - t0, 1),
    }, indent=1))
    return 0 if wrong == 0 and hangs == 0 and device["inferences"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
