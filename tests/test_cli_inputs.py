"""Numeric options are range-checked while parsing: one line, exit 2, before any work."""

import argparse
import time

import pytest
from conftest import run_cli

from svt_deploy import cli_args as num

# (command line, words the one error line must contain); one case per checked option kind
BAD = [
    (["--board", "stm32h7", "--max-drop", "-1"], "--max-drop"),  # the example
    (["--board", "stm32h7", "--max-drop", "100"], "[0, 100)"),
    (["--board", "stm32h7", "--max-drop", "nan"], "--max-drop"),
    (["--board", "stm32h7", "--max-drop", "three"], "not a number"),
    (["--board", "stm32h7", "--max-drop", "3", "--max-reduction", "0"], "(0, 100)"),
    (["--board", "stm32h7", "--max-drop", "3", "--target-flash", "0KB"], "--target-flash"),
    (["--board", "stm32h7", "--max-drop", "3", "--target-sram", "lots"], "--target-sram"),
    (["--board", "stm32h7", "--max-drop", "3", "--finetune-epochs", "-1"], ">= 0"),
    (["--board", "stm32h7", "--max-drop", "3", "--finetune-lr", "0"], "> 0"),
    (["--board", "stm32h7", "--max-drop", "3", "--device-samples", "0"], ">= 1"),
    (["prune", "--board", "stm32h7", "--max-drop", "3", "--check-samples", "1.5"], "integer"),
    (["evaluate", "--samples", "0"], "--samples"),
    (["emulate", "--normalize", "0.5", "0"], "STD"),
    (["run-qemu", "--board", "stm32h7", "--corrupt", "0.5"], "[0, 0.05)"),
    (["validate", "--port", "x", "--board", "stm32h7", "--timeout", "0"], "--timeout"),
    (["validate", "--port", "x", "--board", "stm32h7", "--baud", "-9600"], "--baud"),
    (["export-tflite", "--out", "x", "--tflm-samples", "-1"], "--tflm-samples"),
    (["boards", "--no-such-option"], "unrecognized"),  # argparse's own errors: one line too
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_number_is_one_line_before_any_work(argv, needle):
    t = time.monotonic()
    proc = run_cli(*argv, timeout=60)
    assert time.monotonic() - t < 15, "parsing must fail before a model is loaded"
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("svt-deploy: error: ") and needle in lines[0], lines[0]
    assert "--help" in lines[0]  # says what to do


@pytest.mark.parametrize("check,good,bad", [
    (num.drop_points, ["0", "3", "99.9"], ["-0.1", "100", "inf"]),
    (num.reduction_pct, ["0.5", "99"], ["0", "100"]),
    (num.count, ["1", "20000"], ["0", "-3", "2.5"]),
    (num.count0, ["0", "5"], ["-1"]),
    (num.positive, ["1e-6", "2"], ["0", "-1", "nan"]),
    (num.corrupt_rate, ["0", "0.01"], ["0.05", "-0.01"]),
    (num.size, ["96KB", "2MB", "4096"], ["0", "-1KB", "big"]),
])
def test_range_boundaries(check, good, bad):
    for text in good:
        check(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)
