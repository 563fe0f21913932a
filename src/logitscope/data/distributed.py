"""Processes and devices for corpus evaluation: torchrun init, collectives, memory-based sizing.

``torchrun --nproc_per_node N -m logitscope eval ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) set; :func:`init_from_env`
joins them into one process group (NCCL when CUDA is available, else gloo). Every rank reads the
same window sequence and keeps windows ``i % world_size == rank``; sums are all-reduced and
per-window rows all-gathered, so every rank ends with the single-process result.

:func:`auto_batch_size` and :func:`eval_chunk_rows` size the work of one process from the free
memory of its device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..arch.registry import residual_width

EVAL_CHUNK_ROWS = 1024  # kernel rows per projection evaluation aims for (see eval_chunk_rows)
KERNEL_BYTES = 9.3  # kernel work memory per logit of a chunk (kernel.stream_stats docstring)


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


def free_memory(device) -> int:
    """Free bytes on ``device``: ``torch.cuda.mem_get_info`` on GPUs, available RAM otherwise."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def eval_chunk_rows(scope) -> int:
    """Kernel rows per projection: the Scope's ``chunk_size`` raised towards :data:`EVAL_CHUNK_ROWS`.

    Every projection streams the whole head matrix from memory, so evaluation (throughput-bound)
    uses large chunks, as long as one (``9.3 × rows × vocab`` bytes) fits in 10% of free memory.
    """
    V = scope.require_head().vocab_size
    fit = int(0.1 * free_memory(scope.require_head().head_device) / (KERNEL_BYTES * V))
    return max(scope.chunk_size, min(EVAL_CHUNK_ROWS, fit))


def auto_batch_size(scope, seq_len: int, chunk_rows: int, *, share: float = 0.4) -> int:
    """Windows per forward from a memory budget (see docs/eval.md, "Batch size").

    ``budget = share × free memory of the input device − kernel chunk``; one window costs
    ``seq_len × ((2(L+1) + 12) · d · e + heads · seq_len · 4)`` bytes (captured streams and their
    stacked copy, a block's activations, fp32 attention scores; ``e`` = bytes per model element).
    Clamped to 1..64 on GPUs and 1..8 on CPUs (larger CPU batches do not run faster). A streamed
    model (blocks read from disk, :mod:`logitscope.stream`) makes one pass over the disk per
    batch, so its batch is as many windows as memory holds (:func:`streamed_batch_size`).
    """
    scope.require_head()
    streamed = streamed_batch_size(scope, seq_len, chunk_rows, share=share)
    if streamed is not None:
        return streamed
    per_window = window_bytes(scope, seq_len)
    dev = scope.input_device
    budget = share * free_memory(dev) - KERNEL_BYTES * chunk_rows * scope.parts.vocab_size
    return int(min(64 if dev.type == "cuda" else 8, max(1, budget // per_window)))


STREAMED_MAX_WINDOWS = 4096  # windows per forward of a streamed model, at most


def window_bytes(scope, seq_len: int) -> int:
    """Bytes one window of ``seq_len`` tokens costs a captured forward (see :func:`auto_batch_size`)."""
    if seq_len < 1:
        from ..errors import InputError

        raise InputError(f"seq_len must be at least 1, not {seq_len}")
    cfg, parts = scope.model.config, scope.parts
    d = residual_width(cfg) or 1024
    heads = next((getattr(cfg, k) for k in ("num_attention_heads", "n_head") if getattr(cfg, k, None)), 16)
    e = next(scope.model.parameters()).element_size()
    return seq_len * ((2 * (parts.n_blocks + 1) + 12) * d * e + heads * seq_len * 4)


def streamed_batch_size(scope, seq_len: int, chunk_rows: int, *, share: float = 0.4) -> int | None:
    """Windows per forward for a streamed model (``None`` for any other): all that memory holds.

    Every forward of a streamed model reads every block from disk, so the disk pass is amortised
    over as many windows as fit in ``max_memory`` (when given, else ``share`` × available RAM),
    less the resident parts (head, norms), the one or two blocks in flight and one kernel chunk;
    at most :data:`STREAMED_MAX_WINDOWS`.
    """
    streamer = getattr(scope.model, "_logitscope_streamer", None)
    if streamer is None:
        return None
    per_window = window_bytes(scope, seq_len)
    avail = share * free_memory(scope.input_device)
    budget = getattr(streamer, "budget", None)
    room = avail if budget is None else min(budget, free_memory(scope.input_device))
    room -= getattr(streamer, "resident_bytes", 0) + (2 if streamer.prefetch else 1) * streamer.block_bytes
    room -= KERNEL_BYTES * chunk_rows * scope.parts.vocab_size  # parts, not require_head: no check here
    return int(min(STREAMED_MAX_WINDOWS, max(1, room // per_window)))
