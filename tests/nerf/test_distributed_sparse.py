"""Issue 17: the row-sparse all-reduce of hash-table gradients equals the dense average exactly, on two gloo
ranks, for a fraction of the bytes."""

from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp

ROWS, FEATURES = 20_000, 2
TOUCHED = 1_500  # rows each rank touches


def _grads(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s gradients: a hash-table-like [ROWS, F] with TOUCHED non-zero rows, a dense [16, 8]."""
    gen = torch.Generator().manual_seed(100 + rank)
    table = torch.zeros(ROWS, FEATURES)
    rows = torch.randperm(ROWS, generator=gen)[:TOUCHED]
    table[rows] = torch.randn(TOUCHED, FEATURES, generator=gen)
    table[rows[:10], 0] = 0.0  # a touched row with one zero feature still travels
    return table, torch.randn(16, 8, generator=gen)


def _worker(rank: int, world: int, init: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from nerfstage.nerf.distributed import DataParallel

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    table, dense = (torch.nn.Parameter(torch.zeros_like(g)) for g in _grads(rank))
    table.grad, dense.grad = _grads(rank)
    missing = torch.nn.Parameter(torch.zeros(ROWS, FEATURES))  # no gradient on this rank: counts as zeros
    dp = DataParallel()
    dp.average_gradients([table, dense, missing])
    torch.save({"table": table.grad, "dense": dense.grad, "missing": missing.grad, "bytes": dp.bytes_per_step},
               f"{out}.{rank}")
    dist.destroy_process_group()


def test_row_sparse_all_reduce_is_the_dense_average(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, f"file://{tmp_path / 'store'}", str(tmp_path / "grads")), nprocs=world)
    results = [torch.load(f"{tmp_path / 'grads'}.{r}", weights_only=True) for r in range(world)]
    expected = [sum(g) / world for g in zip(*(_grads(r) for r in range(world)))]
    for got in results:
        assert torch.equal(got["table"], expected[0])  # exact: the same sums as the dense reduction
        assert torch.equal(got["dense"], expected[1])
        assert torch.equal(got["missing"], torch.zeros(ROWS, FEATURES))
    dense_bytes = 4 * (2 * ROWS * FEATURES + 16 * 8)
    # values of at most 2 * TOUCHED rows + the dense tensor, and a 1-byte mask per row of the two tables
    assert results[0]["bytes"] <= 4 * (2 * TOUCHED * FEATURES + 16 * 8) + 2 * ROWS
    assert results[0]["bytes"] < dense_bytes / 4
