"""Baked density bounds of a trained proposal-sampled field: empty-space skipping at inference.

After training, the densities of every stage of the proposal path (each proposal network, then the radiance field)
are bounded per cell of an ``R``^3 grid over the hash grid's input cube [0, 1]^3 (the contracted space of an
unbounded scene, the scene box of a bounded one): each stage is evaluated on the lattice of half-cell spacing
(``(2 R + 1)``^3 points: every cell's corners, edge and face midpoints and centre), each cell keeps the largest
value of its 27 lattice points, and the result is dilated by ``dilation`` cells (max-pooled) so that peaks between
lattice points are covered, and multiplied by a safety ``margin``. At inference a sample whose cell bound times its interval length is below the skip
threshold has an opacity below that threshold, so its network query is skipped (density taken as 0): see
``fast_proposal.py``.

The grids depend only on the weights, so they are cached beside the run (``RUN/baked_grids.pt``: a plain dict
of tensors and numbers, read with ``torch.load(weights_only=True)``) under a key made of the format version, the
bake options and a SHA-256 digest of the model's parameters; a new checkpoint (or other options) gives another
key and the grids are baked again. A run folder that cannot be written keeps them in memory only.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ..core.errors import CheckpointError

BAKE_VERSION = 1
"""Bumped whenever the baked layout or its meaning changes (older caches are then rebaked)."""
CACHE_NAME = "baked_grids.pt"
"""The cache file inside a run folder."""
DensityFn = Callable[[Tensor], Tensor]
"""Density [m] at positions [m, 3] of the hash grid's unit cube."""


@dataclass(frozen=True)
class BakeOptions:
    """How the per-cell density bounds are baked."""

    resolution: int = 0
    """Cells per side of each grid (over the hash grid's [0, 1]^3), e.g. 128; 0 (default): no grids (nothing
    baked or cached; the fast path then skips no empty space, the rest of it runs). Measured on office_360
    (benchmarks/RESULTS.md): at 128 the proposal networks' fog marks 79 % of the cells occupied, skipping cuts the
    queries from 86 to 76 per ray, but 800x533 frames took 16.9 s with the grids vs 13.9 s without (medians of 3,
    load ~4), and baking costs ~60 s under load on the first render: not worth it by default."""
    dilation: int = 1
    """Cells each bound is spread to in every direction (max-pool), covering peaks between lattice points."""
    margin: float = 1.5
    """Factor on every bound: the field's peaks between lattice points (measured on random hash tables, the
    worst case: up to 4 % above the dilated lattice maxima at 16 cells per side)."""
    batch_points: int = 1 << 18
    """Lattice points evaluated at once (bounds the memory of baking)."""


@dataclass(frozen=True)
class SkipOptions:
    """Thresholds of the fast proposal path (``fast_proposal.py``; ``InferenceOptions.skip``)."""

    skip_opacity: float = 1.0e-4
    """Samples whose baked density bound times interval length is below this are not queried (0: none skipped)."""
    stop_transmittance: float = 1.0e-4
    """Rays stop querying a stage once its transmittance is below this (0: never)."""
    block: int = 8
    """Columns (samples per ray) evaluated per round; the alive test runs between rounds."""
    min_weight: float = 1.0e-4
    """The colour MLP runs only on samples of at least this weight (as ``proposal_inference``)."""
    proposal_fraction: float = 0.75
    """Each proposal network's samples per ray at inference, as a fraction of the trained count (rounded; 1:
    as trained). office_360 (default preset, 64/32 -> 24 trained), held-out PSNR on every 13th pixel of the 8
    held-out views against the trained counts (25.987 dB), and PSNR against the trained counts' image:
    48/24 -> 24 +0.008 dB (45.2 dB); 32/32 -> 24 -0.020 (43.9); 48/24 -> 16 -0.035 (42.6); 48/32 -> 16 -0.029
    (43.1); 64/32 -> 16 -0.018 (43.3); 32/32 -> 16 -0.065 (41.7); 32/24 -> 16 -0.108 (40.6); 32/16 -> 24 -0.128
    (40.0); 32/16 -> 16 -0.225 (38.3); 16/16 -> 16 -1.64 (29.4)."""
    nerf_fraction: float = 2.0 / 3.0
    """The radiance field's samples per ray at inference, as a fraction of the trained count (rounded; 1: as
    trained). Default 48/24 -> 16 of 64/32 -> 24: a network query costs the field about 4 proposal queries."""
    kernel: Literal["auto", "cpp", "torch"] = "auto"
    """Network queries of every stage: "cpp" (``field_cpu.py``: the whole path of a ray in one fused C++ loop --
    hash grids, MLPs, resampling, compositing, colour -- no tensor per stage), "torch" (``_stage_density`` /
    ``_composite``, the reference) or "auto" (default: cpp on CPU float32 tensors when it builds, else torch).
    With baked grids and ``skip_opacity`` > 0 the torch path runs. office_360, 800x533, quiet, 2 threads, medians
    of 3: 6.25 s fused vs 12.02 s torch, frames 106.6 dB apart; 3.85 s fused since its batched, prefetched corner
    reads and vector accumulators (benchmarks/RESULTS.md, issue 14). The
    trained-count path (``inference.proposal = "reference"``: evaluation) uses the fused loop only with "cpp"."""


@dataclass
class BakedGrids:
    """Per-cell upper bounds of each stage's density over [0, 1]^3."""

    resolution: int
    """Cells per side."""
    grids: list[Tensor]
    """One flat [R^3] float32 grid per stage (proposal networks in order, then the radiance field), index
    ``(ix * R + iy) * R + iz``."""
    key: str = ""
    """Cache key the grids were baked under (see :func:`cache_key`)."""

    def cells(self, x: Float[Tensor, "m 3"]) -> Tensor:
        """Flat cell index [m] (int64) of positions in [0, 1]^3 (clamped onto the grid)."""
        r = self.resolution
        i = (x * r).long().clamp_(0, r - 1)
        return (i[:, 0] * r + i[:, 1]) * r + i[:, 2]

    def bound(self, stage: int, x: Float[Tensor, "m 3"]) -> Float[Tensor, "m"]:
        """Upper bound of stage ``stage``'s density at positions ``x`` in [0, 1]^3."""
        grid = self.grids[stage]
        if grid.device != x.device:
            grid = self.grids[stage] = grid.to(x.device)
        return grid.index_select(0, self.cells(x))

    def occupied_fraction(self, stage: int, density: float) -> float:
        """Fraction of the cells whose bound reaches ``density``."""
        return float((self.grids[stage] >= density).float().mean())


def lattice_axis(resolution: int) -> Tensor:
    """The ``2 R + 1`` lattice coordinates along one axis (cell corners and midpoints of [0, 1])."""
    return torch.linspace(0.0, 1.0, 2 * resolution + 1)


@torch.no_grad()
def bake_stage(density: DensityFn, options: BakeOptions, device: torch.device) -> Tensor:
    """Flat [R^3] per-cell bound of one stage's density (lattice maxima, dilated)."""
    axis = lattice_axis(options.resolution).to(device)
    m = len(axis)
    values = torch.empty(m * m * m, device=device)
    plane = m * m
    rows_per_batch = max(1, options.batch_points // plane)
    yz = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)  # [m m, 2]
    for i in range(0, m, rows_per_batch):
        xs = axis[i : i + rows_per_batch]
        points = torch.cat([xs.repeat_interleave(plane)[:, None], yz.repeat(len(xs), 1)], dim=1)  # [b m m, 3]
        values[i * plane : (i + len(xs)) * plane] = density(points).float()
    lattice = values.view(1, 1, m, m, m)
    cells = F.max_pool3d(lattice, kernel_size=3, stride=2)  # [1, 1, R, R, R]: max of each cell's 27 points
    if options.dilation > 0:
        k = 2 * options.dilation + 1
        cells = F.max_pool3d(cells, kernel_size=k, stride=1, padding=options.dilation)
    return (cells.reshape(-1) * options.margin).contiguous()


def stage_densities(model) -> list[DensityFn]:
    """Density functions over [0, 1]^3 of each stage of a proposal-sampled NerfModel (proposal networks, then
    the radiance field without the bounded box's mask, which only lowers it)."""
    field = model.field

    def field_density(x: Tensor) -> Tensor:
        return torch.exp(field.density_mlp(field.encoding(x))[:, 0])

    return [*model.proposal.networks, field_density]


def parameters_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                      if value.numel() else b"")
    return digest.hexdigest()


def cache_key(model: torch.nn.Module, options: BakeOptions) -> str:
    """Version, bake options and the digest of the weights: equal keys mean equal grids."""
    fields = ",".join(f"{k}={v}" for k, v in sorted(asdict(options).items()) if k != "batch_points")
    return f"v{BAKE_VERSION};{fields};{parameters_digest(model)}"


@torch.no_grad()
def bake(model, options: BakeOptions | None = None) -> BakedGrids:
    """Bake the per-cell density bounds of every stage of a proposal-sampled ``model`` (a NerfModel)."""
    options = options or BakeOptions()
    device = model.field.aabb.device
    grids = [bake_stage(fn, options, device) for fn in stage_densities(model)]
    return BakedGrids(options.resolution, grids, cache_key(model, options))


def read_cache(path: Path, key: str) -> BakedGrids | None:
    """The grids cached at ``path`` under ``key``; None when missing, unreadable or baked under another key."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (missing, truncated or foreign file: torch raises many types)
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    grids = [g.float() for g in data.get("grids", [])]
    return BakedGrids(int(data["resolution"]), grids, key)


def write_cache(path: Path, baked: BakedGrids) -> bool:
    """Write ``baked`` atomically (temporary file + rename); False when the folder cannot be written."""
    payload = {"key": baked.key, "resolution": baked.resolution,
               "grids": [(g.detach().cpu() * 1.001).clamp_max(60000.0).half() for g in baked.grids]}  # rounding stays above
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
        return True
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False


def load_or_bake(model, run_dir: Path, options: BakeOptions | None = None) -> BakedGrids:
    """The grids of ``model`` cached in ``run_dir`` (baked and cached when missing or stale)."""
    options = options or BakeOptions()
    if model.proposal is None:
        raise CheckpointError(f"{run_dir}: baked density grids need a proposal-sampled run")
    if options.resolution <= 0:
        return BakedGrids(0, [], "")
    key = cache_key(model, options)
    path = Path(run_dir) / CACHE_NAME
    cached = read_cache(path, key)
    if cached is not None:
        return cached
    baked = bake(model, options)
    write_cache(path, baked)
    return read_cache(path, key) or baked  # the cached (half-precision) grids, so every render sees the same
