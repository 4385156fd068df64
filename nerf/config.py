"""Configuration dataclasses of the NeRF stage (plain data; presets are built from these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .encoding import HashGridConfig

Background = Literal["white", "black", "random"]


@dataclass
class ModelConfig:
    """The radiance field, its occupancy grid and its ray marcher. Lengths are in the normalised scene frame."""

    encoding: HashGridConfig = field(default_factory=HashGridConfig)
    """Multiresolution hash encoding of positions (scene box, or contracted space when unbounded)."""
    hidden_dim: int = 64
    """Width of the density MLP's hidden layer."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density MLP to the colour MLP."""
    hidden_dim_color: int = 64
    """Width of the colour MLP's two hidden layers."""
    sh_degree: int = 4
    """Spherical-harmonics degree of the view-direction encoding (degree**2 coefficients, 1..4)."""
    appearance_dim: int = 16
    """Per-image appearance embedding size (0 = off; real captures use it, Blender scenes do not need it)."""
    bounded: bool = True
    """True: the scene lies inside the scene box (Blender). False: unbounded capture, positions are contracted."""
    contraction_norm: Literal["inf", "l2"] = "inf"
    """Norm of the mip-NeRF 360 contraction for unbounded scenes ("inf" fills the hash grid's cube)."""
    near_plane: float = 0.0
    """No samples closer than this to the ray origin."""
    far_plane: float = 1.0e10
    """No samples farther than this from the ray origin."""
    num_cascades: int = 1
    """Occupancy-grid cascades: cascade k covers the scene box scaled by 2**k (1 for bounded scenes)."""
    occupancy_resolution: int = 128
    """Cells per side of each occupancy-grid cascade."""
    occupancy_update_every: int = 16
    """Training steps between occupancy-grid updates (instant-ngp: 16)."""
    occupancy_warmup_steps: int = 256
    """Before this step every cell is re-evaluated at each update; afterwards a quarter of them plus occupied ones."""
    occupancy_decay: float = 0.95
    """EMA decay of the cached density grid at each update."""
    occupancy_threshold: float = 0.01
    """A cell is occupied when its density * render step exceeds this (capped at the grid's mean)."""
    render_step_size: float | None = None
    """Ray-marching step; None = scene-box diagonal / 1024 (instant-ngp's step for its unit cube)."""
    cone_angle: float = 0.0
    """Step grows as t * cone_angle beyond the base step (0 = fixed step; 1/256 suits unbounded captures)."""
    max_samples_per_ray: int = 1024
    """Hard cap of samples along one ray."""
    alpha_threshold: float = 0.0
    """Samples whose opacity is below this are skipped (found with a density-only pass; 0 = keep all)."""
    early_stop_eps: float = 1.0e-4
    """Ray marching stops once transmittance falls below this."""
    background: Background = "white"
    """Background colour in training for RGBA data ("random" as instant-ngp does); eval always uses white."""
