"""torch.distributed plumbing for corpus evaluation: init from the torchrun environment, collectives.

``torchrun --nproc_per_node N -m logitscope eval ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) set; :func:`init_from_env`
joins them into one process group (NCCL when CUDA is available, else gloo). Every rank reads the
same window sequence and keeps windows ``i % world_size == rank``; sums are all-reduced and
per-window rows all-gathered, so every rank ends with the single-process result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass
class DistContext:
    """Where this process sits in the job. A single process is ``rank=0, world_size=1``.

    Attributes:
        rank: global rank, 0..world_size-1.
        world_size: number of processes.
        local_rank: rank on this node (picks the GPU).
        backend: ``"gloo"``, ``"nccl"``, or ``None`` when not distributed.
        device: device for collectives (``cuda:LOCAL_RANK`` with NCCL, else ``cpu``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and shows progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def owns(self, index: int) -> bool:
        """Round-robin sharding: window ``index`` belongs to rank ``index % world_size``."""
        return index % self.world_size == self.rank

    def all_reduce_sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum of a float64/int64 array over all ranks (identity when single)."""
        if not self.enabled:
            return array
        import torch
        import torch.distributed as dist

        t = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def all_gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order (``[obj]`` when single)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(backend: str | None = None) -> DistContext:
    """Join the process group torchrun described in the environment, or return a single context.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default NCCL when CUDA is available, else gloo.

    With CUDA, the current device becomes ``cuda:LOCAL_RANK`` (load the model there).
    """
    world = env_world_size()
    if world <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend, device=device)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op when single)."""
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def model_device(ctx: DistContext, requested: str | None) -> str | None:
    """The device to load this rank's model copy on: ``cuda:LOCAL_RANK`` under multi-GPU torchrun."""
    if ctx.enabled and requested in (None, "auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{ctx.local_rank}"
        return "cpu" if requested in (None, "auto") else requested
    return requested
