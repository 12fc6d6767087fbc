"""Where the PyTorch work runs: the device, and the ranks of a ``torchrun`` launch.

One process-wide ``Runtime``: ``configure()`` sets it from the CLI options, and
``current()`` hands it to evaluation, profiling and fine-tuning. Under ``torchrun
--nproc_per_node N`` (which sets RANK / WORLD_SIZE / MASTER_ADDR), ``configure`` joins the
process group (gloo on CPU, NCCL on GPUs; multi-node through torchrun's own rendezvous):

- sensitivity-profile cells are shared out through the group's key-value store (a counter
  every rank draws the next group from), then gathered on every rank;
- accuracy checks shard their images across ranks and add up the correct counts, so every
  rank gets the single-process number exactly;
- fine-tuning wraps the model in DistributedDataParallel, each rank taking its slice of
  every global batch;
- only rank 0 writes outputs.
Every rank runs the same pruning decisions on the same numbers, so the plan is the
single-process plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import SvtError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    batch_size: int = 250  # evaluation batch

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (the first ranks take one more)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def all_sum(self, value: int) -> int:
        if not self.distributed:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(t)
        return int(t.item())

    def all_gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def all_true(self, flag: bool) -> bool:
        """``flag`` held on every rank: for choices (reuse a cache file or not) that every
        rank must make alike, or they would wait on each other's collectives forever."""
        return all(self.all_gather(bool(flag)))

    def next_ticket(self, counter: str) -> int:
        """0, 1, 2, ... across all ranks: a shared work queue (the process group's store)."""
        if not self.distributed:
            raise AssertionError("tickets are for distributed runs")
        from torch.distributed import distributed_c10d

        return int(distributed_c10d._get_default_store().add(counter, 1)) - 1

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


_CURRENT = Runtime(torch.device("cpu"))


def current() -> Runtime:
    return _CURRENT


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SvtError("--device cuda: PyTorch sees no CUDA GPU on this machine (CPU-only "
                       "build or no driver); use --device cpu")
    if name not in ("cpu", "cuda"):
        raise SvtError(f"--device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def configure(device: str = "auto", batch_size: int = 250) -> Runtime:
    """Set the process-wide runtime; join the torchrun process group when launched by it."""
    global _CURRENT
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        if not dist.is_initialized():
            try:
                dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            except (RuntimeError, ValueError) as e:
                raise SvtError(f"joining the torchrun process group failed "
                               f"({str(e).splitlines()[0][:120]}); launch with torchrun "
                               "--nproc_per_node N, or run without torchrun") from None
    _CURRENT = Runtime(dev, rank, world, batch_size)
    return _CURRENT
