"""Sensitivity profiling on the validation split (never the test split).

The sensitivity of a group at a rate is the accuracy drop (points, on the profile subset
of the validation split) of pruning that group alone at that rate. When the precision knob
is on (``auto`` from int8), each group also gets the drop of moving its layers alone to
int4, unpruned: a row ``{"keep": units, "rate": 0, "precision": "int4", "drop": ...}``.
Profiles are cached through the keyed ``StageCache`` (``sensitivity-<key>.json``), and so
is every measured cell on its own (``sensitivity-<key>.cells/``), so an interrupted
profiling resumes where it stopped. Under torchrun the groups are shared out through a work queue.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

from ..data import Dataset
from ..errors import SvtError
from ..evaluate import accuracy
from ..ir import IR
from ..loading import LoadedModel
from ..quant.reference import reference_model
from ..runtime import current
from ..stages import StageCache, stage_key
from .groups import Group, keep_count, pruned_copy
from .options import LADDER
from .precision import LOWER, group_precision, lowered

NOISE_ALLOWANCE = 1.0  # points: keep climbing the ladder a little past max_drop (noisy subsets)


class Validator:
    """Accuracy on fixed subsets of the validation split (never the test split)."""

    def __init__(self, ds: Dataset, profile_samples: int, check_samples: int,
                 val_size: int | None = None):
        kw = {} if val_size is None else {"val_size": val_size}
        self.ds = ds
        self.x, self.y = ds.split("val", max(profile_samples, check_samples), **kw)
        self.profile_samples = min(profile_samples, len(self.y))
        self.check_samples = min(check_samples, len(self.y))
        self.own = 0  # passes this process made alone (sensitivity cells under torchrun)
        self.shared = 0  # passes all ranks made together (images sharded)

    @property
    def evaluations(self) -> int:
        """Validation passes of the whole run, counted once however many ranks ran it."""
        return current().all_sum(self.own) + self.shared

    def profile(self, model, alone: bool = True) -> float:
        """Accuracy on the profile subset: one sensitivity cell, which under torchrun one
        rank measures alone (cells are shared out, not images); ``alone=False`` for a pass
        every rank needs (the profile's baseline), its images sharded."""
        return self._measure(model, self.profile_samples, sharded=not alone)

    def check(self, model) -> float:
        """Accuracy on the check subset (every rank together, images sharded)."""
        return self._measure(model, self.check_samples, sharded=True)

    def _measure(self, model, n: int, sharded: bool) -> float:
        if sharded:
            self.shared += 1
        else:
            self.own += 1
        return accuracy(model, self.ds, self.x[:n], self.y[:n], sharded=sharded)


@dataclass(frozen=True)
class ProfileOptions:
    """Everything a sensitivity profile depends on besides the model and the data (and
    ``max_drop``, which only decides how much of it is needed): its cache key hashes all
    of these fields."""

    samples: int  # profile-subset images actually measured
    ladder: tuple[float, ...] = LADDER
    precision_knob: bool = False  # also each group's layers one precision down


_PROFILE_CALLS = itertools.count()  # names each profiling's work queue in a torchrun job


def profile_key(loaded: LoadedModel, val: Validator, ladder=LADDER,
                precision_knob: bool = False) -> str:
    """Cache key of the profile of ``loaded`` on ``val``'s profile subset."""
    return stage_key("sensitivity", ProfileOptions(val.profile_samples, tuple(ladder),
                                                   precision_knob),
                     loaded.fingerprint(), val.ds.fingerprint())


def profile_sensitivity(loaded: LoadedModel, ir: IR, groups: list[Group], val: Validator,
                        max_drop: float, cache: StageCache | None, ladder=LADDER,
                        progress=None, precision_knob: bool = False) -> dict[str, list[dict]]:
    """Accuracy drop (points, profile subset) of pruning each group alone at each rate.

    A group's ladder stops early once the drop is well past ``max_drop``: more
    aggressive rates would never be chosen. Cached (keyed ``StageCache``) by model, data
    and ``ProfileOptions``; a profile made for a larger ``max_drop`` holds every row a
    smaller one needs, so it is reused for it. Every measured cell is also cached on its
    own, so an interrupted profiling resumes where it stopped. Under torchrun the groups
    are shared out through a work queue (a group's ladder stays on one rank: its early
    stop depends on its own rows) and the rows gathered on every rank.
    """
    rt = current()
    key = profile_key(loaded, val, ladder, precision_knob)
    if cache is not None:
        cached = cache.agreed("sensitivity", key,
                              valid=lambda r: r.get("max_drop", -1) >= max_drop)
        if cached is not None:
            return {space: _truncated(rows, max_drop)
                    for space, rows in cached["groups"].items()}
    cells = cache.cells("sensitivity", key) if cache is not None else None

    def measure(g: Group, k: int | str) -> dict:
        """Accuracy of ``g`` pruned to ``k`` units, or with its layers at precision ``k``
        (or why it cannot be), cached."""
        name = hashlib.sha1(g.space.encode()).hexdigest()[:12]
        cell = cells.get(name, str(k)) if cells is not None else None
        if cell is not None:
            return cell
        try:
            model = lowered(loaded, ir, g.spaces) if isinstance(k, str) \
                else pruned_copy(loaded, ir, g, k)[0]
            cell = {"accuracy": val.profile(reference_model(model))}
        except SvtError as e:
            cell = {"error": str(e)}
        if cells is not None:
            cells.put(name, str(k), cell)
        if progress is not None:
            progress(1)
        return cell

    base = val.profile(reference_model(loaded), alone=False)

    def ladder_rows(g: Group) -> list[dict]:
        rows, seen = [], set()
        for rate in ladder:
            k = keep_count(g.units, rate)
            if k >= g.units or k in seen:
                continue
            seen.add(k)
            cell = measure(g, k)
            if "error" in cell:
                rows.append({"keep": k, "rate": 1 - k / g.units, "drop": None,
                             "error": cell["error"]})
                break
            drop = (base - cell["accuracy"]) * 100
            rows.append({"keep": k, "rate": 1 - k / g.units, "drop": round(drop, 3)})
            if drop > max_drop + NOISE_ALLOWANCE:
                break
        lower = LOWER.get(group_precision(loaded, ir, g.spaces)) if precision_knob else None
        if lower is not None:
            cell = measure(g, lower)
            rows.append({"keep": g.units, "rate": 0.0, "precision": lower,
                         "drop": None if "error" in cell
                         else round((base - cell["accuracy"]) * 100, 3),
                         **({"error": cell["error"]} if "error" in cell else {})})
        return rows

    if rt.distributed:
        queue, mine = f"profile-{key}-{next(_PROFILE_CALLS)}", {}
        while (i := rt.next_ticket(queue)) < len(groups):
            mine[groups[i].space] = ladder_rows(groups[i])
        gathered = {space: rows for part in rt.all_gather(mine) for space, rows in part.items()}
        result = {g.space: gathered[g.space] for g in groups}
    else:
        result = {g.space: ladder_rows(g) for g in groups}
    if cache is not None and rt.is_main:
        cache.put("sensitivity", key, {"max_drop": max_drop, "groups": result})
    return result


def _truncated(rows: list[dict], max_drop: float) -> list[dict]:
    """The rows a profile for ``max_drop`` would have measured: the ladder up to the first
    one past the drop (it stops there), and the precision row."""
    ladder = [r for r in rows if "precision" not in r]
    knob = [r for r in rows if "precision" in r]
    for i, r in enumerate(ladder):
        if r["drop"] is None or r["drop"] > max_drop + NOISE_ALLOWANCE:
            return ladder[:i + 1] + knob
    return rows
