"""Where a data-parallel step's communication time goes (issue 17): 2 gloo ranks x 1 thread all-reduce
preview-sized hash-table gradients (16 levels, at most 2^17 rows x 2 features; a fraction of the finest levels'
rows touched) the three ways ``TrainConfig.allreduce`` offers, and print milliseconds per step for each part:
dense float32 (cat + all-reduce), row-sparse (mask, mask all-reduce, nonzero, gather, values all-reduce, scatter)
and the values in bfloat16. Run alone: ``python benchmarks/allreduce_parts.py [--touched 0.1 0.4]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROUNDS, WARM_UP = 12, 2


def _tables(rank: int, touched: float) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(rank)
    sizes = [min(2**17, (16 * int(1.38**level)) ** 3) for level in range(16)]
    grads = []
    for size in sizes:
        grad = torch.zeros(size, 2)
        count = int(size * touched) if size == 2**17 else size
        grad[torch.randperm(size, generator=gen)[:count]] = torch.randn(count, 2, generator=gen)
        grads.append(grad)
    return grads


def _worker(rank: int, touched: float, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    grads = _tables(rank, touched)
    sizes = [g.shape[0] for g in grads]
    times: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        times[name] = times.get(name, 0.0) + time.perf_counter() - since
        return time.perf_counter()

    for round_ in range(ROUNDS):
        if round_ == WARM_UP:
            times.clear()
        dist.barrier()
        t = time.perf_counter()
        flat = torch.cat([g.reshape(-1) for g in grads])
        t = lap("dense cat", t)
        dist.all_reduce(flat)
        t = lap("dense all-reduce", t)
        mask = torch.cat([(g != 0).any(dim=1) for g in grads]).to(torch.uint8)
        t = lap("mask", t)
        dist.all_reduce(mask, op=dist.ReduceOp.MAX)
        t = lap("mask all-reduce", t)
        rows = [m.nonzero().squeeze(1) for m in torch.split(mask.bool(), sizes)]
        t = lap("nonzero", t)
        values = torch.cat([g[r].reshape(-1) for g, r in zip(grads, rows)])
        t = lap("gather", t)
        dist.all_reduce(values)
        t = lap("values all-reduce", t)
        offset = 0
        for g, r in zip(grads, rows):
            out = torch.zeros_like(g)
            out[r] = values[offset:offset + 2 * r.numel()].view(-1, 2)
            offset += 2 * r.numel()
        t = lap("scatter", t)
        dense16 = flat.to(torch.bfloat16)
        dist.all_reduce(dense16)
        lap("dense bfloat16 cast + all-reduce", t)
    if rank == 0:
        parts = ", ".join(f"{k} {1e3 * v / (ROUNDS - WARM_UP):.1f}" for k, v in times.items())
        print(f"touched {touched:.0%}: dense {flat.numel() * 4 / 1e6:.1f} MB, row-sparse values "
              f"{values.numel() * 4 / 1e6:.1f} MB + mask {mask.numel() / 1e6:.1f} MB; ms per step: {parts}")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--touched", type=float, nargs="+", default=[0.1, 0.4])
    args = parser.parse_args()
    for touched in args.touched:
        mp.spawn(_worker, args=(touched, _free_port()), nprocs=2)


if __name__ == "__main__":
    main()
