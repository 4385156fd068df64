"""Data-parallel training on ``torch.distributed`` (issue 17): ``torchrun --nproc-per-node N -m nerfstage train``.

Every rank holds the whole model and the whole training set and draws its own rays (its batcher seeded
``seed + RANK_SEED_STRIDE * rank``; rank 0 draws exactly what a one-process run draws). The configured batch is
the **job's** batch: each rank takes ``batch_rays / N`` rays (and ``target_samples / N`` samples), so N ranks at
equal steps process the same total samples as one. After each backward pass the gradients of every parameter
are averaged with **one coalesced all-reduce** (all grads flattened into one buffer: one collective per step, not
one per tensor). The hash tables' gradients are dense tensors in our kernels (``nerf/encoding``: the C++ and torch
paths write a full-size gradient), so they are reduced densely; ``DataParallel.bytes_per_step`` is that volume and
``comm_seconds`` its measured cost (``benchmarks/scale_train.py``, ``docs/scale.md``). Identical gradients and
identical Adam steps keep the parameters identical on all ranks; the occupancy grid is broadcast from rank 0
after each of its updates, so it is identical too (it is also computed identically: same parameters, same
seeded generator). Rank 0 alone writes config, checkpoints and metrics; a checkpoint also holds every rank's
batcher state, so all ranks resume from it. gloo on CPU, NCCL on CUDA (``core.shards.init_process_group``).
"""

from __future__ import annotations

import time

import torch

from ..core.shards import world_from_env

RANK_SEED_STRIDE = 7919
"""Seed offset between ranks' ray batchers (a prime; rank 0 keeps the configured seed)."""


def per_rank(total: int, world_size: int) -> int:
    """A rank's share of a job-wide count (rays, samples): ``total / world_size``, at least 1 (0 stays 0)."""
    return 0 if total <= 0 else max(1, int(total) // int(world_size))


class DataParallel:
    """The collectives of one data-parallel training job (a no-op object for one process)."""

    def __init__(self):
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        self.rank, self.world_size = world_from_env()
        self.active = self.world_size > 1 and dist.is_available() and dist.is_initialized()
        self.comm_seconds = 0.0
        """Seconds spent in the gradient all-reduce so far."""
        self.bytes_per_step = 0
        """Bytes of gradient each rank all-reduces per step."""
        self.steps = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Parameters and buffers of rank 0 on every rank (start of training)."""
        if not self.active:
            return
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Average the gradients of ``params`` over the ranks with one all-reduce of one flat buffer (missing
        grads count as zeros)."""
        if not self.active:
            return
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        start = time.perf_counter()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # [sum of sizes]
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is None:
                p.grad = flat[offset:offset + n].view_as(p).clone()
            else:
                p.grad.copy_(flat[offset:offset + n].view_as(p))
            offset += n
        self.bytes_per_step = flat.numel() * flat.element_size()
        self.comm_seconds += time.perf_counter() - start
        self.steps += 1

    def broadcast_buffers(self, module: torch.nn.Module | None) -> None:
        """``module``'s buffers from rank 0 (the occupancy grid after an update)."""
        if not self.active or module is None:
            return
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (one small all-reduce): a joint stop decision."""
        if not self.active:
            return flag
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks (every rank gets it)."""
        if not self.active:
            return float(value)
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        tensor = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def gather(self, obj):
        """Every rank's ``obj`` as a list indexed by rank (all ranks get it)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def share(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist  # heavy: torch.distributed (only when training)

            dist.barrier()
