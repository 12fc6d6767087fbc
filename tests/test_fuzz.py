"""libFuzzer on the firmware's frame decoder and request handling (firmware_templates/fuzz/),
for a bounded number of executions; benchmarks/fuzz_protocol.py runs it longer by hand."""

from __future__ import annotations

import shutil
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import fuzz_protocol  # noqa: E402

RUNS = 20_000  # about 5 s on one core


def test_committed_seed_corpus_is_what_the_host_encoder_makes():
    committed = {p.stem: p.read_bytes() for p in fuzz_protocol.CORPUS.glob("*.bin")}
    assert committed == fuzz_protocol.seed_corpus(), \
        "stale seed corpus: python benchmarks/fuzz_protocol.py --write-corpus"


@pytest.mark.skipif(shutil.which("clang") is None,
                    reason="clang not installed (apt-get install clang libclang-rt-dev)")
def test_fuzzed_frames_and_requests_do_not_crash_the_firmware(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a crash's input would be saved
    result = fuzz_protocol.run(fuzz_protocol.build(tmp_path), runs=RUNS, seed=1)
    assert result["crashes"] == 0 and result["returncode"] == 0, result["output_tail"]
    assert result["executions"] == RUNS
