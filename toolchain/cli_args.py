"""Argument parsing shared by every svt-deploy command: range-checked numeric ``type=``s and
a parser whose errors are one line.

A bad number must stop the command while it parses, before a model is loaded or a
pipeline stage starts (a negative ``--max-drop`` used to start a full run).
"""

from __future__ import annotations

import argparse
import math

from .errors import SvtError


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
    from .boards import parse_size
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
