"""What pruning aims for and how: the typed options of the prune stage and its budget.

``PruneOptions`` holds every option the prune stage's result depends on; the stage's
cache key is ``stages.stage_key("prune", options, model_digest, data_digest)``, which
hashes all of its fields, so a field added here changes the key by itself (a latency
budget also keys on the board's kernel costs: ``pipeline.pruning.prune_key``). ``Budget``
is what the options resolve to against a board and the baseline's size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..boards import Board, load_board
from ..errors import SvtError
from ..ir import IR
from ..latency import LatencyBudget, LatencyPredictor, usable_costs
from ..memory import Fit, MemoryPlan, check_fit

LADDER = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # pruning rates profiled per group

# A board with no limits of its own: a Budget's numbers are already resolved (board,
# --target-*, --max-reduction), so check_fit gets them all explicitly (None: no limit).
_UNLIMITED = Board(name="budget", mcu="", core="", fpu="", float_abi="", clock_hz=0,
                   reserve_flash=0, reserve_sram=0)


@dataclass
class Budget:
    flash_bytes: int | None  # weight bytes allowed (None: no limit)
    sram_bytes: int | None  # arena bytes allowed
    max_drop: float  # accuracy points
    source: str = ""
    latency: LatencyBudget | None = None  # predicted instructions per inference allowed
    # predicts a candidate's instructions (given with ``latency``); not part of the record
    predictor: LatencyPredictor | None = field(default=None, repr=False, compare=False)

    def fit(self, plan: MemoryPlan) -> Fit:
        """How ``plan`` compares with the memory budget (``memory.check_fit``, the one fit
        check)."""
        return check_fit(plan, _UNLIMITED, self.flash_bytes, self.sram_bytes)

    def fits(self, plan: MemoryPlan, ir: IR | None = None) -> bool:
        """Memory first (free), then, under a latency budget, the predicted instructions
        of ``ir`` (the model ``plan`` was made from)."""
        if not self.fit(plan).fits:
            return False
        return self.latency is None or self.instructions(ir, plan) <= \
            self.latency.max_instructions

    def instructions(self, ir: IR | None, plan: MemoryPlan) -> float | None:
        """Predicted instructions per inference (None without a latency budget)."""
        if self.latency is None:
            return None
        if ir is None or self.predictor is None:
            raise ValueError("a latency budget needs the candidate's IR and a predictor")
        return self.predictor.instructions(ir, plan)

    def only_latency_binds(self, ir: IR, plan: MemoryPlan) -> bool:
        """The memory budget is met but the latency budget is not."""
        return self.latency is not None and self.fit(plan).fits and not self.fits(plan, ir)

    def describe(self) -> str:
        parts = []
        if self.flash_bytes is not None:
            parts.append(f"weights <= {self.flash_bytes:,} B")
        if self.sram_bytes is not None:
            parts.append(f"arena <= {self.sram_bytes:,} B")
        if self.latency is not None:
            parts.append(f"predicted instructions <= {self.latency.max_instructions:,} "
                         f"({self.latency.describe()})")
        return ", ".join(parts) + f", drop <= {self.max_drop:g} pt ({self.source})"

    def as_dict(self) -> dict:
        """The budget as prune_plan.json records it."""
        return {"flash_bytes": self.flash_bytes, "sram_bytes": self.sram_bytes,
                "max_drop": self.max_drop, "source": self.source,
                "latency": None if self.latency is None else self.latency.as_dict()}


@dataclass(frozen=True)
class PruneOptions:
    """Everything the prune stage's result depends on besides the model and the data.

    Field names are the command line's option names (``--max-drop`` -> ``max_drop``), so
    ``from_args`` picks them up; options the command line does not offer keep their
    defaults."""

    max_drop: float  # tolerated top-1 drop, points (validation split)
    # budget
    board: str | None = None  # board profile whose flash and SRAM set the budget
    target_flash: int | None = None  # weight bytes allowed (overrides the board's)
    target_sram: int | None = None  # arena bytes allowed (overrides the board's)
    max_reduction: float | None = None  # cut the weight bytes by this many percent
    # policy
    # weight precision: auto (the engine chooses, see prune/precision.py) | fp32 | int8 | int4
    precision: str = "auto"
    policy: str = "prioritized"  # prioritized | uniform
    allocation: str = "proportional"  # proportional | greedy (prioritized policy)
    ladder: tuple[float, ...] = LADDER  # rates profiled per group
    # validation (decisions) and test (reporting) images
    profile_samples: int = 1000  # validation images per sensitivity cell
    check_samples: int = 2500  # validation images to check each applied step
    test_samples: int | None = None  # test images for the reported accuracy (None: all)
    # fine-tuning
    finetune_epochs: float = 0  # after pruning (and between stages when one shot fails)
    finetune_samples: int = 20000  # training images
    finetune_lr: float = 5e-4
    finetune_seed: int = 99  # the final fine-tune; recovery fine-tunes use the stage number
    recovery_epochs: float = 1.0  # between stages
    stage_shrink: float = 0.72  # each stage aims for this fraction of the current weights
    # latency: predicted instructions per inference at the board's clock, one per cycle
    max_latency_ms: float | None = None
    latency_samples: int = 50  # validation images the instructions are predicted on

    @classmethod
    def from_args(cls, args, **overrides) -> PruneOptions:
        """The options from an argparse namespace (attributes named like the fields;
        missing ones keep their defaults), then ``overrides``."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if hasattr(args, f.name)}
        values.update(overrides)
        if values.get("ladder") is not None:
            values["ladder"] = tuple(values["ladder"])
        return cls(**values)

    def budget(self, baseline_weight_bytes: int | None = None,
               latency_images: torch.Tensor | None = None) -> tuple[Board | None, Budget]:
        """(board or None, the Budget): the board's flash and SRAM budgets, overridden by
        ``target_flash``/``target_sram``; ``max_reduction`` caps the weights at that cut of
        ``baseline_weight_bytes``; ``max_latency_ms`` adds the board's clock times it, as
        instructions predicted on ``latency_images`` with the board's kernel costs."""
        # the numbers were range-checked while parsing (cli_args); sizes are already bytes
        board = load_board(self.board) if self.board else None
        if board is None and not (self.target_flash or self.target_sram or self.max_reduction):
            raise SvtError("give --board, or a budget with --target-flash/--target-sram/"
                           "--max-reduction")
        flash = board.flash_budget if board else None
        sram = board.sram_budget if board else None
        source = [f"board {board.name}"] if board else []
        if self.target_flash:
            flash = self.target_flash
            source.append("--target-flash")
        if self.target_sram:
            sram = self.target_sram
            source.append("--target-sram")
        if self.max_reduction is not None:
            target = int(baseline_weight_bytes * (1 - self.max_reduction / 100))
            flash = target if flash is None else min(flash, target)
            source.append(f"--max-reduction {self.max_reduction:g}%")
        latency = predictor = None
        if self.max_latency_ms is not None:
            latency, costs = latency_budget(board, self.max_latency_ms)
            source.append("--max-latency-ms")
            if latency_images is not None:
                predictor = LatencyPredictor(costs, latency_images)
        return board, Budget(flash, sram, self.max_drop, " + ".join(source), latency, predictor)


def latency_budget(board: Board | None, max_ms: float):
    """(the LatencyBudget, the kernel costs it is predicted with) of ``--max-latency-ms``
    on ``board``: one line when the board has no clock or no usable costs."""
    if board is None or board.is_host:
        raise SvtError("--max-latency-ms needs --board (its clock and its kernel costs)")
    if not board.clock_hz:
        raise SvtError(f"board {board.name} has no clock_hz; --max-latency-ms needs one")
    return LatencyBudget(max_ms, board.clock_hz), usable_costs(board)
