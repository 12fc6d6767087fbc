"""Stage results cached in the output directory, keyed by everything the stage depends on.

A rerun after an interruption (or with the same inputs) reuses every stage whose key is
unchanged; a changed input reruns that stage and everything after it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .checkpoint import atomic_write_bytes


def stage_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


class StageCache:
    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir) / ".stages"

    def get(self, stage: str, key: str) -> dict | None:
        path = self.dir / f"{stage}.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a damaged record only costs a rerun of the stage
        return data["result"] if data.get("key") == key else None

    def put(self, stage: str, key: str, result: dict) -> None:
        atomic_write_bytes(self.dir / f"{stage}.json",
                           json.dumps({"key": key, "result": result}, indent=1).encode())
