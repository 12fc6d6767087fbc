#!/usr/bin/env python3
"""libFuzzer on the firmware's frame decoder and request handling.

    python benchmarks/fuzz_protocol.py [--seconds 120 | --runs N] [--write-corpus]

Builds firmware_templates/fuzz/fuzz_protocol.c (which says what it fakes and checks) with
``clang -fsanitize=fuzzer,address,undefined`` and runs it from the committed seed corpus
(firmware_templates/fuzz/corpus/; new inputs go to a temporary directory, a crash's input
to the current directory), then prints executions, crashes and the command.
``--write-corpus`` rewrites the seed corpus from the host's encoder (toolchain/serial_link.py).
tests/test_fuzz.py runs the same harness for a bounded number of executions.
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from svt_deploy.serial_link import (  # noqa: E402
    CALIBRATE,
    EXIT,
    INFER,
    INFO,
    STATS,
    encode_frame,
)

FUZZ = REPO / "firmware_templates" / "fuzz"
CORPUS = FUZZ / "corpus"
INPUT_FLOATS = 16  # SVT_INPUT_SIZE in firmware_templates/fuzz/model.h
CFLAGS = ["-std=c99", "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
          "-fno-sanitize-recover=all", "-Wall", "-Wextra", "-Wconversion", "-Wshadow",
          "-Werror"]


def seed_corpus() -> dict[str, bytes]:
    """Byte streams a device receives: every request, intact and damaged in each way the
    firmware tells apart."""
    image = struct.pack(f"<{INPUT_FLOATS}f", *(0.25 * i for i in range(INPUT_FLOATS)))
    infer = encode_frame(INFER, 4, image)
    flipped = bytearray(infer)
    flipped[20] ^= 0x08
    bad_length = bytearray(encode_frame(INFO, 9))
    bad_length[4] ^= 0x01
    return {
        "info": encode_frame(INFO, 1),
        "stats": encode_frame(STATS, 2),
        "calibrate": encode_frame(CALIBRATE, 3, struct.pack("<I", 1000)),
        "infer": infer,
        "infer_repeated": infer + infer,  # answered from the saved reply
        "exit": encode_frame(INFO, 5) + encode_frame(EXIT, 6),
        "info_with_payload": encode_frame(INFO, 7, b"\x00\x01\x02\x03"),
        "infer_short": encode_frame(INFER, 8, image[:32]),
        "unknown_type": encode_frame(0x42, 10, b"\x01"),
        "too_long": encode_frame(INFER, 11, bytes(4 * INPUT_FLOATS + 1)),
        "payload_flipped": bytes(flipped) + infer,  # NAKed, then the resend
        "header_flipped": bytes(bad_length) + encode_frame(INFO, 12),
        "truncated": infer[:30] + encode_frame(STATS, 13),  # STATS is swallowed
        "noise": b"\x00\x5a\xff\xa5" + encode_frame(STATS, 14),  # a stray A5 before the sync
    }


def write_corpus(directory: Path = CORPUS) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.bin"):
        old.unlink()
    for name, data in seed_corpus().items():
        (directory / f"{name}.bin").write_bytes(data)


def build(out_dir: Path, clang: str = "clang") -> Path:
    binary = Path(out_dir) / "fuzz_protocol"
    cmd = [clang, *CFLAGS, "-I", str(FUZZ), str(FUZZ / "fuzz_protocol.c"),
           str(REPO / "firmware_templates" / "firmware" / "protocol.c"), "-o", str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no output)"]
        hint = next((line for line in lines if "libclang_rt" in line), lines[0])
        raise RuntimeError(f"building the fuzzer failed: {hint[:300]}"
                           + (" (install libclang-rt-dev)" if "libclang_rt" in hint else ""))
    return binary


def run(binary: Path, runs: int | None = None, seconds: int | None = None,
        seed: int = 1) -> dict:
    """One libFuzzer session from the seed corpus: executions, crashes (saved inputs of
    crashes, leaks, timeouts, out-of-memory), exit code, output tail, command."""
    with tempfile.TemporaryDirectory(prefix="svt_fuzz_") as tmp:
        new, artifacts = Path(tmp) / "new", Path(tmp) / "artifacts"
        new.mkdir()
        artifacts.mkdir()
        limits = ([f"-runs={runs}"] if runs else []) + (
            [f"-max_total_time={seconds}"] if seconds else [])
        cmd = [str(binary), str(new), str(CORPUS), f"-seed={seed}", "-timeout=10",
               f"-artifact_prefix={artifacts}/", "-print_final_stats=1", *limits]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        crashes = sorted(p.name for p in artifacts.iterdir())
        for name in crashes:  # keep a crash's input where it can be replayed
            shutil.copy(artifacts / name, Path.cwd() / name)
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    return {"executions": int(done.group(1)) if done else 0,
            "seconds": int(done.group(2)) if done else None,
            "crashes": len(crashes), "crash_inputs": crashes, "returncode": proc.returncode,
            "output_tail": proc.stderr[-3000:], "command": " ".join(cmd)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=120, help="run time (default 120)")
    p.add_argument("--runs", type=int, default=None, help="stop after N executions instead")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--write-corpus", action="store_true",
                   help="rewrite the seed corpus and stop")
    args = p.parse_args()
    if args.write_corpus:
        write_corpus()
        print(f"wrote {len(seed_corpus())} seeds to {CORPUS.relative_to(REPO)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="svt_fuzz_build_") as tmp:
        result = run(build(Path(tmp)), runs=args.runs,
                     seconds=None if args.runs else args.seconds, seed=args.seed)
    if result["crashes"] or result["returncode"] != 0:
        print(result["output_tail"], file=sys.stderr)
    print(f"executions {result['executions']:,} in {result['seconds']} s, "
          f"crashes {result['crashes']} {result['crash_inputs'] or ''}".rstrip())
    return 0 if result["crashes"] == 0 and result["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
