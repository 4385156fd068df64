"""Data-parallel training on ``torch.distributed`` (issue 17): ``torchrun --nproc-per-node N -m nerfstage train``.

Every rank holds the whole model and the whole training set and draws its own rays (its batcher seeded ``seed +
RANK_SEED_STRIDE * rank``; rank 0 draws exactly what a one-process run draws). The configured batch is the **job's**
batch: each rank takes ``batch_rays / N`` rays (and ``target_samples / N`` samples), so N ranks at equal steps
process the same total samples as one. After each backward pass the gradients of every parameter are averaged with
**one coalesced all-reduce** of the values (all grads flattened into one buffer: one collective per step, not one
per tensor). The hash tables' gradients are dense tensors in our kernels (``nerf/encoding``), but a step touches
only part of a fine level's rows. ``TrainConfig.allreduce`` picks how they travel: "bfloat16" (the default: the
dense buffer in bfloat16, as PyTorch's bf16 compression hook; half the bytes), "float32" (exact), or "row-sparse"
(tables and per-image embeddings: a 1-byte-per-row mask of the rows any rank touched is all-reduced first (max),
then only those rows travel; exactly the dense average for a fraction of the bytes, but its indexing costs more CPU
than the bytes it saves between two processes of one machine: benchmarks/RESULTS.md, issue 17).
``DataParallel.bytes_per_step`` is the volume (mask + values) and ``comm_seconds`` its measured cost
(``benchmarks/scale_train.py``, ``docs/scale.md``). Identical gradients and identical Adam steps keep the parameters
identical on all ranks; the occupancy grid is broadcast from rank 0 after each of its updates, so it is identical
too (it is also computed identically: same parameters, same seeded generator). Rank 0 alone writes config,
checkpoints and metrics; a checkpoint also holds every rank's batcher state, so all ranks resume from it. gloo on
CPU, NCCL on CUDA (``core.shards.init_process_group``).
"""

from __future__ import annotations

import time

import torch

from ..core.shards import world_from_env

RANK_SEED_STRIDE = 7919
"""Seed offset between ranks' ray batchers (a prime; rank 0 keeps the configured seed)."""


SPARSE_MIN_ROWS = 4096
"""In the "row-sparse" mode, 2-D parameters with at least this many rows (hash-grid tables, per-image embeddings)
travel row-sparsely: a step touches a fraction of a fine level's rows, and the mask costs 1 byte per row against 4
bytes per row per feature for the values."""


def per_rank(total: int, world_size: int) -> int:
    """A rank's share of a job-wide count (rays, samples): ``total / world_size``, at least 1 (0 stays 0)."""
    return 0 if total <= 0 else max(1, int(total) // int(world_size))


class DataParallel:
    """The collectives of one data-parallel training job (a no-op object for one process)."""

    def __init__(self, mode: str = "bfloat16"):
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        self.mode = mode
        """``TrainConfig.allreduce``: "bfloat16", "float32" or "row-sparse"."""
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
        """Average the gradients of ``params`` over the ranks in one all-reduce of one flat buffer (missing grads
        count as zeros), in ``self.mode`` (see ``TrainConfig.allreduce``). Every rank ends with the same values."""
        if not self.active:
            return
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        start = time.perf_counter()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        tall = [self.mode == "row-sparse" and g.ndim == 2 and g.shape[0] >= SPARSE_MIN_ROWS for g in grads]
        rows = self._touched_rows([g for g, t in zip(grads, tall) if t])
        rows_iter = iter(rows)
        pieces = [g[next(rows_iter)].reshape(-1) if t else g.reshape(-1) for g, t in zip(grads, tall)]
        flat = torch.cat(pieces)  # [dense sizes + touched rows * row size]
        wire = flat.to(torch.bfloat16) if self.mode == "bfloat16" else flat
        dist.all_reduce(wire)
        flat = wire.to(flat.dtype) if wire is not flat else flat
        flat /= self.world_size
        offset, rows_iter = 0, iter(rows)
        for p, g, t in zip(params, grads, tall):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if t:
                index = next(rows_iter)  # [K]
                n = index.numel() * g.shape[1]
                p.grad.zero_()
                p.grad[index] = flat[offset:offset + n].view(-1, g.shape[1])
            else:
                n = g.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p))
            offset += n
        mask_bytes = sum(g.shape[0] for g, t in zip(grads, tall) if t)
        self.bytes_per_step = wire.numel() * wire.element_size() + mask_bytes
        self.comm_seconds += time.perf_counter() - start
        self.steps += 1

    def _touched_rows(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """For each tall gradient [R_i, C], the indices [K_i] of the rows that are non-zero on any rank (one
        all-reduce (max) of a [sum R_i] uint8 mask; identical on every rank)."""
        if not grads:
            return []
        import torch.distributed as dist  # heavy: torch.distributed (only when training)

        mask = torch.cat([(g != 0).any(dim=1) for g in grads]).to(torch.uint8)  # [sum R_i]
        dist.all_reduce(mask, op=dist.ReduceOp.MAX)
        return [m.nonzero().squeeze(1) for m in torch.split(mask.bool(), [g.shape[0] for g in grads])]

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
