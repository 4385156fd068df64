"""Fast CPU backend: a small C++ extension (``hashgrid_cpu.cpp``) built on first use and cached.

The extension is :data:`BACKEND`, a :class:`nerfstage.core.native.LazyBackend`: compiled with the system C++
compiler the first time it is loaded (about 30 s), never at import, and cached in ``$TORCH_EXTENSIONS_DIR``
under a name keyed by the source, flags, include paths, torch/Python versions and CPU (``core/native.py``).
If the build fails (no compiler, no ninja, compile error) ``BACKEND.load()`` raises ``BackendUnavailable`` and
``BACKEND.available(fallback)`` is False after one warning; the hash grid then runs the torch reference.
"""

from __future__ import annotations

from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from ...core.native import InlineCpp, inline_extension
from .layout import LevelSpec

SOURCE = Path(__file__).with_name("hashgrid_cpu.cpp")
EXTENSION_PREFIX = "nerfstage_hashgrid_cpu"
SPEC = InlineCpp(
    prefix=EXTENSION_PREFIX,
    source=SOURCE,
    functions=("hashgrid_forward", "hashgrid_backward_tables", "hashgrid_backward_positions"),
    cflags=("-O3", "-march=native", "-ffp-contract=off", "-fopenmp"),
    ldflags=("-fopenmp",),
)
BACKEND = inline_extension("the C++ hash grid", SPEC)


def _level_args(specs: list[LevelSpec]) -> tuple[list[float], list[int], list[int], list[int]]:
    return (
        [s.scale for s in specs],
        [s.resolution for s in specs],
        [s.size for s in specs],
        [int(s.hashed) for s in specs],
    )


class _HashGridCpu(torch.autograd.Function):
    """Autograd wrapper: the table gradient and (when asked for) the position gradient come from the kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, specs: list[LevelSpec], *tables: Tensor) -> Tensor:  # type: ignore[override]
        ext = BACKEND.load()
        args = _level_args(specs)
        ctx.save_for_backward(x, *tables)
        ctx.level_args = args
        return ext.hashgrid_forward(x, list(tables), *args)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, *tables = ctx.saved_tensors
        ext = BACKEND.load()
        grad_out = grad_out.contiguous()
        grad_tables: list[Tensor | None] = [None] * len(tables)
        if any(ctx.needs_input_grad[2:]):
            grad_tables = list(ext.hashgrid_backward_tables(x, grad_out, tables, *ctx.level_args))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = ext.hashgrid_backward_positions(x, grad_out, tables, *ctx.level_args)
        return (grad_x, None, *grad_tables)


def encode(x: Float[Tensor, "n 3"], tables: list[Tensor], specs: list[LevelSpec]) -> Float[Tensor, "n d"]:
    """All levels on the CPU (float32, ``x`` in [0, 1]^3); same output layout as ``reference.encode``."""
    return _HashGridCpu.apply(x.contiguous(), specs, *tables)
