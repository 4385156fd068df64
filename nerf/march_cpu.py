"""Compiled CPU marcher for inference (``march_cpu.cpp``), built on first use and cached like the hash grid's.

The only module that loads the extension (:data:`BACKEND`, a :class:`nerfstage.core.native.LazyBackend`). It is
compiled with the system C++ compiler the first time it is loaded (about 20 s), never at import, and cached in
``$TORCH_EXTENSIONS_DIR`` under a name keyed by the source, flags, include paths, torch/Python versions and CPU
(``core/native.py``). When it cannot be built, :func:`available` is False and ``nerf/inference.py`` uses its
pure-torch marcher, after one warning.
"""

from __future__ import annotations

from pathlib import Path

from jaxtyping import Float, Int
from torch import Tensor

from ..core.native import InlineCpp, inline_extension
from .occupancy import OccupancyGrid
from .sampler import StepWarp

SOURCE = Path(__file__).with_name("march_cpu.cpp")
SPEC = InlineCpp(prefix="nerfstage_march_cpu", source=SOURCE, functions=("march_next",),
                 cflags=("-O3", "-march=native", "-ffp-contract=off"))
BACKEND = inline_extension("the C++ ray marcher", SPEC)


def available() -> bool:
    """True when the extension is built or builds now (warns once, with the reason, when it cannot)."""
    return BACKEND.available("using the slower pure-torch inference marcher")


def march_next(
    origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], s: Float[Tensor, "n"], s_end: Float[Tensor, "n"],
    grid: OccupancyGrid, warp: StepWarp, k: int,
) -> tuple[Float[Tensor, "n k"], Float[Tensor, "n k"], Int[Tensor, "n"], Float[Tensor, "n"]]:
    """From step start ``s``: the next (at most) ``k`` occupied steps before ``s_end`` of each ray, as
    (t_starts [n, k], t_ends [n, k], count [n], next step start [n]); see ``march_cpu.cpp``."""
    t_switch = warp.t_switch if warp.cone > 0 else 0.0
    return BACKEND.load().march_next(
        origins.float(), directions.float(), s.float(), s_end.float(), grid.occupied, grid.coarse.reshape(-1),
        grid.center, grid.half_size, grid.resolution, grid.coarse_factor, warp.step, warp.cone, t_switch, int(k),
    )
