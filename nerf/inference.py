"""Fast inference rendering (instant-ngp's inference marching): only the rays still alive advance, a few occupied
samples at a time, and each round composites straight into per-ray accumulators.

Per round, every alive ray finds its next ``k`` steps whose midpoint lies in an occupied cell (``k`` is
``target_samples`` / alive rays within ``[min_steps, max_steps]``: one while most rays are alive, more as they
die), the field's density pass runs on them once, and its geometry features feed the colour MLP for the samples
kept. Rays leave the alive set when they pass their far end or their transmittance drops below
``early_stop_eps``. The samples, the drop rule (opacity below ``alpha_threshold``; everything behind optical depth
``-log(early_stop_eps)``, counting dropped samples too) and the compositing are those of
``NerfModel.render_rays`` through ``sampler.march`` (the reference path, kept for training and as the peer in
tests and benchmarks), so images agree to float rounding.

The marcher is the compiled one (``march_cpu.py``: one C++ loop per ray that jumps over empty coarse cells) on
CPU tensors when it builds, else :func:`march_next_torch` (vectorised, tests ``lookahead`` steps per round).
The first layer of the colour MLP is split: its spherical-harmonics (and mean-appearance) part depends on the
ray alone, so it is computed once per ray instead of once per sample.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from . import march_cpu
from .baked import BakeOptions, SkipOptions
from .occupancy import OccupancyGrid
from .sampler import StepWarp, rank_in_ray, ray_aabb
from .sh import sh_dim, sh_encode
from .volrend import exclusive_cumsum_per_ray


@dataclass
class InferenceOptions:
    """How ``render_rays_fast`` schedules its rounds."""

    method: Literal["fast", "reference"] = "fast"
    """"fast": ``render_rays_fast``; "reference": ``NerfModel.render_rays`` through ``sampler.march`` (the peer)."""
    proposal: Literal["fast", "reference"] = "fast"
    """Proposal-sampled models: "fast" (``fast_proposal.render_proposal_fast``: early ray termination and, with
    baked grids, empty-space skipping; thresholds in ``skip``) or "reference" (every sample queried, as trained)."""
    skip: SkipOptions = dataclasses.field(default_factory=SkipOptions)
    """Thresholds of the fast proposal path."""
    bake: BakeOptions = dataclasses.field(default_factory=BakeOptions)
    """How the proposal path's empty-space grids are baked (``baked.py``)."""
    target_samples: int = 1 << 17
    """Samples per round (sets how many steps each alive ray takes: target / alive rays, within the bounds below);
    with ``max_rays`` it bounds the memory of a call."""
    max_rays: int = 1 << 17
    """Rays marched together (longer batches are split)."""
    min_steps: int = 1
    """Fewest occupied steps an alive ray takes per round."""
    max_steps: int = 64
    """Most occupied steps an alive ray takes per round."""
    marcher: Literal["auto", "cpp", "torch"] = "auto"
    """"auto" (compiled on CPU when it builds, else torch), "cpp" or "torch"."""
    lookahead: int = 64
    """Torch marcher only: steps tested per ray and round."""
    threads: int | Literal["auto"] = "auto"
    """CPU threads while rendering: a number, or "auto": one thread while the machine is oversubscribed by others
    (load average minus this process's own threads above the core count), else the process setting. On a shared
    machine every parallel region waits for a descheduled thread: a lego view took 63 s with 2 threads and 5.7 s
    with 1 at load 17 (2 cores). Our own threads are discounted: they alone keep the load near the thread count,
    so counting them could switch a long render to one thread on an otherwise idle machine."""


def march_next_torch(
    origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], s: Float[Tensor, "n"], s_end: Float[Tensor, "n"],
    grid: OccupancyGrid, warp: StepWarp, k: int, lookahead: int = 64,
) -> tuple[Float[Tensor, "n k"], Float[Tensor, "n k"], Int[Tensor, "n"], Float[Tensor, "n"]]:
    """The compiled marcher's contract in torch: from step start ``s``, up to ``k`` occupied steps among the
    next ``max(lookahead, k)`` before ``s_end`` (t_starts [n, k], t_ends [n, k], count [n], next start [n])."""
    m = max(lookahead, k)
    steps = s[:, None] + torch.arange(m, device=s.device, dtype=s.dtype)  # [n, m]
    mid = warp.t_of_s(steps + 0.5)
    if grid.num_cascades == 1:
        a, b = grid.to_cell_units(origins, directions)  # [n, 3] each
        hit = grid.lookup_cell_units(a[:, None] + b[:, None] * mid[..., None], coarse=False)
    else:
        hit = grid.query((origins[:, None] + directions[:, None] * mid[..., None]).reshape(-1, 3)).view_as(mid)
    hit &= steps + 0.5 < s_end[:, None]
    rank = torch.cumsum(hit, dim=1) - 1  # [n, m] rank of each hit
    take = hit & (rank < k)
    count = take.sum(dim=1)
    ray, col = take.nonzero(as_tuple=True)
    slot = rank[ray, col]
    t0 = s.new_zeros(len(s), k)
    t1 = s.new_zeros(len(s), k)
    t0[ray, slot] = warp.t_of_s(steps[ray, col])
    t1[ray, slot] = warp.t_of_s(steps[ray, col] + 1.0)
    last = torch.where(take, torch.arange(m, device=s.device), -1).amax(dim=1)  # [n] last step taken
    advance = torch.where(count >= k, last + 1, torch.full_like(last, m)).to(s.dtype)
    return t0, t1, count.int(), s + advance


class _ColorHead:
    """The colour MLP with its first layer split into a per-ray part (SH of the direction, mean appearance)
    and a per-sample part (geometry features)."""

    def __init__(self, field, directions: Float[Tensor, "n 3"]):
        mlp, config = field.color_mlp, field.config
        first = mlp[0]
        n_sh = sh_dim(config.sh_degree)
        g = config.geo_feat_dim
        base = sh_encode(directions, config.sh_degree) @ first.weight[:, :n_sh].T + first.bias  # [n, H]
        if field.appearance is not None:
            code = field.appearance.weight.mean(dim=0)  # [A] mean embedding (the eval choice of fields.py)
            base = base + code @ first.weight[:, n_sh + g :].T
        self.base, self.w_geo, self.rest = base, first.weight[:, n_sh : n_sh + g].T.contiguous(), mlp[2:]

    def __call__(self, rays: Int[Tensor, "s"], geo: Float[Tensor, "s g"]) -> Float[Tensor, "s 3"]:
        hidden = torch.addmm(self.base.index_select(0, rays), geo, self.w_geo).relu_()
        return mlp_forward(self.rest, hidden).sigmoid_()


def mlp_forward(mlp: torch.nn.Sequential, x: Tensor) -> Tensor:
    """``mlp(x)`` for a Linear/ReLU stack without autograd: one fused bias + matmul per layer, ReLU in place."""
    for layer in mlp:
        if isinstance(layer, torch.nn.Linear):
            x = torch.addmm(layer.bias, x, layer.weight.T)
        else:
            x = x.relu_()
    return x


def geometry(field, points: Float[Tensor, "m 3"]) -> tuple[Float[Tensor, "m"], Float[Tensor, "m g"]]:
    """``field.geometry(points)`` (density, geometry features) through :func:`mlp_forward`."""
    h = mlp_forward(field.density_mlp, field.encoding(field.normalise(points)))  # [m, 1 + g]
    density = torch.exp(h[:, 0])
    if field.config.bounded:
        lo, hi = field.aabb[0], field.aabb[1]
        density = density * ((points >= lo) & (points <= hi)).all(dim=-1)
    return density, h[:, 1:]


@dataclass
class _State:
    """Per-ray accumulators of one ``render_rays_fast`` call."""

    s: Tensor  # [n] next step start
    s_end: Tensor  # [n]
    optical: Tensor  # [n] optical depth of every evaluated sample (the early-stop rule)
    kept_optical: Tensor  # [n] optical depth of the kept samples (their transmittance)
    kept: Tensor  # [n] kept samples so far (max_samples cap)
    summed: Tensor  # [n, 5] sum of w * (r, g, b, t_mid, 1)


def _start(origins: Tensor, directions: Tensor, grid: OccupancyGrid, warp: StepWarp, options) -> _State:
    """Each ray's first step (entry into the occupied box, clipped to near/far) and far end, as ``march``."""
    t_near, t_far = ray_aabb(origins, directions, grid.occupied_aabb)
    t_near = t_near.clamp_min(options.near)
    t_far = t_far.clamp_max(options.far)
    s = warp.s_of_t(t_near)
    s_end = warp.s_of_t(torch.maximum(t_far, warp.t_of_s(s)))
    zeros = torch.zeros_like(s)
    return _State(s, s_end, zeros.clone(), zeros.clone(), zeros.long(), s.new_zeros(len(s), 5))


def _marcher(options: InferenceOptions, device: torch.device):
    if options.marcher == "torch" or device.type != "cpu":
        return lambda *a: march_next_torch(*a, lookahead=options.lookahead)
    if options.marcher == "cpp" or march_cpu.available():
        return march_cpu.march_next
    return lambda *a: march_next_torch(*a, lookahead=options.lookahead)


@torch.no_grad()
def render_rays_fast(
    model, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], background: Float[Tensor, "n 3"],
    options: InferenceOptions | None = None,
) -> dict[str, Tensor | int]:
    """"rgb" [n, 3] over ``background``, "depth" [n], "accumulation" [n], "num_samples" (kept samples, int) and
    "num_evaluated" (density evaluations, int) of ``model`` (a NerfModel) along unit-direction rays, at most
    ``options.max_rays`` rays at a time."""
    options = options or InferenceOptions()
    if len(origins) <= options.max_rays:
        return _render_chunk(model, origins, directions, background, options)
    return _render_chunks(model, origins, directions, background, options)


def oversubscribed(own_threads: int, load: float | None = None, cores: int | None = None) -> bool:
    """True when other processes keep more than every core busy: the 1-minute load average (``load``, default
    ``os.getloadavg()``) minus our own ``own_threads`` is above the core count."""
    if load is None:
        if not hasattr(os, "getloadavg"):
            return False
        load = os.getloadavg()[0]
    return load - own_threads > (cores or os.cpu_count() or 1)


@contextmanager
def inference_threads(threads: int | str, device: torch.device) -> Iterator[None]:
    """torch's CPU thread count set for the block (see ``InferenceOptions.threads``), restored afterwards."""
    before = torch.get_num_threads()
    wanted = before
    if device.type == "cpu" and threads == "auto":
        if oversubscribed(before):
            wanted = 1
    elif device.type == "cpu" and isinstance(threads, int) and threads > 0:
        wanted = threads
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != before:
            torch.set_num_threads(before)


def _render_chunks(model, origins: Tensor, directions: Tensor, background: Tensor, options: InferenceOptions):
    """``render_rays_fast`` over chunks of ``options.max_rays`` rays."""
    parts = [
        _render_chunk(model, origins[i : i + options.max_rays], directions[i : i + options.max_rays],
                      background[i : i + options.max_rays], options)
        for i in range(0, len(origins), options.max_rays)
    ]
    out: dict[str, Tensor | int] = {k: torch.cat([p[k] for p in parts]) for k in ("rgb", "accumulation", "depth")}
    out.update({k: sum(int(p[k]) for p in parts) for k in ("num_samples", "num_evaluated")})
    return out


def _render_chunk(model, origins: Tensor, directions: Tensor, background: Tensor, options: InferenceOptions):
    """``render_rays_fast`` on one chunk of rays."""
    march = model.march_options(training=False)
    warp = StepWarp(march.step_size, march.cone_angle)
    grid = model.occupancy
    state = _start(origins, directions, grid, warp, march)
    stop = -math.log(max(march.early_stop_eps, 1e-30))
    color = _ColorHead(model.field, directions)
    step_fn = _marcher(options, origins.device)
    alive = (state.s + 0.5 < state.s_end).nonzero().squeeze(1)
    evaluated = 0
    while alive.numel() > 0:
        k = int(min(max(options.target_samples // alive.numel(), options.min_steps), options.max_steps))
        rays = (origins.index_select(0, alive), directions.index_select(0, alive))
        t0, t1, count, s_next = step_fn(*rays, state.s.index_select(0, alive), state.s_end.index_select(0, alive),
                                        grid, warp, k)
        state.s.index_copy_(0, alive, s_next)
        flat = (torch.arange(k, device=count.device) < count[:, None]).view(-1).nonzero().squeeze(1)
        if flat.numel() > 0:
            local = flat // k  # [m] index into alive, ascending
            _shade(model, color, state, origins, directions, alive, local, t0.view(-1)[flat], t1.view(-1)[flat],
                   stop, march)
            evaluated += flat.numel()
        going = (s_next + 0.5 < state.s_end.index_select(0, alive)) & (state.optical.index_select(0, alive) < stop)
        alive = alive.index_select(0, going.nonzero().squeeze(1))
    return _finish(state, background, evaluated)


def _shade(model, color: _ColorHead, state: _State, origins: Tensor, directions: Tensor, alive: Tensor,
           local: Tensor, t0: Tensor, t1: Tensor, stop: float, march) -> None:
    """Density pass on one round's samples (sorted by ray, then distance), the early-stop / opacity drop rule,
    colour of the kept samples and compositing into ``state``."""
    ray = alive.index_select(0, local)  # [m]
    mid = 0.5 * (t0 + t1)
    points = origins.index_select(0, ray) + directions.index_select(0, ray) * mid[:, None]
    sigma, geo = geometry(model.field, points)
    tau = sigma * (t1 - t0)
    excl = state.optical.index_select(0, ray) + exclusive_cumsum_per_ray(tau, local)
    alpha = 1.0 - torch.exp(-tau)
    state.optical.index_add_(0, ray, tau)
    keep = ((excl < stop) & (alpha >= march.alpha_threshold)).nonzero().squeeze(1)
    if keep.numel() == 0:
        return
    ray, tau, alpha, mid, geo = (x.index_select(0, keep) for x in (ray, tau, alpha, mid, geo))
    rank = state.kept.index_select(0, ray) + rank_in_ray(ray)
    if int(rank.max()) >= march.max_samples:  # the per-ray cap of the reference marcher (rare)
        cap = (rank < march.max_samples).nonzero().squeeze(1)
        ray, tau, alpha, mid, geo = (x.index_select(0, cap) for x in (ray, tau, alpha, mid, geo))
    weights = torch.exp(-(state.kept_optical.index_select(0, ray) + exclusive_cumsum_per_ray(tau, ray))) * alpha
    rgb = color(ray, geo)
    values = torch.cat([rgb, mid[:, None], torch.ones_like(mid)[:, None]], dim=1) * weights[:, None]  # [k, 5]
    state.summed.index_add_(0, ray, values)
    state.kept_optical.index_add_(0, ray, tau)
    state.kept.index_add_(0, ray, torch.ones_like(ray))


@torch.no_grad()
def proposal_inference(
    field, points: Float[Tensor, "s 3"], directions: Float[Tensor, "n 3"], t: Float[Tensor, "n k+1"],
    background: Float[Tensor, "n 3"], min_weight: float = 1.0e-4,
) -> dict[str, Tensor | int]:
    """Composite the proposal path's ``k`` samples per ray (``points`` [n k, 3] at the midpoints of the bins
    ``t``) with the mean appearance: the density pass on all of them, the colour MLP (split first layer, as
    ``render_rays_fast``) only on samples of weight at least ``min_weight`` (the others add their weight times a
    colour in [0, 1]: at most ``min_weight`` each). "num_samples" counts the coloured samples."""
    n, k = t.shape[0], t.shape[1] - 1
    sigma, geo = geometry(field, points)
    tau = sigma.view(n, k) * (t[:, 1:] - t[:, :-1])
    weights = torch.exp(-(torch.cumsum(tau, dim=1) - tau)) * (1.0 - torch.exp(-tau))  # [n, k]
    acc = weights.sum(dim=1)
    depth = (weights * 0.5 * (t[:, 1:] + t[:, :-1])).sum(dim=1) / acc.clamp_min(1e-10)
    keep = (weights.view(-1) >= min_weight).nonzero().squeeze(1)
    rays = keep // k
    rgb = _ColorHead(field, directions)(rays, geo.index_select(0, keep)) * weights.view(-1)[keep, None]
    summed = torch.zeros(n, 3, dtype=rgb.dtype, device=rgb.device).index_add_(0, rays, rgb)
    return {"rgb": summed + (1.0 - acc)[:, None] * background, "accumulation": acc, "depth": depth,
            "num_samples": int(keep.numel())}


def _finish(state: _State, background: Tensor, evaluated: int) -> dict[str, Tensor | int]:
    acc = state.summed[:, 4]
    rgb = state.summed[:, :3] + (1.0 - acc)[:, None] * background
    depth = state.summed[:, 3] / acc.clamp_min(1e-10)
    return {"rgb": rgb, "accumulation": acc, "depth": depth, "num_samples": int(state.kept.sum()),
            "num_evaluated": evaluated}
