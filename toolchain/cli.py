"""svt-deploy command line.

    svt-deploy --board stm32h7 --max-drop 3        # the whole pipeline (deploy)
    svt-deploy boards | analyze | evaluate | prune | generate | emulate | firmware | ...

Errors caused by input or environment print one line and exit non-zero; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from . import cli_args as num
from .cli_args import ArgParser
from .errors import SvtError

COMMANDS = {}


def command(name: str, help_text: str):
    def register(fn):
        COMMANDS[name] = (fn, help_text)
        return fn
    return register


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model-def", metavar="FILE.py:FACTORY",
                   help="Python file and zero-argument factory returning the nn.Module "
                        "(default: the reference SViT)")
    g.add_argument("--weights", metavar="W.pt",
                   help="state dict or svt-deploy checkpoint (default: examples/reference_svit.pt)")
    g.add_argument("--data", metavar="PATH",
                   help="IDX directory, CIFAR-10 batch directory, .npz, or an image folder "
                        "(train/ and test/ with one sub-directory of PNG/JPEG per class) "
                        "(default: /usr/share/datasets/fashion-mnist)")
    g.add_argument("--normalize", nargs=2, type=num.finite, action=num.MeanStd,
                   metavar=("MEAN", "STD"),
                   help="subtract MEAN and divide by STD after scaling uint8 images to [0, 1]")
    g = p.add_argument_group("compute")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where evaluation, profiling and fine-tuning run (auto: CUDA when "
                        "PyTorch sees a GPU); IR extraction and C generation stay on the CPU")
    g.add_argument("--batch-size", type=num.count, default=250, metavar="N",
                   help="images per evaluation batch (default 250; results do not depend "
                        "on it)")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def load_inputs(args, need_data: bool = True):
    """(LoadedModel, Dataset) from the common model/data options, checked against each other."""
    from .data import load_dataset
    from .loading import load_model
    from .runtime import configure

    configure(args.device, args.batch_size)
    ds = load_dataset(args.data, tuple(args.normalize) if args.normalize else None) \
        if need_data else None
    loaded = load_model(args.model_def, args.weights)
    if ds is not None:
        if loaded.input_shape and tuple(loaded.input_shape) != ds.input_shape:
            raise SvtError(f"the model expects {tuple(loaded.input_shape)} images but the data "
                           f"has {ds.input_shape}; pass the --data it was trained on")
        loaded.input_shape = ds.input_shape
    return loaded, ds


def progress_bar(total: int, desc: str, quiet: bool):
    from tqdm import tqdm
    # bars only on a terminal: in logs and pipes they would bury the messages
    return tqdm(total=total, desc=desc, unit="img", disable=quiet or not sys.stderr.isatty(),
                file=sys.stderr, leave=False, dynamic_ncols=True)


# ----------------------------------------------------------------------------- boards

@command("boards", "list the board profiles and their memory limits")
def cmd_boards(argv):
    p = ArgParser(prog="svt-deploy boards", description="List board profiles.")
    add_common(p)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from .boards import all_boards, fmt_bytes

    boards = all_boards()
    if args.json:
        print(json.dumps([{"name": b.name, "mcu": b.mcu, "core": b.core, "fpu": b.fpu,
                           "clock_hz": b.clock_hz, "flash_bytes": b.flash_bytes,
                           "sram": {r.name: r.size for r in b.sram},
                           "emulator": b.emulator.machine if b.emulator else None}
                          for b in boards], indent=2))
        return 0
    print(f"{'board':14s} {'mcu':12s} {'core / fpu':24s} {'clock':>8s} {'flash':>7s}  "
          f"{'SRAM regions':44s} emulator")
    for b in boards:
        core = f"{b.core} / {b.fpu}"
        clock = f"{b.clock_hz // 1_000_000} MHz" if b.clock_hz else "-"
        sram = ", ".join(f"{r.name} {fmt_bytes(r.size)}" for r in b.sram) or "-"
        print(f"{b.name:14s} {b.mcu:12s} {core:24s} {clock:>8s} {fmt_bytes(b.flash_bytes or None):>7s}"
              f"  {sram:44s} {b.emulator.machine if b.emulator else '-'}")
    return 0


# ----------------------------------------------------------------------------- analyze

@command("analyze", "per-layer flash and SRAM of a model against a board's limits")
def cmd_analyze(argv):
    p = ArgParser(prog="svt-deploy analyze",
                  description="Flash (fp32 weights, BN folded) and peak SRAM "
                              "(layer-major schedule) per layer, against a board.")
    p.add_argument("--board", required=True)
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    from .analysis import analyze, format_analysis
    from .boards import load_board

    board = load_board(args.board)
    loaded, ds = load_inputs(args, need_data=args.data is not None)
    result = analyze(loaded, board)
    print(json.dumps(result, indent=2) if args.json else format_analysis(result))
    return 0


# ----------------------------------------------------------------------------- evaluate

@command("evaluate", "top-1 test accuracy of a model")
def cmd_evaluate(argv):
    p = ArgParser(prog="svt-deploy evaluate",
                  description="Top-1 accuracy on the test split.")
    add_model_args(p)
    add_common(p)
    p.add_argument("--samples", type=num.count, default=None,
                   help="first N test images (default: all)")
    p.add_argument("--json", action="store_true",
                   help='print {"accuracy": ..., "samples": ..., "params": ...}')
    args = p.parse_args(argv)
    from .evaluate import accuracy

    loaded, ds = load_inputs(args)
    x, y = ds.split("test", args.samples)
    with progress_bar(len(y), "evaluate", args.quiet or args.json) as bar:
        try:
            acc = accuracy(loaded.model, ds, x, y, progress=bar.update)
        except (RuntimeError, ValueError) as e:
            raise SvtError(f"the model failed on {ds.input_shape} images from the data: "
                           f"{str(e).splitlines()[0][:160]}") from None
    params = sum(t.numel() for t in loaded.model.parameters())
    structure = structure_check(loaded.model, ds.input_shape)
    if args.json:
        print(json.dumps({"accuracy": round(acc, 6), "samples": int(len(y)), "params": params,
                          "structure": structure}))
    else:
        print(f"accuracy {acc:.4f} on {len(y)} test images ({params:,} parameters)")
        print(f"structure: {structure}")
    return 0


def structure_check(model, input_shape) -> str:
    """The deploy's structure check (IR extraction, verified against the model), as a line:
    "verified", or why the deploy would refuse this model."""
    from .ir import extract_ir

    try:
        extract_ir(model, input_shape)
    except SvtError as e:
        return f"could not verify: {e}"
    return "verified"


# ----------------------------------------------------------------------------- prune

def add_budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget")
    g.add_argument("--board", help="board profile whose flash and SRAM set the budget")
    g.add_argument("--max-drop", type=num.drop_points, required=True, metavar="PTS",
                   help="tolerated top-1 accuracy drop in points")
    g.add_argument("--target-flash", type=num.size, metavar="SIZE",
                   help="weight bytes allowed (e.g. 900KB)")
    g.add_argument("--target-sram", type=num.size, metavar="SIZE",
                   help="arena bytes allowed (e.g. 96KB)")
    g.add_argument("--max-reduction", type=num.reduction_pct, metavar="PCT",
                   help="cut the weight bytes by PCT percent (the paper's setting)")
    g = p.add_argument_group("pruning")
    g.add_argument("--policy", choices=("prioritized", "uniform"), default="prioritized")
    g.add_argument("--allocation", choices=("proportional", "greedy"), default="proportional",
                   help="how the prioritized policy shares the drop among groups: in "
                        "proportion to their size (default), or all of it to each in turn "
                        "(the paper's literal rule)")
    g.add_argument("--finetune-epochs", type=num.non_negative, default=0, metavar="N",
                   help="fine-tune after pruning (and between stages when one shot cannot "
                        "reach the budget)")
    g.add_argument("--finetune-samples", type=num.count, default=20000, metavar="N",
                   help="training images used for fine-tuning (default 20000)")
    g.add_argument("--finetune-lr", type=num.positive, default=5e-4)
    g.add_argument("--profile-samples", type=num.count, default=1000, metavar="N",
                   help="validation images per sensitivity measurement (default 1000)")
    g.add_argument("--check-samples", type=num.count, default=2500, metavar="N",
                   help="validation images to check each applied step (default 2500)")
    g.add_argument("--test-samples", type=num.count, default=None, metavar="N",
                   help="test images for the reported accuracy (default: all)")


def budget_from_args(args, baseline_weight_bytes: int | None = None):
    from .boards import load_board
    from .prune import Budget

    # the numbers were range-checked while parsing (cli_args); sizes are already bytes
    board = load_board(args.board) if args.board else None
    if board is None and not (args.target_flash or args.target_sram or args.max_reduction):
        raise SvtError("give --board, or a budget with --target-flash/--target-sram/"
                       "--max-reduction")
    flash = board.flash_budget if board else None
    sram = board.sram_budget if board else None
    source = [f"board {board.name}"] if board else []
    if args.target_flash:
        flash = args.target_flash
        source.append("--target-flash")
    if args.target_sram:
        sram = args.target_sram
        source.append("--target-sram")
    if args.max_reduction is not None:
        target = int(baseline_weight_bytes * (1 - args.max_reduction / 100))
        flash = target if flash is None else min(flash, target)
        source.append(f"--max-reduction {args.max_reduction:g}%")
    return board, Budget(flash, sram, args.max_drop, " + ".join(source))


def cached_test_accuracy(model, ds, fingerprint: str, samples, cache_dir, quiet: bool,
                         desc: str) -> tuple[float, int]:
    """Test accuracy (reporting only), cached by model and data fingerprints."""
    from .checkpoint import atomic_write_bytes
    from .evaluate import accuracy
    from .runtime import current

    rt = current()
    x, y = ds.split("test", samples)
    path = cache_dir / f"test-{fingerprint}-{ds.fingerprint()}-{len(y)}.json"
    if rt.all_true(path.is_file()):
        return json.loads(path.read_text())["accuracy"], len(y)
    with progress_bar(len(y), desc, quiet) as bar:
        acc = accuracy(model, ds, x, y, progress=bar.update)
    if rt.is_main:
        atomic_write_bytes(path, json.dumps({"accuracy": acc}).encode())
    return acc, len(y)


def run_prune(args, loaded, ds, out_dir, log):
    """Prune, report on the test split, write pruned_model.pt + prune_plan.json."""
    import time
    from pathlib import Path

    from .ir import extract_ir
    from .memory import plan_memory
    from .prune import Pruner, plan_json, write_outputs
    from .runtime import current

    t0 = time.time()
    base_plan = plan_memory(extract_ir(loaded.model, ds.input_shape))
    board, budget = budget_from_args(args, base_plan.weight_bytes)
    cache_dir = Path(out_dir) / ".cache"
    bar = progress_bar(None, "measuring", args.quiet)
    pruner = Pruner(loaded, ds, budget, policy=args.policy,
                    profile_samples=args.profile_samples, check_samples=args.check_samples,
                    cache_dir=cache_dir, finetune_epochs=args.finetune_epochs,
                    finetune_samples=args.finetune_samples, finetune_lr=args.finetune_lr,
                    allocation=args.allocation, log=log, progress=bar.update)
    log(f"{args.policy} pruning: {budget.describe()}")
    try:
        result = pruner.run()
    finally:
        bar.close()
    t = time.time()

    def test_accuracy(lm, desc):
        return cached_test_accuracy(lm.model, ds, lm.fingerprint(), args.test_samples,
                                    cache_dir, args.quiet, desc)

    base_acc, n = test_accuracy(loaded, "test (baseline)")
    final_acc, _ = test_accuracy(result.state.loaded, "test (final)")
    test = {"baseline": round(base_acc, 5), "final": round(final_acc, 5), "samples": n,
            "drop": round((base_acc - final_acc) * 100, 3)}
    if result.before_finetune is not None:  # final = after fine-tuning
        test["pruned"] = round(test_accuracy(result.before_finetune.loaded,
                                             "test (before fine-tuning)")[0], 5)
    timings = dict(pruner.timings, test=time.time() - t, total=time.time() - t0)
    plan = plan_json(result, budget, args.policy, pruner.groups, timings, test,
                     {"board": board.name if board else None, "allocation": args.allocation,
                      "validation": {"profile_samples": pruner.val.profile_samples,
                                     "check_samples": pruner.val.check_samples,
                                     "evaluations": pruner.val.evaluations}})
    if current().is_main:  # under torchrun every rank holds the same result
        write_outputs(Path(out_dir), result, plan)
    return result, budget, plan, test, pruner.groups


@command("prune", "PrimeSVT pruning to a board's budget within an accuracy drop")
def cmd_prune(argv):
    p = ArgParser(prog="svt-deploy prune",
                  description="Prioritized memory-aware structured pruning "
                              "(PrimeSVT) to a flash/SRAM budget.")
    add_budget_args(p)
    add_model_args(p)
    add_common(p)
    p.add_argument("--out", default=None, help="output directory (default out/prune-<board>)")
    args = p.parse_args(argv)
    from .prune import format_table
    from .runtime import current

    loaded, ds = load_inputs(args)
    out_dir = args.out or f"out/prune-{args.board or 'custom'}"
    main_rank = current().is_main  # under torchrun, rank 0 speaks for all
    log = (lambda msg: print(msg, file=sys.stderr)) if main_rank and not args.quiet \
        else (lambda *a: None)
    result, budget, plan, test, groups = run_prune(args, loaded, ds, out_dir, log)
    if main_rank:
        print(format_table(result, budget, groups, test))
        print(f"wrote {out_dir}/pruned_model.pt and {out_dir}/prune_plan.json")
    return 0


# ----------------------------------------------------------------------------- generate

def generate_sources(loaded, input_shape, out_dir, board=None):
    """IR -> memory plan -> C sources in ``out_dir``; returns (ir, plan, Generated)."""
    from .codegen import generate
    from .ir import extract_ir
    from .memory import plan_memory

    ir = extract_ir(loaded.model, input_shape)
    plan = plan_memory(ir)
    gen = generate(ir, plan, out_dir, source=str(loaded.weights))
    return ir, plan, gen


@command("generate", "emit C sources (weights, kernels, model) for a model")
def cmd_generate(argv):
    p = ArgParser(prog="svt-deploy generate",
                  description="Generate dense C weight arrays (BN folded), the "
                              "spiking kernels and svt_model_run().")
    p.add_argument("--board", default="host", help="board whose limits are checked (default host)")
    p.add_argument("--out", required=True, help="output directory for the C sources")
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    from .boards import load_board
    from .memory import check_fit

    board = load_board(args.board)
    loaded, ds = load_inputs(args, need_data=args.data is not None)
    if loaded.input_shape is None:
        raise SvtError("the model's input shape is unknown; pass --data")
    _, plan, gen = generate_sources(loaded, loaded.input_shape, args.out)
    fit = check_fit(plan, board)
    print(f"wrote {len(gen.files)} files to {args.out}: weights {gen.weight_bytes:,} B, "
          f"arena {gen.arena_bytes:,} B, model hash {gen.model_hash}")
    if not fit.fits:
        print(f"warning: does not fit {board.name}: weights over by {fit.flash_over:,} B, "
              f"arena over by {fit.sram_over:,} B (prune first: svt-deploy prune --board "
              f"{board.name})", file=sys.stderr)
    return 0


def host_emulation(loaded, ds, out_dir, samples, quiet, sanitize=False, workers=None):
    """Generate, build with gcc and compare with PyTorch on the first ``samples`` test images."""
    from .evaluate import predict
    from .hostemu import build_host, compare, run_host

    ir, plan, gen = generate_sources(loaded, ds.input_shape, out_dir)
    binary = build_host(out_dir, sanitize=sanitize)
    x, y = ds.split("test", samples)
    images = ds.as_tensor(x).numpy()
    c_scores, seconds = run_host(binary, images, ir.num_classes, workers=workers)
    with progress_bar(len(y), "pytorch", quiet) as bar:
        ref = predict(loaded.model, ds, x, progress=bar.update)
    result = compare(c_scores, ref, y)
    return result, seconds, gen


@command("emulate", "build the generated C on the host and compare it with PyTorch")
def cmd_emulate(argv):
    p = ArgParser(prog="svt-deploy emulate",
                  description="Host emulation: gcc build of the generated C run "
                              "over test images, compared image by image with "
                              "the PyTorch model.")
    p.add_argument("--samples", type=num.count, default=None,
                   help="first N test images (default all)")
    p.add_argument("--out", default="out/emulate", help="directory for the sources and binary")
    p.add_argument("--sanitize", action="store_true",
                   help="build with -fsanitize=address,undefined (slower)")
    p.add_argument("--json", action="store_true")
    add_model_args(p)
    add_common(p)
    args = p.parse_args(argv)
    loaded, ds = load_inputs(args)
    result, seconds, gen = host_emulation(loaded, ds, args.out, args.samples, args.quiet,
                                          args.sanitize)
    if args.json:
        print(json.dumps(dict(result.as_dict(), seconds=round(seconds, 2),
                              weight_bytes=gen.weight_bytes, arena_bytes=gen.arena_bytes)))
    else:
        print(f"host C accuracy {result.accuracy:.4f}, PyTorch {result.reference_accuracy:.4f}, "
              f"agreement {result.agreement:.4f} on {result.samples} test images "
              f"({seconds:.1f} s; max |score diff| {result.max_abs_score_diff:.2g})")
    return 0


# Commands of the device and TFLite stages register themselves from their own modules.
from . import cli_device, cli_tflite, deploy  # noqa: E402,F401


# ----------------------------------------------------------------------------- main

def _usage() -> str:
    lines = ["usage: svt-deploy --board BOARD --max-drop PTS [options]   (full pipeline)",
             "       svt-deploy COMMAND [options]", "", "commands:"]
    lines += [f"  {name:14s} {text}" for name, (_, text) in COMMANDS.items()]
    lines.append("\n'svt-deploy COMMAND --help' for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if hasattr(sys.stdout, "reconfigure"):  # progress lines reach a log or a pipe as they happen
        sys.stdout.reconfigure(line_buffering=True)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name = argv[0]
    if name in COMMANDS:
        fn, argv = COMMANDS[name][0], argv[1:]
    elif name.startswith("-") and "deploy" in COMMANDS:
        fn = COMMANDS["deploy"][0]
    else:
        print(f"svt-deploy: error: unknown command {name!r}; commands: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return fn(argv) or 0
    except SvtError as e:
        if debug:
            traceback.print_exc()
        print(f"svt-deploy: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("svt-deploy: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run as `python -m svt_deploy.cli`, this file is __main__, while the command modules
    # registered into the importable svt_deploy.cli: dispatch through that one.
    from svt_deploy.cli import main as _registered_main
    sys.exit(_registered_main())
