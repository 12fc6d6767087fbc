"""What the stages share: log lines, progress bars, and typed results as cache records."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import TypeVar

from tqdm import tqdm

Log = Callable[[str], None]  # one progress line, to stderr (or nowhere when quiet)
T = TypeVar("T")


def silent(_msg: str) -> None:
    pass


def stderr_log(quiet: bool = False) -> Log:
    if quiet:
        return silent
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def progress_bar(total: int | None, desc: str, quiet: bool):
    """A tqdm bar over images, shown only on a terminal: in logs and pipes it would bury the
    messages."""
    return tqdm(total=total, desc=desc, unit="img", disable=quiet or not sys.stderr.isatty(),
                file=sys.stderr, leave=False, dynamic_ncols=True)


def to_record(result) -> dict:
    """A stage's typed result as the JSON-able dict the stage cache keeps."""
    return asdict(result)


def from_record(cls: type[T], record: dict) -> T:
    """The typed result back from a cache record (keys the class lacks, such as the stage's
    seconds, are left out); TypeError when the record lacks a field (an older format)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in record.items() if k in names})
