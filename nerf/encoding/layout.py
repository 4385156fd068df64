"""Hash-grid configuration and the per-level layout, computed exactly as tiny-cuda-nn's ``GridEncoding`` does.

tiny-cuda-nn (``include/tiny-cuda-nn/encodings/grid.h``) works in float32:

* level scale ``s_l = exp2(l * log2(per_level_scale)) * base_resolution - 1``;
* level resolution ``r_l = ceil(s_l) + 1``;
* entries per level ``min(2**log2_hashmap_size, next_multiple_of_8(r_l**3))``; a level is *dense* (row-major
  index ``x + y r + z r^2``, wrapped modulo the level size) when ``r_l**3`` fits its table, otherwise *hashed*
  (``x * 1 ^ y * 2654435761 ^ z * 805459861`` in uint32, modulo the table size);
* the flat parameter vector is the levels one after another, each ``[entries, features_per_level]`` row-major.

``per_level_scale`` is derived from base/max resolution as nerfstudio and instant-ngp do:
``exp((ln(max_resolution) - ln(base_resolution)) / (num_levels - 1))`` (1 for a single level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from ...core.errors import ConfigError

Backend = Literal["auto", "torch", "cpp", "tcnn", "cuda"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "cpp", "tcnn", "cuda")
HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)
"""tiny-cuda-nn's spatial-hash primes for x, y, z (the first is 1 for memory coherence)."""
INIT_RANGE = 1.0e-4
"""Parameters start uniform in [-INIT_RANGE, INIT_RANGE], as in tiny-cuda-nn."""


@dataclass
class HashGridConfig:
    """Multiresolution hash encoding of 3-D positions in [0, 1]^3 (Instant-NGP, tiny-cuda-nn semantics)."""

    num_levels: int = 16
    """Number of resolution levels (1..32, tiny-cuda-nn's limit)."""
    features_per_level: int = 2
    """Trainable features stored per table entry (1, 2, 4 or 8, as tiny-cuda-nn allows)."""
    log2_hashmap_size: int = 19
    """log2 of the entries of each level's table (3..28); coarse levels that fit use fewer (dense)."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level."""
    max_resolution: int = 2048
    """Grid resolution of the finest level; sets per_level_scale (see :func:`per_level_scale`)."""
    backend: Backend = "auto"
    """Implementation: "torch" reference, "cpp" compiled CPU kernels, "tcnn" tiny-cuda-nn, "cuda" GPU path
    (the torch reference on CUDA tensors), "auto" = tcnn on CUDA when it imports, else cpp on CPU when it builds,
    else torch."""

    def __post_init__(self) -> None:
        validate(self)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"HashGridConfig.{name}={value!r} is invalid: expected {expected}")


def validate(config: HashGridConfig) -> None:
    """Raise ConfigError naming the first out-of-range field of ``config``."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name != "backend":
            _check(isinstance(value, int) and not isinstance(value, bool), f.name, value, "an integer")
    _check(1 <= config.num_levels <= 32, "num_levels", config.num_levels, "1..32")
    _check(config.features_per_level in (1, 2, 4, 8), "features_per_level", config.features_per_level, "1, 2, 4 or 8")
    _check(3 <= config.log2_hashmap_size <= 28, "log2_hashmap_size", config.log2_hashmap_size, "3..28")
    _check(config.base_resolution >= 2, "base_resolution", config.base_resolution, ">= 2")
    _check(
        config.max_resolution >= config.base_resolution,
        "max_resolution",
        config.max_resolution,
        f">= base_resolution ({config.base_resolution})",
    )
    _check(config.backend in BACKENDS, "backend", config.backend, " | ".join(BACKENDS))


def per_level_scale(config: HashGridConfig) -> float:
    """Growth factor of the resolution between consecutive levels (nerfstudio / instant-ngp formula)."""
    if config.num_levels == 1:
        return 1.0
    return math.exp((math.log(config.max_resolution) - math.log(config.base_resolution)) / (config.num_levels - 1))


@dataclass(frozen=True)
class LevelSpec:
    """Geometry of one level of the grid."""

    scale: float
    """Positions map to ``x * scale + 0.5`` grid units (a float32 value)."""
    resolution: int
    """Grid vertices per side, ``ceil(scale) + 1``."""
    size: int
    """Table entries of this level."""
    offset: int
    """Index of this level's first entry in the flat (tiny-cuda-nn) table."""
    hashed: bool
    """True when ``resolution**3`` exceeds the table and the spatial hash is used."""


def level_specs(config: HashGridConfig) -> list[LevelSpec]:
    """Per-level scale, resolution, table size and flat offset, in tiny-cuda-nn's float32 arithmetic."""
    table_size = 1 << config.log2_hashmap_size
    log2_scale = np.log2(np.float32(per_level_scale(config)))
    specs, offset = [], 0
    for level in range(config.num_levels):
        scale = np.exp2(np.float32(level) * log2_scale) * np.float32(config.base_resolution) - np.float32(1.0)
        resolution = int(np.ceil(np.float32(scale))) + 1
        dense_entries = resolution**3
        size = min(table_size, -(-dense_entries // 8) * 8)
        specs.append(LevelSpec(float(np.float32(scale)), resolution, size, offset, dense_entries > size))
        offset += size
    return specs


def num_params(config: HashGridConfig) -> int:
    """Length of the flat (tiny-cuda-nn) parameter vector."""
    specs = level_specs(config)
    return (specs[-1].offset + specs[-1].size) * config.features_per_level


def tcnn_encoding_config(config: HashGridConfig) -> dict:
    """The tiny-cuda-nn ``encoding_config`` dict describing the same grid."""
    return {
        "otype": "HashGrid",
        "n_levels": config.num_levels,
        "n_features_per_level": config.features_per_level,
        "log2_hashmap_size": config.log2_hashmap_size,
        "base_resolution": config.base_resolution,
        "per_level_scale": per_level_scale(config),
        "interpolation": "Linear",
    }
