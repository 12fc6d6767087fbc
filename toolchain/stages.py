"""The one cache: results on disk, each under a key that hashes everything it depends on.

A rerun after an interruption (or with the same inputs) reuses every result whose key is
unchanged; a changed input recomputes it. Keys come from ``stage_key``, which hashes typed
options (frozen dataclasses) field by field: a field added to the options changes every
key built from them, with no list of options to keep up to date by hand.

One mechanism, two layouts:

- one record per stage (the deploy's stages, ``out/.stages/<stage>.json``): a result
  under a new key replaces the old one, so a changed input reruns that stage;
- one record per key (``keyed=True``; ``out/.cache/<stage>-<key>.json``): results for
  different inputs live side by side (the sensitivity profiles of successive models,
  the test accuracies of several models), and a long result can keep its finished
  pieces in ``cells(stage, key)`` so an interrupted computation resumes where it stopped.

Records are written atomically; a damaged one reads as missing and only costs a rerun.
Under torchrun, ``agreed``/``through`` make the reuse choice alike on every rank.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from .checkpoint import atomic_write_bytes
from .runtime import current


def _plain(part):
    """A JSON-ready form of one key part: a dataclass instance as its type name and all
    its fields (``dataclasses.asdict``, nested dataclasses included)."""
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        return {"__options__": type(part).__name__, **dataclasses.asdict(part)}
    return part


def stage_key(*parts) -> str:
    """Key of a result from its stage name and everything it depends on, e.g.
    ``stage_key("prune", options, model_digest, data_digest)``. Typed options are hashed
    through ``dataclasses.asdict``: every field counts, present and future."""
    return hashlib.sha256(json.dumps([_plain(p) for p in parts], sort_keys=True,
                                     default=str).encode()).hexdigest()[:20]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


class StageCache:
    """Results cached in ``out_dir/folder`` (``folder=None``: in ``out_dir`` itself).

    ``StageCache(out)`` is the deploy's per-stage cache (``out/.stages``);
    ``StageCache.work(out)`` the keyed cache of profiles and test accuracies
    (``out/.cache``)."""

    def __init__(self, out_dir: str | Path, folder: str | None = ".stages", *,
                 keyed: bool = False):
        self.dir = Path(out_dir) / folder if folder else Path(out_dir)
        self.keyed = keyed

    @classmethod
    def work(cls, out_dir: str | Path) -> StageCache:
        """The keyed cache under ``out_dir/.cache``."""
        return cls(out_dir, ".cache", keyed=True)

    def path(self, stage: str, key: str) -> Path:
        return self.dir / (f"{stage}-{key}.json" if self.keyed else f"{stage}.json")

    def get(self, stage: str, key: str) -> dict | None:
        """The result stored for ``stage`` under ``key``, or None (this process's view)."""
        path = self.path(stage, key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a damaged record only costs a rerun of the stage
        return data["result"] if isinstance(data, dict) and data.get("key") == key else None

    def put(self, stage: str, key: str, result: dict) -> None:
        atomic_write_bytes(self.path(stage, key),
                           json.dumps({"key": key, "result": result}, indent=1).encode())

    def agreed(self, stage: str, key: str, valid=None) -> dict | None:
        """The stored result if every rank of a torchrun job has it (and ``valid(result)``
        holds there), else None on every rank: reusing or recomputing is a choice all ranks
        must make alike, or they would wait on each other's collectives forever. Call it
        on every rank (it is a collective under torchrun)."""
        result = self.get(stage, key)
        if result is not None and valid is not None and not valid(result):
            result = None
        return result if current().all_true(result is not None) else None

    def through(self, stage: str, key: str, compute, valid=None) -> dict:
        """The stored result (``agreed``), or ``compute()``, stored by rank 0 only."""
        result = self.agreed(stage, key, valid)
        if result is None:
            result = compute()
            if current().is_main:
                self.put(stage, key, result)
        return result

    def cells(self, stage: str, key: str) -> StageCache:
        """A keyed cache for the finished pieces of ``stage``'s result under ``key``
        (``<stage>-<key>.cells/``): each piece is stored as soon as it is measured, by
        whichever rank measured it."""
        return StageCache(self.dir / f"{stage}-{key}.cells", None, keyed=True)
