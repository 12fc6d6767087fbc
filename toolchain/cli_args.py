"""Argument parsing shared by every svt-deploy command: range-checked numeric ``type=``s, a
parser whose errors are one line, the option groups several commands share, the typed
pipeline options built from them, and the table of commands.

A bad number must stop the command while it parses, before a model is loaded or a
pipeline stage starts (a negative ``--max-drop`` used to start a full run).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from .boards import parse_size
from .errors import SvtError
from .pipeline.inputs import ModelInputs
from .prune import PruneOptions
from .quant.packing import PRECISIONS


class UsageError(SvtError):
    """A command line that argparse rejected; exit code 2, like argparse's own."""


class ArgParser(argparse.ArgumentParser):
    """argparse prints usage + error (two lines) and exits; the project's rule is one line
    saying what is wrong and what to do. Raising SvtError sends it through main(), which
    prints every user error the same way."""

    def error(self, message: str):
        raise UsageError(f"{message} ('{self.prog} --help' lists the options)")


def _number(kind: type, low: float | None = None, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False):
    """A ``type=`` that parses ``kind`` (int or float) and checks it lies in the range."""
    what = "an integer" if kind is int else "a number"
    if low is None:
        rule = f"a finite {what[2:]}"
    elif high is None:
        rule = f"{what} {'>' if low_open else '>='} {low:g}"
    else:
        rule = (f"{what} in {'(' if low_open else '['}{low:g}, {high:g}"
                f"{')' if high_open else ']'}")

    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}; give {rule}") from None
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        if not (math.isfinite(value) and above and below):  # inf passes a one-sided range
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    check.__name__ = rule  # argparse names the type by it in its own messages
    return check


count = _number(int, 1)                       # images, samples, threads
count0 = _number(int, 0)                      # counts where 0 switches a step off
positive_int = _number(int, 0, low_open=True)  # baud rates
positive = _number(float, 0, low_open=True)   # learning rates, timeouts
non_negative = _number(float, 0)              # epochs (fractions allowed)
finite = _number(float)                       # a mean: any sign, but not nan/inf
drop_points = _number(float, 0, 100, high_open=True)           # accuracy points lost
reduction_pct = _number(float, 0, 100, low_open=True, high_open=True)
corrupt_rate = _number(float, 0, 0.05, high_open=True)        # fraction of bytes damaged


def size(text: str) -> int:
    """'900KB', '2MB', '65536' -> bytes (> 0), read as the board files read them."""
    try:
        return parse_size(text)
    except SvtError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class MeanStd(argparse.Action):
    """``--normalize MEAN STD``: nargs=2 takes one type, so the STD > 0 rule lives here."""

    def __call__(self, parser, namespace, values, option_string=None):
        if not values[1] > 0:
            parser.error(f"argument {option_string}: STD must be > 0, got {values[1]:g}")
        setattr(namespace, self.dest, values)


# ----------------------------------------------------------------------------- commands

class Commands(dict):
    """{name: (function(argv) -> exit code, one-line help)}, in the order registered."""

    def register(self, name: str, help_text: str):
        def add(fn: Callable[[list[str]], int]):
            self[name] = (fn, help_text)
            return fn
        return add


# ----------------------------------------------------------------------------- shared options

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
    g.add_argument("--normalize", nargs=2, type=finite, action=MeanStd,
                   metavar=("MEAN", "STD"),
                   help="subtract MEAN and divide by STD after scaling uint8 images to [0, 1]")
    if not any(a.dest == "precision" for a in p._actions):  # prune/deploy have auto
        g.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="weight precision of the generated C and of every accuracy "
                            "measured: fp32, or integer-only arithmetic with int8/int4 "
                            "weights (default: the checkpoint's; fp32 for a trained model)")
    g = p.add_argument_group("compute")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where evaluation, profiling and fine-tuning run (auto: CUDA when "
                        "PyTorch sees a GPU); IR extraction and C generation stay on the CPU")
    g.add_argument("--batch-size", type=count, default=250, metavar="N",
                   help="images per evaluation batch (default 250; results do not depend "
                        "on it)")


def model_inputs(args: argparse.Namespace) -> ModelInputs:
    """The options of ``add_model_args`` as the pipeline's ModelInputs."""
    precision = getattr(args, "precision", None)
    return ModelInputs(model_def=args.model_def, weights=args.weights, data=args.data,
                       normalize=tuple(args.normalize) if args.normalize else None,
                       device=args.device, batch_size=args.batch_size,
                       precision=precision if precision in PRECISIONS else None)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_kernel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernels", choices=("event", "dense"), default="event",
                   help="spike-fed integer layers as event-driven kernels (default: only "
                        "active inputs cost work) or as plain dense loops over the same "
                        "weights, to measure the difference")


def add_budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget")
    g.add_argument("--board", help="board profile whose flash and SRAM set the budget")
    g.add_argument("--max-drop", type=drop_points, required=True, metavar="PTS",
                   help="tolerated top-1 accuracy drop in points")
    g.add_argument("--target-flash", type=size, metavar="SIZE",
                   help="weight bytes allowed (e.g. 900KB)")
    g.add_argument("--target-sram", type=size, metavar="SIZE",
                   help="arena bytes allowed (e.g. 96KB)")
    g.add_argument("--max-reduction", type=reduction_pct, metavar="PCT",
                   help="cut the weight bytes by PCT percent (the paper's setting)")
    g.add_argument("--max-latency-ms", type=positive, metavar="MS",
                   help="inference time allowed at the board's clock (one instruction a "
                        "cycle), predicted from the model's work with the board's kernel "
                        "costs (svt-deploy calibrate)")
    g.add_argument("--latency-samples", type=count, default=50, metavar="N",
                   help="validation images the instructions are predicted on (default 50)")
    g.add_argument("--precision", choices=("auto",) + PRECISIONS, default="auto",
                   help="weight precision: auto (default) tries fp32, int8, int4 on the "
                        "unpruned model and keeps the first within the drop that meets the "
                        "budget, else prunes the smallest one within the drop; int8/int4 "
                        "run integer-only (no FPU needed)")
    g = p.add_argument_group("pruning")
    g.add_argument("--policy", choices=("prioritized", "uniform"), default="prioritized")
    g.add_argument("--allocation", choices=("proportional", "greedy"), default="proportional",
                   help="how the prioritized policy shares the drop among groups: in "
                        "proportion to their size (default), or all of it to each in turn "
                        "(the paper's literal rule)")
    g.add_argument("--finetune-epochs", type=non_negative, default=0, metavar="N",
                   help="fine-tune after pruning (and between stages when one shot cannot "
                        "reach the budget)")
    g.add_argument("--finetune-samples", type=count, default=20000, metavar="N",
                   help="training images used for fine-tuning (default 20000)")
    g.add_argument("--finetune-lr", type=positive, default=5e-4)
    g.add_argument("--profile-samples", type=count, default=1000, metavar="N",
                   help="validation images per sensitivity measurement (default 1000)")
    g.add_argument("--check-samples", type=count, default=2500, metavar="N",
                   help="validation images to check each applied step (default 2500)")
    g.add_argument("--test-samples", type=count, default=None, metavar="N",
                   help="test images for the reported accuracy (default: all)")


def prune_options(args: argparse.Namespace) -> PruneOptions:
    """The options of ``add_budget_args`` as the prune stage's PruneOptions."""
    return PruneOptions.from_args(args)
