"""Issue 17: the gradient all-reduce modes on two gloo ranks: float32 and row-sparse (hash-table rows some rank
touched) give exactly the dense average, row-sparse for a fraction of the bytes; bfloat16 gives it within
bfloat16's rounding, in half the bytes, identical on every rank."""

from __future__ import annotations

import os

import pytest
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


def _worker(rank: int, world: int, init: str, out: str, mode: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from nerfstage.nerf.distributed import DataParallel

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    table, dense = (torch.nn.Parameter(torch.zeros_like(g)) for g in _grads(rank))
    table.grad, dense.grad = _grads(rank)
    missing = torch.nn.Parameter(torch.zeros(ROWS, FEATURES))  # no gradient on this rank: counts as zeros
    dp = DataParallel(mode)
    dp.average_gradients([table, dense, missing])
    torch.save({"table": table.grad, "dense": dense.grad, "missing": missing.grad, "bytes": dp.bytes_per_step},
               f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.parametrize("mode", ["float32", "row-sparse", "bfloat16"])
def test_all_reduce_modes_give_the_dense_average(mode, tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, f"file://{tmp_path / 'store'}", str(tmp_path / "grads"), mode), nprocs=world)
    results = [torch.load(f"{tmp_path / 'grads'}.{r}", weights_only=True) for r in range(world)]
    expected = [sum(g) / world for g in zip(*(_grads(r) for r in range(world)))]
    for got in results:
        assert torch.equal(got["missing"], torch.zeros(ROWS, FEATURES))
        assert torch.equal(got["table"], results[0]["table"]) and torch.equal(got["dense"], results[0]["dense"])
        if mode == "bfloat16":  # 8-bit mantissa: each operand and the sum rounded by <= 2**-8 of themselves
            for k, (value, want) in enumerate(zip((got["table"], got["dense"]), expected)):
                scale = sum(g[k].abs() for g in (_grads(r) for r in range(world))) / world  # mean |operand|
                assert bool(((value - want).abs() <= 2**-7 * scale + 1e-7).all())
                assert bool((value[scale == 0] == 0).all())  # untouched rows stay exactly zero
        else:
            assert torch.equal(got["table"], expected[0])  # exact: the same sums as the dense reduction
            assert torch.equal(got["dense"], expected[1])
    dense_bytes = 4 * (2 * ROWS * FEATURES + 16 * 8)
    sent = results[0]["bytes"]
    if mode == "row-sparse":  # values of at most 2 * TOUCHED rows + the dense tensor, a 1-byte mask per table row
        assert sent <= 4 * (2 * TOUCHED * FEATURES + 16 * 8) + 2 * ROWS
        assert sent < dense_bytes / 4
    else:
        assert sent == dense_bytes // (2 if mode == "bfloat16" else 1)
