"""Adaptive density control of Gaussian splats during distillation (the 3DGS schedule, Kerbl et al. 2023).

Between two densification steps the statistics record, per Gaussian, the norm of the view-space (2-D mean)
positional gradient -- in NDC units, ``d loss / d pixel * (W / 2, H / 2)`` as 3DGS and gsplat measure it -- and
how often it was drawn. At a densification step a Gaussian whose mean gradient is at least ``grad_threshold``
is **cloned** when small (largest scale <= ``dense_fraction`` x scene extent) and **split** in two otherwise
(the new means sampled from the Gaussian itself, scales divided by 1.6); Gaussians nearly transparent
(opacity < ``prune_opacity``) or huge (largest scale > ``prune_scale`` x the larger of the extent and the
Gaussian's distance from the cameras' centroid, when given: far background of an unbounded capture is legitimately
large) are removed. Growth stops at
``max_splats``: the candidates with the largest gradients win. Every change keeps the Adam state of surviving
Gaussians and starts new ones from zero moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..render.splats.raster import quat_to_rotmat

SPLIT_SCALE = 1.6
"""Scale divisor of the two Gaussians a split makes (3DGS)."""


@dataclass
class DensifyStats:
    """Accumulated view-space gradient norms and draw counts since the last densification."""

    grad: Tensor
    """[n] sum of NDC positional-gradient norms."""
    count: Tensor
    """[n] number of renders the Gaussian was drawn in."""

    @classmethod
    def zeros(cls, n: int, device) -> DensifyStats:
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device))

    def add(self, means2d_grad: Tensor, ids: Tensor, radii: Tensor, width: int, height: int) -> None:
        """Record one render: ``means2d_grad`` [m, 2] (pixels) of the splats ``ids`` [m], ``radii`` [n] of every
        splat (0 = not drawn)."""
        drawn = radii[ids] > 0
        scaled = means2d_grad * torch.tensor([width / 2.0, height / 2.0], device=means2d_grad.device)
        self.grad.index_add_(0, ids, torch.where(drawn, scaled.norm(dim=-1), torch.zeros_like(scaled[:, 0])))
        self.count.index_add_(0, ids, drawn.float())

    def mean(self) -> Tensor:
        return self.grad / self.count.clamp_min(1.0)


def rebuild(optimizer: torch.optim.Adam, index: Tensor, fresh: Tensor, values: dict[str, Tensor]) -> dict[str, Tensor]:
    """New parameters ``values[name]`` (rows ``index`` of the old ones, edited) swapped into ``optimizer``:
    Adam moments follow ``index``, rows marked ``fresh`` start at zero."""
    new_params = {}
    for group in optimizer.param_groups:
        old = group["params"][0]
        name = group["name"]
        new = torch.nn.Parameter(values[name].detach().contiguous())
        state = optimizer.state.pop(old, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                moved = state[key][index].clone()
                moved[fresh] = 0.0
                state[key] = moved
            optimizer.state[new] = state
        group["params"][0] = new
        new_params[name] = new
    return new_params


def _splits(d: dict[str, Tensor], chosen: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
    """Two samples per chosen Gaussian: [2k] rows of every parameter."""
    rows = {k: v[chosen].repeat(2, *[1] * (v.dim() - 1)) for k, v in d.items()}
    scales = torch.exp(rows["log_scales"])
    offsets = torch.randn(scales.shape, generator=generator, device=scales.device) * scales
    rows["means"] = rows["means"] + (quat_to_rotmat(rows["quats"]) @ offsets[:, :, None])[:, :, 0]
    rows["log_scales"] = rows["log_scales"] - math.log(SPLIT_SCALE)
    return rows


def _grow_candidates(stats: DensifyStats, keep: Tensor, room: int, threshold: float) -> Tensor:
    """[n] bool: Gaussians to clone or split, at most ``room`` (largest mean gradients first)."""
    candidates = (stats.mean() >= threshold) & keep
    if int(candidates.sum()) > room:
        ranked = torch.argsort(torch.where(candidates, stats.mean(), -1.0), descending=True)[:room]
        candidates = torch.zeros_like(candidates)
        candidates[ranked] = True
    return candidates


def prune_mask(d: dict[str, Tensor], options, extent: float, centroid: Tensor | None = None) -> Tensor:
    """[n] bool: the Gaussians of ``d`` (detached parameters) that survive the prune (see the module docstring)."""
    max_scale = torch.exp(d["log_scales"]).amax(dim=-1)
    reach = torch.full_like(max_scale, float(extent))
    if centroid is not None:
        reach = torch.maximum(reach, (d["means"] - centroid.to(d["means"])).norm(dim=-1))
    return ~((torch.sigmoid(d["opacity_logits"]) < options.prune_opacity) | (max_scale > options.prune_scale * reach))


def densify_and_prune(params: dict[str, Tensor], optimizer: torch.optim.Adam, stats: DensifyStats, options,
                      extent: float, generator: torch.Generator, grow: bool = True,
                      centroid: Tensor | None = None) -> dict[str, Tensor]:
    """One densification step (see the module docstring) on ``params`` (name -> [n, ...] parameter, including
    means, quats, log_scales and opacity_logits); ``options`` is a DistillOptions; ``centroid`` [3] the cameras'
    mean centre (None: the size prune uses the extent alone, as 3DGS). Returns the new parameters (already in
    ``optimizer``)."""
    d = {k: v.detach() for k, v in params.items()}
    max_scale = torch.exp(d["log_scales"]).amax(dim=-1)
    keep = prune_mask(d, options, extent, centroid)
    room = max(0, options.max_splats - int(keep.sum()))
    candidates = _grow_candidates(stats, keep, room, options.grad_threshold) if grow else torch.zeros_like(keep)
    small = max_scale <= options.dense_fraction * extent
    clone = torch.nonzero(candidates & small)[:, 0]
    split = torch.nonzero(candidates & ~small)[:, 0]
    kept = torch.nonzero(keep & ~(candidates & ~small))[:, 0]  # a split Gaussian is replaced by its two halves
    pieces = _splits(d, split, generator)
    index = torch.cat([kept, clone, split, split])
    values = {k: torch.cat([v[kept], v[clone], pieces[k]]) for k, v in d.items()}
    fresh = torch.zeros(len(index), dtype=torch.bool, device=index.device)
    fresh[len(kept):] = True
    return rebuild(optimizer, index, fresh, values)


def reset_opacity(params: dict[str, Tensor], optimizer: torch.optim.Adam, ceiling: float = 0.01) -> None:
    """Clamp every opacity to at most ``ceiling`` and zero its Adam moments (3DGS's periodic reset)."""
    logits = params["opacity_logits"]
    with torch.no_grad():
        logits.clamp_(max=math.log(ceiling / (1.0 - ceiling)))
    state = optimizer.state.get(logits)
    if state:
        state["exp_avg"].zero_()
        state["exp_avg_sq"].zero_()
