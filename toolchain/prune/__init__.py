"""PrimeSVT pruning (arXiv 2606.03428): prioritized, memory-aware structured pruning.

One idea per module:

- ``groups``: which channels are coupled (channel spaces of the IR, tied by the model's
  forward), and cutting a group out of the model (physical surgery, verified);
- ``importance``: the L2 ranking of units (BN-folded weights);
- ``profile``: sensitivity profiling on the validation split, cached through StageCache;
- ``policies``: allocation rules (proportional / greedy drop shares) and the uniform rate;
- ``pruner``: the prioritized loop with back-off, staged pruning and fine-tuning;
- ``options``: the typed options of the prune stage (``PruneOptions``) and its ``Budget``;
- ``outputs``: the table, prune_plan.json and the pruned model.

Decisions use a validation split carved from the training data; the test split is only
used to report.
"""

from .groups import (Group, discover_groups, group_units, keep_count, prune_group, prune_space,
                     pruned_copy, single_space_groups, sized_groups, touching_params,
                     touching_steps)
from .importance import SYNAPTIC, ranked_units, unit_importance
from .options import LADDER, Budget, PruneOptions
from .outputs import (format_table, latency_json, layer_rows, plan_json, summarize_groups,
                      write_outputs)
from .policies import (ALLOCATIONS, POLICIES, State, allocation_passes, drop_limit, drop_points,
                       state_of, uniform_rate_state)
from .profile import NOISE_ALLOWANCE, ProfileOptions, Validator, profile_key, profile_sensitivity
from .pruner import PruneResult, Pruner, prioritized, prioritized_pass, ranked_groups

__all__ = [
    "ALLOCATIONS", "LADDER", "NOISE_ALLOWANCE", "POLICIES", "SYNAPTIC", "Budget", "Group",
    "ProfileOptions", "PruneOptions", "PruneResult", "Pruner", "State", "Validator",
    "allocation_passes", "discover_groups", "drop_limit", "drop_points", "format_table",
    "group_units", "keep_count", "latency_json", "layer_rows", "plan_json", "prioritized",
    "prioritized_pass", "profile_key", "profile_sensitivity", "prune_group", "prune_space",
    "pruned_copy", "ranked_groups", "ranked_units", "single_space_groups", "sized_groups",
    "state_of", "summarize_groups", "touching_params", "touching_steps", "uniform_rate_state",
    "unit_importance", "write_outputs",
]
