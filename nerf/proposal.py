"""Proposal sampling for unbounded scenes (mip-NeRF 360 / nerfacto): small density networks resample each ray so
that a fixed, small number of radiance-field samples lands where the surface is.

Per ray, distances ``t`` between ``near`` and ``far`` are handled in a normalised *spacing* coordinate
``s`` in [0, 1]: ``g(t) = t / 2`` for ``t < 1`` and ``1 - 1 / (2 t)`` beyond (linear inside the unit box, uniform in
disparity outside, the contraction's own spacing), ``s = (g(t) - g(near)) / (g(far) - g(near))``. The first set of
bins is uniform in ``s`` (jittered in training); each proposal network (a small hash grid through the same
``make_encoding`` factory as the field, so the compiled CPU kernel runs it, and a one-hidden-layer MLP) gives
densities at its bins' midpoints, their compositing weights become a histogram over ``s``, and inverse-CDF
sampling of that histogram (stratified jitter in training, deterministic at evaluation) gives the next bins. The
last bins are where the radiance field is evaluated.

Losses (pure torch, values tested against brute-force references):

* :func:`interlevel_loss` (mip-NeRF 360's proposal loss): the radiance field's weights (detached) must be
  bounded by the proposal weight that overlaps each of its intervals (``outer``); zero when they agree.
* :func:`distortion_loss` (mip-NeRF 360): ``sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i)`` over the
  radiance field's bins in ``s``, computed in O(k) with cumulative sums.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from .config import ProposalConfig
from .encoding import HashGridConfig, make_encoding


def spacing(t: Tensor) -> Tensor:
    """``g(t)``: t / 2 inside the unit distance, 1 - 1 / (2 t) beyond (maps [0, inf) onto [0, 1))."""
    return torch.where(t < 1.0, 0.5 * t, 1.0 - 0.5 / t.clamp_min(1.0))


def spacing_inverse(g: Tensor) -> Tensor:
    """Inverse of :func:`spacing` on [0, 1)."""
    return torch.where(g < 0.5, 2.0 * g, 0.5 / (1.0 - g).clamp_min(1e-12))


def s_to_t(s: Float[Tensor, "n k"], near: Float[Tensor, "n 1"], far: Float[Tensor, "n 1"]) -> Float[Tensor, "n k"]:
    """Distances along the ray of normalised spacing values ``s`` (0 at ``near``, 1 at ``far``)."""
    g0, g1 = spacing(near), spacing(far)
    return spacing_inverse(g0 + s * (g1 - g0))


def uniform_bins(n: int, num: int, stratified: bool, generator: torch.Generator | None,
                 device: torch.device) -> Float[Tensor, "n num+1"]:
    """``num`` equal bins of [0, 1] per ray; in training each edge moves within its neighbouring half bins by one
    random fraction per ray (nerfstudio's single jitter)."""
    edges = torch.linspace(0.0, 1.0, num + 1, device=device).expand(n, num + 1)
    if not stratified:
        return edges.contiguous()
    centres = 0.5 * (edges[:, 1:] + edges[:, :-1])
    lower = torch.cat([edges[:, :1], centres], dim=1)
    upper = torch.cat([centres, edges[:, -1:]], dim=1)
    jitter = torch.rand(n, 1, device=device, generator=generator)
    return lower + (upper - lower) * jitter


def pdf_sample(edges: Float[Tensor, "n k+1"], weights: Float[Tensor, "n k"], num: int, stratified: bool,
               generator: torch.Generator | None = None, padding: float = 0.01) -> Float[Tensor, "n num+1"]:
    """``num`` new bins (``num + 1`` edges, sorted) by inverse-CDF sampling of the histogram ``weights`` over
    ``edges`` (plus ``padding`` per bin so empty rays still spread their samples). Evaluation takes the
    quantiles ``linspace(0, 1, num + 1)``; training shifts them by one random fraction of a bin per ray."""
    n, k = weights.shape
    w = weights.detach() + padding
    cdf = torch.cumsum(w / w.sum(dim=-1, keepdim=True), dim=-1).clamp_max(1.0)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # [n, k + 1]
    m = num + 1
    if stratified:
        u = torch.linspace(0.0, 1.0 - 1.0 / m, m, device=w.device).expand(n, m)
        u = u + torch.rand(n, 1, device=w.device, generator=generator) / m
    else:
        u = torch.linspace(0.0, 1.0, m, device=w.device).expand(n, m)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)  # [n, m]
    below, above = (idx - 1).clamp(0, k), idx.clamp(0, k)
    c0, c1 = cdf.gather(1, below), cdf.gather(1, above)
    e0, e1 = edges.gather(1, below), edges.gather(1, above)
    frac = torch.nan_to_num((u - c0) / (c1 - c0), nan=0.0).clamp(0.0, 1.0)
    return (e0 + frac * (e1 - e0)).detach()


def dense_weights(sigma: Float[Tensor, "n k"], deltas: Float[Tensor, "n k"]) -> Float[Tensor, "n k"]:
    """Compositing weights ``T_i (1 - exp(-sigma_i delta_i))`` of samples in ray order."""
    tau = sigma * deltas
    excl = torch.cumsum(tau, dim=-1) - tau
    return torch.exp(-excl) * (1.0 - torch.exp(-tau))


def outer_weights(edges: Float[Tensor, "n k+1"], prop_edges: Float[Tensor, "n m+1"],
                  prop_weights: Float[Tensor, "n m"]) -> Float[Tensor, "n k"]:
    """Sum of the proposal weights whose intervals overlap each interval of ``edges`` (mip-NeRF 360's outer
    measure; both edge sets sorted per ray)."""
    cum = torch.cat([torch.zeros_like(prop_weights[:, :1]), torch.cumsum(prop_weights, dim=-1)], dim=-1)
    m = prop_weights.shape[1]
    idx = torch.searchsorted(prop_edges.contiguous(), edges.contiguous(), right=True)  # [n, k + 1]
    lo = cum.gather(1, (idx - 1).clamp(0, m))  # weight wholly at or below each edge's last prop edge <= it
    hi = cum.gather(1, idx.clamp(0, m))  # weight of proposal intervals starting before each edge
    return hi[:, 1:] - lo[:, :-1]


def interlevel_loss(edges: Float[Tensor, "n k+1"], weights: Float[Tensor, "n k"],
                    proposals: list[tuple[Tensor, Tensor]], eps: float = 1e-7) -> Tensor:
    """Sum over proposal levels of the mean over rays of ``sum relu(w - outer)^2 / (w + eps)``; ``weights``
    (the radiance field's) are detached, so only the proposal networks learn from it."""
    w = weights.detach()
    total = weights.new_zeros(())
    for prop_edges, prop_weights in proposals:
        outer = outer_weights(edges.detach(), prop_edges.detach(), prop_weights)
        total = total + ((w - outer).clamp_min(0.0).square() / (w + eps)).sum(dim=-1).mean()
    return total


def distortion_loss(edges: Float[Tensor, "n k+1"], weights: Float[Tensor, "n k"]) -> Tensor:
    """mip-NeRF 360's distortion loss (mean over rays) of weights over sorted bins ``edges``."""
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    widths = edges[:, 1:] - edges[:, :-1]
    wm = weights * mids
    w_before = torch.cumsum(weights, dim=-1) - weights
    wm_before = torch.cumsum(wm, dim=-1) - wm
    inter = 2.0 * (weights * (mids * w_before - wm_before)).sum(dim=-1)
    intra = (weights.square() * widths).sum(dim=-1) / 3.0
    return (inter + intra).mean()


def trunc_exp_density(x: Tensor) -> Tensor:
    """exp with its input clamped at 15 (densities of the proposal networks; forward and gradient finite)."""
    return torch.exp(x.clamp(max=15.0))


class ProposalNetwork(nn.Module):
    """Density only: a small hash grid over [0, 1]^3 and a one-hidden-layer MLP."""

    def __init__(self, encoding: HashGridConfig, hidden_dim: int, seed: int):
        super().__init__()
        self.encoding = make_encoding(encoding, seed=seed)
        gen = torch.Generator().manual_seed(seed + 1)
        self.mlp = nn.Sequential(nn.Linear(self.encoding.output_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        with torch.no_grad():
            for i, layer in enumerate((self.mlp[0], self.mlp[2])):
                bound = (6.0 / layer.in_features) ** 0.5 if i == 0 else (1.0 / layer.in_features) ** 0.5
                layer.weight.uniform_(-bound, bound, generator=gen)
                layer.bias.zero_()

    def forward(self, x: Float[Tensor, "m 3"]) -> Float[Tensor, "m"]:
        """Density at positions ``x`` in [0, 1]^3."""
        return trunc_exp_density(self.mlp(self.encoding(x))[:, 0])


class ProposalSampler(nn.Module):
    """The proposal networks and the sampling schedule of ``ProposalConfig``."""

    def __init__(self, config: ProposalConfig, backend: str, seed: int = 0):
        super().__init__()
        self.config = config
        self.networks = nn.ModuleList([
            ProposalNetwork(
                HashGridConfig(num_levels=config.num_levels, features_per_level=2,
                               log2_hashmap_size=config.log2_hashmap_size, base_resolution=16,
                               max_resolution=resolution, backend=backend),  # type: ignore[arg-type]
                config.hidden_dim, seed=seed + 101 * (i + 1))
            for i, resolution in enumerate(config.max_resolutions)
        ])

    def near_far(self, n: int, like: Tensor) -> tuple[Float[Tensor, "n 1"], Float[Tensor, "n 1"]]:
        near = torch.full((n, 1), self.config.near, dtype=like.dtype, device=like.device)
        far = torch.full((n, 1), self.config.far, dtype=like.dtype, device=like.device)
        return near, far

    def sample(
        self, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"],
        normalise: Callable[[Tensor], Tensor], near: Float[Tensor, "n 1"], far: Float[Tensor, "n 1"],
        stratified: bool, generator: torch.Generator | None = None,
    ) -> tuple[Float[Tensor, "n k+1"], list[tuple[Tensor, Tensor]]]:
        """The radiance field's bins in ``s`` ([n, num_nerf_samples + 1]) and each proposal level's (edges,
        weights), the weights with gradients in training (for :func:`interlevel_loss`)."""
        c = self.config
        n = len(origins)
        edges = uniform_bins(n, c.num_proposal_samples[0], stratified, generator, origins.device)
        levels: list[tuple[Tensor, Tensor]] = []
        counts = list(c.num_proposal_samples[1:]) + [c.num_nerf_samples]
        for network, count in zip(self.networks, counts):
            t = s_to_t(edges, near, far)  # [n, k + 1]
            mids = 0.5 * (t[:, 1:] + t[:, :-1])
            points = origins[:, None] + directions[:, None] * mids[..., None]  # [n, k, 3]
            with torch.set_grad_enabled(torch.is_grad_enabled() and stratified):
                sigma = network(normalise(points.reshape(-1, 3))).view(n, -1)
                weights = dense_weights(sigma, t[:, 1:] - t[:, :-1])
            levels.append((edges, weights))
            edges = pdf_sample(edges, weights, count, stratified, generator)
        return edges, levels
