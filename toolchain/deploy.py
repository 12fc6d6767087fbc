"""`svt-deploy --board B --max-drop D`: the whole pipeline, from model to validated firmware.

load -> baseline -> budget -> prune -> generate C -> host emulation -> firmware build and
fit check -> on-device check (QEMU by default, a real board with --port) -> report.

Every stage caches its result in the output directory keyed by its inputs, so a rerun
after an interruption continues where it stopped and a repeated run is fast. Nothing
outside ``--out`` is written.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import cli_args as num
from .cli import (add_budget_args, add_common, add_model_args, cached_test_accuracy, command,
                  load_inputs, progress_bar, run_prune)
from .cli_args import ArgParser
from .errors import SvtError
from .stages import StageCache, file_digest, stage_key


def _log(args):
    if args.quiet:
        return lambda *_: None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def check_tools(board, need_device: bool, port: str | None, flash_tool: str | None) -> None:
    """Fail before the long stages if a toolchain is missing (one line naming the package)."""
    from .firmware import require_cross_toolchain
    from .hostemu import require_tool

    require_tool("gcc", "gcc")
    if board.is_host:
        return
    require_cross_toolchain()
    if need_device and port is None and board.emulator is not None:
        require_tool("qemu-system-arm", "qemu-system-arm")
    if need_device and port is not None:
        from .flashing import choose_tool
        from .serial_link import open_port

        choose_tool(board, flash_tool)  # a flash tool must be installed
        open_port(port).close()  # and the board connected, before hours of work


def berkeley_size(elf: Path) -> dict:
    """text/data/bss as ``arm-none-eabi-size`` prints them (Berkeley format)."""
    proc = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SvtError(f"arm-none-eabi-size failed on {elf}: {proc.stderr.strip()[:200]}")
    text, data, bss = (int(v) for v in proc.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def _summary(test_acc, params, plan) -> dict:
    return {"accuracy": None if test_acc is None else round(test_acc, 5), "params": params,
            "flash_bytes": plan["weight_bytes"], "sram_bytes": plan["arena_bytes"]}


@command("deploy", "the whole pipeline (also: svt-deploy --board B --max-drop D)")
def cmd_deploy(argv):
    p = ArgParser(
        prog="svt-deploy",
        description="Prune a spiking ViT to fit a board within an accuracy drop, generate "
                    "C, check it on the host, build the firmware and validate it on the "
                    "emulated board (or a real one with --port).")
    add_budget_args(p)
    add_model_args(p)
    add_common(p)
    p.add_argument("--out", help="output directory (default out/<board>)")
    p.add_argument("--host-samples", type=num.count, default=10000, metavar="N",
                   help="test images for the host emulation check (default 10000)")
    p.add_argument("--device-samples", type=num.count, default=500, metavar="N",
                   help="test images streamed to the device (default 500)")
    p.add_argument("--port", help="serial port of a real board (e.g. /dev/ttyACM0): flash it "
                                  "and validate there instead of on the emulator")
    p.add_argument("--flash-tool", choices=("openocd", "st-flash", "pyocd"),
                   help="flash tool for --port (default: the first one installed)")
    p.add_argument("--no-device", action="store_true", help="skip the on-device check")
    args = p.parse_args(argv)
    if not args.board:
        raise SvtError("--board is required (svt-deploy boards lists them)")
    report = run_deploy(args, argv)
    if not args.quiet:
        print(format_summary(report, Path(args.out or f"out/{args.board}")))
    return 0


class Stages:
    """Runs pipeline stages through the cache; records how long each took when computed."""

    def __init__(self, out: Path, log):
        self.cache, self.log = StageCache(out), log
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []

    def run(self, name: str, key: str, compute, valid=lambda record: True) -> dict:
        record = self.cache.get(name, key)
        if record is not None and valid(record):
            self.reused.append(name)
            self.log(f"{name}: reusing the cached result")
        else:
            t = time.time()
            record = compute()
            record["stage_seconds"] = round(time.time() - t, 2)
            self.cache.put(name, key, record)
        self.seconds[name] = record["stage_seconds"]
        return record


def run_deploy(args, argv) -> dict:
    from .boards import load_board
    from .runtime import current
    from .ir import extract_ir
    from .loading import load_model
    from .memory import plan_memory

    t0 = time.time()
    board = load_board(args.board)
    out = Path(args.out or f"out/{board.name}")
    log = _log(args)
    check_tools(board, not args.no_device, args.port, args.flash_tool)
    stages = Stages(out, log)

    t = time.time()
    loaded, ds = load_inputs(args)
    if current().distributed:
        raise SvtError("the full deploy runs in one process (it builds firmware and drives "
                       "one device); under torchrun use `svt-deploy prune`, then deploy its "
                       "pruned_model.pt")
    model_fp, data_fp = loaded.fingerprint(), ds.fingerprint()
    load_seconds = time.time() - t

    def baseline():
        plan = plan_memory(extract_ir(loaded.model, ds.input_shape))
        acc, n = cached_test_accuracy(loaded.model, ds, model_fp, args.test_samples,
                                      out / ".cache", args.quiet, "baseline (test)")
        log(f"baseline: test accuracy {acc:.4f} on {n:,} images, weights "
            f"{plan.weight_bytes:,} B, arena {plan.arena_bytes:,} B")
        return {"accuracy": acc, "samples": n, "weight_bytes": plan.weight_bytes,
                "arena_bytes": plan.arena_bytes,
                "params": sum(v.numel() for v in loaded.model.parameters())}

    base = stages.run("baseline", stage_key("baseline", model_fp, data_fp, args.test_samples),
                      baseline)

    pruned_path = out / "pruned_model.pt"

    def prune():
        log("pruning (PrimeSVT)")
        _, budget, plan, test, _ = run_prune(args, loaded, ds, out, log)
        return {"digest": file_digest(pruned_path), "plan": plan, "test": test,
                "budget": {"flash_bytes": budget.flash_bytes, "sram_bytes": budget.sram_bytes,
                           "max_drop": budget.max_drop}}

    prune_key = stage_key("prune", model_fp, data_fp, args.board, args.max_drop,
                          args.target_flash, args.target_sram, args.max_reduction, args.policy,
                          args.allocation, args.finetune_epochs, args.finetune_samples,
                          args.finetune_lr, args.profile_samples, args.check_samples,
                          args.test_samples)
    record = stages.run("prune", prune_key, prune, valid=lambda r: pruned_path.is_file()
                        and file_digest(pruned_path) == r["digest"])
    pruned = load_model(weights=pruned_path)
    project = out / "firmware_project"

    def generate():
        log(f"generating C into {project}")
        from .cli_device import generate_project
        generate_project(pruned, ds.input_shape, board, project)
        return {"project_hash": _project_digest(project)}

    project_hash = stages.run("generate", stage_key("generate", record["digest"], board.name),
                              generate, valid=lambda r: (project / "model.h").is_file()
                              )["project_hash"]

    def host_check():
        log(f"host emulation: gcc build over {min(args.host_samples, base['samples']):,} "
            "test images")
        return _host_emulation(pruned, ds, project, args.host_samples, args.quiet)

    host = stages.run("host_emulation", stage_key("host", project_hash, data_fp,
                                                  args.host_samples), host_check)
    if host["agreement"] < 0.995:
        log(f"warning: host C agrees with PyTorch on only {host['agreement']:.2%} of images")

    firmware = device = None
    if not board.is_host:
        elf = out / f"svt_{board.name}.elf"

        def build():
            log(f"building firmware for {board.name} ({board.core})")
            return _firmware(project, board, out)

        firmware = stages.run("firmware", stage_key("firmware", project_hash, board.name),
                              build, valid=lambda r: elf.is_file())
    if not board.is_host and not args.no_device:
        dev_key = stage_key("device", project_hash, board.name, args.device_samples, args.port,
                            time.time() if args.port else None)  # hardware: always rerun
        device = stages.run("device", dev_key,
                            lambda: _device(args, pruned, ds, board, project, out, log))

    timings = {"load": round(load_seconds, 2), **stages.seconds}
    timings["total"] = round(time.time() - t0, 2)
    report = build_report(args, argv, board, loaded, pruned, base, record, firmware, host,
                          device, timings, stages.reused)
    from .report import write_report
    write_report(out, report, record["plan"])
    return report


SOURCE_SUFFIXES = {".c", ".h", ".ld", ".json", ".md", ""}  # "" covers the Makefiles


def _project_digest(project: Path) -> str:
    """Hash of the generated sources only: build outputs (build*/, svt_host*) never count."""
    import hashlib
    h = hashlib.sha256()
    for f in sorted(project.rglob("*")):
        rel = f.relative_to(project)
        if (f.is_file() and f.suffix in SOURCE_SUFFIXES and not f.name.startswith("svt_host")
                and not any(part.startswith("build") for part in rel.parts[:-1])):
            h.update(str(rel).encode() + file_digest(f).encode())
    return h.hexdigest()[:20]


def _generate(pruned, input_shape, board, project: Path) -> None:
    from .cli_device import generate_project
    generate_project(pruned, input_shape, board, project)


def _host_emulation(pruned, ds, project: Path, samples: int, quiet: bool) -> dict:
    from .evaluate import predict
    from .hostemu import build_host, compare, run_host

    binary = build_host(project)
    x, y = ds.split("test", samples)
    c_scores, seconds = run_host(binary, ds.as_tensor(x).numpy(), int(c_classes(project)))
    with progress_bar(len(y), "PyTorch (host check)", quiet) as bar:
        ref = predict(pruned.model, ds, x, progress=bar.update)
    result = compare(c_scores, ref, y).as_dict()
    result["seconds"] = round(seconds, 2)
    return result


def c_classes(project: Path) -> int:
    import re
    return int(re.search(r"#define SVT_NUM_CLASSES (\d+)u", (project / "model.h").read_text())
               .group(1))


def _firmware(project: Path, board, out: Path) -> dict:
    from .firmware import build_firmware

    build = build_firmware(project, board, emulated=False)
    for suffix in (".elf", ".bin", ".hex", ".map"):
        src = getattr(build, suffix[1:], None) or build.elf.with_suffix(suffix)
        tmp = out / f".svt_{board.name}{suffix}.tmp"
        shutil.copyfile(src, tmp)
        tmp.replace(out / f"svt_{board.name}{suffix}")
    sizes = berkeley_size(build.elf)
    flash_names = {r.name for r in board.flash}
    flash_used = sum(r.used for r in build.regions if r.name in flash_names)
    sram_used = sum(r.used for r in build.regions if r.name not in flash_names)
    return dict(sizes, flash_used=flash_used, sram_used=sram_used, fits=True,
                weight_bytes=build.weight_bytes, arena_bytes=build.arena_bytes,
                arena_region=build.arena_region,
                regions={r.name: {"used": r.used, "size": r.size} for r in build.regions},
                elf=str(out / f"svt_{board.name}.elf"))


def _device(args, pruned, ds, board, project: Path, out: Path, log) -> dict:
    from .device_check import device_check

    if args.port:
        from .flashing import flash
        from .serial_link import SerialLink, open_port

        port = open_port(args.port, 115200)  # a missing board fails before flashing
        try:
            log(f"flashing {board.name} ({args.flash_tool or 'first installed tool'})")
            flash(board, project, args.flash_tool)
            log(f"validating on {args.port}: {args.device_samples} test images")
            link = SerialLink(port, name=args.port, timeout=2.0, baud=115200)
            info = link.handshake(attempts=3, timeout=2.0)
            with progress_bar(args.device_samples, "device", args.quiet) as bar:
                check = device_check(link, info, pruned, ds, args.device_samples, project,
                                     progress=bar.update)
        finally:
            port.close()
        target = f"{board.name} on {args.port}"
    else:
        if board.emulator is None:
            raise SvtError(f"board {board.name} has no emulator; connect it and pass --port, "
                           "or use --no-device")
        from .firmware import build_firmware
        from .qemu import QemuDevice

        build = build_firmware(project, board, emulated=True)
        log(f"validating on QEMU {board.emulator.machine}: {args.device_samples} test images")
        with QemuDevice(build.elf, board) as dev:
            with progress_bar(args.device_samples, f"QEMU {board.emulator.machine}",
                              args.quiet) as bar:
                check = device_check(dev.link, dev.info, pruned, ds, args.device_samples,
                                     project, progress=bar.update)
        target = f"QEMU {board.emulator.machine}"
    d = check.as_dict()
    per_inference = check.instructions_mean if check.instructions_mean is not None \
        else check.cycles_mean
    return {"target": target, "samples": d["samples"], "accuracy": d["accuracy"],
            "agreement": d["agreement_torch"], "agreement_host": d["agreement_host"],
            "identical_to_host": d["identical_to_host"],
            "instructions_per_inference": None if per_inference is None else int(per_inference),
            "counter": "instructions (QEMU -icount)" if check.instructions_mean is not None
            else "cycles (DWT CYCCNT)", "seconds_per_image": d["seconds_per_image"],
            "link": d["link"]}


def build_report(args, argv, board, loaded, pruned, base, record, firmware, host, device,
                 timings, reused) -> dict:
    plan, test = record["plan"], record["test"]
    pruned_params = sum(v.numel() for v in pruned.model.parameters())
    finetuned = plan.get("finetuned") is not None
    pruned_acc = test.get("pruned", test["final"]) if finetuned else test["final"]
    mem = {"weight_bytes": plan["pruned"]["weight_bytes"],
           "arena_bytes": plan["pruned"]["arena_bytes"]}
    return {
        "board": board.name,
        "model": str(loaded.weights), "model_def": loaded.model_def,
        "data": args.data or "Fashion-MNIST (/usr/share/datasets/fashion-mnist)",
        "command": "svt-deploy " + " ".join(shlex.quote(a) for a in argv),
        "baseline": _summary(base["accuracy"], base["params"], base),
        "pruned": _summary(pruned_acc, pruned_params, mem),
        "finetuned": _summary(test["final"], pruned_params, mem) if finetuned else None,
        "test_samples": test["samples"],
        "budget": record["budget"],
        "policy": plan["policy"], "allocation": plan.get("allocation"),
        "validation": plan.get("validation"),
        "finetune": plan.get("finetuned"),
        "layers": plan["layers"],
        "groups": plan["groups"],
        "firmware": firmware,
        "host_emulation": host,
        "device": device,
        "timings_s": timings,  # seconds each stage took when it was computed
        "reused_stages": reused,  # stages this run took from the cache
    }


def format_summary(r: dict, out: Path) -> str:
    b, p, f = r["baseline"], r["pruned"], r["finetuned"]
    final = f or p
    lines = [f"{r['board']}: test accuracy {b['accuracy']:.4f} -> {final['accuracy']:.4f} "
             f"({(b['accuracy'] - final['accuracy']) * 100:+.2f} pt drop"
             + (f"; {p['accuracy']:.4f} before fine-tuning" if f else "") + ")",
             f"  weights {b['flash_bytes']:,} B -> {final['flash_bytes']:,} B "
             f"(budget {r['budget']['flash_bytes']:,} B), arena {b['sram_bytes']:,} B -> "
             f"{final['sram_bytes']:,} B"]
    fw, host, dev = r["firmware"], r["host_emulation"], r["device"]
    if fw:
        lines.append(f"  firmware: text {fw['text']:,} data {fw['data']:,} bss {fw['bss']:,}; "
                     f"flash used {fw['flash_used']:,} B, SRAM used {fw['sram_used']:,} B; "
                     f"fits {fw['fits']}")
    lines.append(f"  host C: accuracy {host['accuracy']:.4f}, agreement with PyTorch "
                 f"{host['agreement']:.4f} on {host['samples']:,} images")
    if dev:
        ipi = dev["instructions_per_inference"]
        lines.append(f"  device ({dev['target']}): accuracy {dev['accuracy']:.4f}, agreement "
                     f"{dev['agreement']:.4f} on {dev['samples']:,} images"
                     + (f", {ipi:,} {dev['counter'].split(' ')[0]} per inference" if ipi else ""))
    reused = f" ({len(r['reused_stages'])} stages reused from the cache)" \
        if r["reused_stages"] else ""
    lines.append(f"  total {r['timings_s']['total']:.0f} s{reused}; report: {out / 'report.md'}")
    return "\n".join(lines)
