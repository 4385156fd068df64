"""Fast inference of the proposal path: the samples of ``ProposalSampler.sample`` at evaluation (with fewer of
them per ray: ``SkipOptions.proposal_fraction`` / ``nerf_fraction``, measured), with the network queries that
cannot matter skipped.

Each stage (every proposal network, then the radiance field) evaluates its ``k`` samples per ray in blocks of
columns, nearest first. A sample is queried only when

* its ray is still alive: the optical depth of the stage's samples before the block is below
  ``-log(stop_transmittance)`` (early ray termination: everything behind weighs at most ``stop_transmittance``);
* its cell's baked density bound (``baked.py``) times its interval length reaches ``skip_opacity`` (empty-space
  skipping: a skipped sample's opacity is below ``skip_opacity``).

Skipped samples get density 0. The compositing weights, the inverse-CDF resampling and the colour pass are those
of ``ProposalSampler.sample`` and ``inference.proposal_inference`` (pure torch, no jitter), so with both
thresholds at 0 and the trained sample counts the image is the reference one to float rounding, and otherwise
the skipping changes it by at most the skipped opacity (tests compare the two).

On CPU float32 tensors (``SkipOptions.kernel``, "auto" by default) the whole path runs in ``field_cpu.py``'s
fused C++ loop (one ray at a time: every stage's network queries, resampling, compositing and colour, no tensor
per stage; 1.9x faster on office_360), with the same samples and rules as the torch code below, which stays the
reference (tests compare the two) and runs on CUDA, for float64 and with baked grids that skip cells.
"""

from __future__ import annotations

import math
import torch
from jaxtyping import Float
from torch import Tensor

from . import field_cpu
from .baked import BakedGrids, SkipOptions
from .inference import _ColorHead, mlp_forward
from .proposal import dense_weights, pdf_sample, s_to_t, uniform_bins


def _stage_density(fn, baked: BakedGrids | None, stage: int, x: Float[Tensor, "n k 3"],
                   deltas: Float[Tensor, "n k"], options: SkipOptions,
                   geo_dim: int = 0) -> tuple[Float[Tensor, "n k"], Tensor | None, int]:
    """Density [n, k] of one stage at unit-cube positions ``x`` (skipped samples 0), when ``geo_dim`` > 0 the
    geometry features [n, k, geo_dim] (zero where skipped), and the number of queries. ``fn(x [m, 3])`` returns
    density [m] or (density [m], features [m, g])."""
    n, k = deltas.shape
    sigma = deltas.new_zeros(n, k)
    geo = deltas.new_zeros(n, k, geo_dim) if geo_dim else None
    optical = deltas.new_zeros(n)
    stop = -math.log(options.stop_transmittance) if options.stop_transmittance > 0 else math.inf
    queried = 0
    for c0 in range(0, k, options.block):
        c1 = min(c0 + options.block, k)
        alive = (optical < stop).nonzero().squeeze(1)
        if alive.numel() == 0:
            break
        xb = x[alive, c0:c1].reshape(-1, 3)  # [a b, 3]
        db = deltas[alive, c0:c1].reshape(-1)
        if baked is not None and baked.grids and options.skip_opacity > 0:
            want = (baked.bound(stage, xb) * db >= options.skip_opacity).nonzero().squeeze(1)
        else:
            want = torch.arange(len(xb), device=xb.device)
        if want.numel() == 0:
            continue
        rows, cols = alive.index_select(0, want // (c1 - c0)), c0 + want % (c1 - c0)
        queried += want.numel()
        out = fn(xb.index_select(0, want))
        values = out[0] if isinstance(out, tuple) else out
        sigma[rows, cols] = values
        if geo is not None:
            geo[rows, cols] = out[1]
        optical.index_add_(0, rows, values * deltas[rows, cols])
    return sigma, geo, queried


def _field_fn(field):
    """(density, geometry features) of the radiance field at unit-cube positions (no bounded-box mask)."""

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        h = mlp_forward(field.density_mlp, field.encoding(x))
        return torch.exp(h[:, 0]), h[:, 1:]

    return run


@torch.no_grad()
def render_proposal_fast(
    model, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], background: Float[Tensor, "n 3"],
    baked: BakedGrids | None, options: SkipOptions | None = None,
) -> dict[str, Tensor | int]:
    """"rgb" [n, 3], "depth" [n], "accumulation" [n], "num_samples" (coloured samples) and "num_evaluated"
    (network queries, all stages) of a proposal-sampled NerfModel with the mean appearance, unit directions."""
    options = options or SkipOptions()
    sampler, field = model.proposal, model.field
    c = sampler.config
    near, far = model.proposal_near_far(origins, directions)
    first, *counts = inference_counts(c.num_proposal_samples, c.num_nerf_samples, options)
    if _use_fused(model, origins, baked, options):
        stop = -math.log(options.stop_transmittance) if options.stop_transmittance > 0 else math.inf
        return field_cpu.FusedPath(model)(origins, directions, near, far, background,
                                          _ColorHead(field, directions).base, [first, *counts], options.block, stop,
                                          options.min_weight)
    edges = uniform_bins(len(origins), first, False, None, origins.device)
    evaluated = 0
    for stage, (network, count) in enumerate(zip(sampler.networks, counts)):
        x, deltas, _ = _stage_points(field, origins, directions, edges, near, far)
        sigma, _, queried = _stage_density(network, baked, stage, x, deltas, options)
        evaluated += queried
        edges = pdf_sample(edges, dense_weights(sigma, deltas), count, False)
    x, deltas, mids = _stage_points(field, origins, directions, edges, near, far)
    if field.config.bounded:  # outside the box the field has no density: as if those bins had no length
        deltas = deltas * _inside(field, origins, directions, mids)
    sigma, geo, queried = _stage_density(_field_fn(field), baked, len(sampler.networks), x, deltas, options,
                                         geo_dim=field.config.geo_feat_dim)
    evaluated += queried
    return _composite(field, directions, sigma, geo, deltas, mids, background, options.min_weight, evaluated)


def _use_fused(model, like: Tensor, baked: BakedGrids | None, options: SkipOptions) -> bool:
    """Whether the fused C++ kernels run (``SkipOptions.kernel``; never with baked grids that skip cells)."""
    if options.kernel == "torch" or (baked is not None and baked.grids and options.skip_opacity > 0):
        return False
    return field_cpu.usable(model, like)


def inference_counts(proposal: tuple[int, ...], nerf: int, options: SkipOptions) -> list[int]:
    """Samples per ray of each proposal network, then of the field, at inference (the trained counts scaled by
    ``options.proposal_fraction`` / ``nerf_fraction``, rounded, at least 1)."""
    scaled = [max(1, round(k * options.proposal_fraction)) for k in proposal]
    return [*scaled, max(1, round(nerf * options.nerf_fraction))]


def _stage_points(field, origins: Tensor, directions: Tensor, edges: Tensor, near: Tensor,
                  far: Tensor) -> tuple[Float[Tensor, "n k 3"], Float[Tensor, "n k"], Float[Tensor, "n k"]]:
    """Unit-cube positions of the bin midpoints, bin lengths and midpoint distances of bins ``edges`` in ``s``."""
    t = s_to_t(edges, near, far)  # [n, k + 1]
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    points = origins[:, None] + directions[:, None] * mids[..., None]  # [n, k, 3]
    return field.normalise(points.reshape(-1, 3)).view(points.shape), t[:, 1:] - t[:, :-1], mids


def _inside(field, origins: Tensor, directions: Tensor, mids: Tensor) -> Tensor:
    """1 where the midpoints lie in the scene box, else 0 ([n, k]; bounded scenes)."""
    points = origins[:, None] + directions[:, None] * mids[..., None]
    return ((points >= field.aabb[0]) & (points <= field.aabb[1])).all(dim=-1).to(mids.dtype)


def _composite(field, directions: Tensor, sigma: Tensor, geo: Tensor, deltas: Tensor, mids: Tensor,
               background: Tensor, min_weight: float, evaluated: int) -> dict[str, Tensor | int]:
    """``proposal_inference``'s compositing: colour only where the weight is at least ``min_weight``."""
    n, k = sigma.shape
    weights = dense_weights(sigma, deltas)  # [n, k]
    acc = weights.sum(dim=1)
    depth = (weights * mids).sum(dim=1) / acc.clamp_min(1e-10)
    keep = (weights.view(-1) >= min_weight).nonzero().squeeze(1)
    rays = keep // k
    rgb = _ColorHead(field, directions)(rays, geo.view(n * k, -1).index_select(0, keep))
    rgb = rgb * weights.view(-1)[keep, None]
    summed = torch.zeros(n, 3, dtype=rgb.dtype, device=rgb.device).index_add_(0, rays, rgb)
    return {"rgb": summed + (1.0 - acc)[:, None] * background, "accumulation": acc, "depth": depth,
            "num_samples": int(keep.numel()), "num_evaluated": evaluated}
