"""Compiled CPU marcher for inference (``march_cpu.cpp``), built on first use and cached like the hash grid's.

The only module that loads the extension. It is compiled with the system C++ compiler through
``torch.utils.cpp_extension.load_inline`` the first time :func:`load` is called (about 20 s), never at import, and
cached in torch's extension folder under a name that hashes the source, the flags, the torch/python versions and
the CPU's instruction set (the hash-grid backend's build helpers). When it cannot be built, :func:`available`
is False and ``nerf/inference.py`` uses its pure-torch marcher, after one warning.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from types import ModuleType

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .encoding import cpp as hashgrid_cpp
from .occupancy import OccupancyGrid
from .sampler import StepWarp

SOURCE = Path(__file__).with_name("march_cpu.cpp")
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off"]

_extension: ModuleType | None = None
_failure: str | None = None


def _build() -> ModuleType:
    source = SOURCE.read_text()
    name = hashgrid_cpp.extension_name(source, "nerfstage_march_cpu", CFLAGS)
    return hashgrid_cpp.compile_inline(name, source, ["march_next"], CFLAGS, [], "C++ ray marcher")


def load() -> ModuleType:
    """The built extension (built on the first call); raises ``BackendUnavailable`` (cached) when it cannot."""
    global _extension, _failure
    if _extension is not None:
        return _extension
    if _failure is not None:
        raise hashgrid_cpp.BackendUnavailable(_failure)
    try:
        _extension = _build()
    except (ImportError, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _failure = f"building the C++ ray marcher failed ({type(exc).__name__}: {first_line})"
        raise hashgrid_cpp.BackendUnavailable(_failure) from exc
    return _extension


def available() -> bool:
    """True when the extension is built or builds now (warns once, with the reason, when it cannot)."""
    try:
        load()
    except hashgrid_cpp.BackendUnavailable as exc:
        if _failure is not None and not getattr(available, "warned", False):
            available.warned = True  # type: ignore[attr-defined]
            warnings.warn(f"{exc}; using the slower pure-torch inference marcher", RuntimeWarning, stacklevel=2)
        return False
    return True


def march_next(
    origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], s: Float[Tensor, "n"], s_end: Float[Tensor, "n"],
    grid: OccupancyGrid, warp: StepWarp, k: int,
) -> tuple[Float[Tensor, "n k"], Float[Tensor, "n k"], Int[Tensor, "n"], Float[Tensor, "n"]]:
    """From step start ``s``: the next (at most) ``k`` occupied steps before ``s_end`` of each ray, as
    (t_starts [n, k], t_ends [n, k], count [n], next step start [n]); see ``march_cpu.cpp``."""
    t_switch = warp.t_switch if warp.cone > 0 else 0.0
    return load().march_next(
        origins.float(), directions.float(), s.float(), s_end.float(), grid.occupied, grid.coarse.reshape(-1),
        grid.center, grid.half_size, grid.resolution, grid.coarse_factor, warp.step, warp.cone, t_switch, int(k),
    )
