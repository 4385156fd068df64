"""Procedural albedo textures of the synthetic scene (numpy + OpenCV only, no external assets).

Each texture is a [rows, cols, 3] float32 albedo image in [0.03, 0.97] made of multi-octave value noise between
two colours, blotches of a third colour, warped stripes of a fourth colour and a fine brightness speckle, with
a random palette per texture, so that every surface looks different and carries SIFT-detectable detail at many
scales (no repetitive checkerboard). :func:`sample_bilinear` reads it at continuous texel coordinates.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

_LOOKUP_ROW = 1024  # cv2.remap needs maps below 32767 on each side: points are looked up in rows of this length


def value_noise(
    shape: tuple[int, int], rng: np.random.Generator, wavelength: float, octaves: int = 6, gain: float = 0.6
) -> np.ndarray:
    """[rows, cols] fractal value noise (zero mean, unit std): ``octaves`` bicubic-upsampled random lattices,
    the first with ``wavelength`` texels between lattice points, each next one at half the wavelength."""
    rows, cols = shape
    total = np.zeros(shape, np.float32)
    amplitude, lam = 1.0, float(wavelength)
    for _ in range(octaves):
        if lam < 2.0:
            break
        grid_rows, grid_cols = int(np.ceil(rows / lam)) + 4, int(np.ceil(cols / lam)) + 4
        lattice = rng.standard_normal((grid_rows, grid_cols)).astype(np.float32)
        size = (int(round(grid_cols * lam)), int(round(grid_rows * lam)))  # cv2 wants (width, height)
        upsampled = cv2.resize(lattice, size, interpolation=cv2.INTER_CUBIC)
        off_r, off_c = rng.integers(0, int(lam) + 1, size=2)
        total += amplitude * upsampled[off_r : off_r + rows, off_c : off_c + cols]
        amplitude *= gain
        lam /= 2.0
    return (total - total.mean()) / max(float(total.std()), 1e-6)


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """[count, 3] distinct RGB colours: hues spread around the wheel from a random start."""
    start = rng.uniform(0.0, 1.0)
    colours = []
    for i in range(count):
        hue = (start + i / count + rng.uniform(-0.06, 0.06)) % 1.0
        saturation = rng.uniform(0.35, 0.85)
        value = rng.uniform(0.4, 0.95) if i else rng.uniform(0.6, 0.95)
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return np.asarray(colours, np.float32)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """a: [rows, cols, 3]; colour: [3]; weight: [rows, cols] -> [rows, cols, 3]."""
    return a + weight[..., None] * (colour - a)


def make_texture(
    shape: tuple[int, int], texel_m: float, rng: np.random.Generator, feature_m: float = 1.0
) -> np.ndarray:
    """[rows, cols, 3] float32 albedo of one surface whose texels are ``texel_m`` metres wide; ``feature_m``
    scales the size of every pattern (1.0: blotches about 0.25 m, stripes 0.12..0.35 m apart)."""
    rows, cols = shape
    per_m = feature_m / texel_m  # texels per (scaled) metre
    colours = _palette(rng, 4)
    base = value_noise(shape, rng, rng.uniform(0.4, 0.8) * per_m)
    albedo = _mix(np.broadcast_to(colours[0], (rows, cols, 3)).copy(), colours[1], _smoothstep(-1.2, 1.2, base))
    blotch = value_noise(shape, rng, rng.uniform(0.15, 0.35) * per_m, octaves=4, gain=0.5)
    albedo = _mix(albedo, colours[2], _smoothstep(0.5, 0.8, blotch))
    albedo = _mix(albedo, colours[0] * 0.35, _smoothstep(0.9, 1.15, -blotch))  # dark spots
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32) * texel_m
    angle, period = rng.uniform(0.0, np.pi), rng.uniform(0.12, 0.35) * feature_m
    warp = value_noise(shape, rng, 0.5 * per_m, octaves=3)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2.0 * np.pi / period) + 1.5 * warp
    band = _smoothstep(0.2, 0.5, np.sin(phase)) * _smoothstep(-0.3, 0.3, value_noise(shape, rng, 0.6 * per_m))
    albedo = _mix(albedo, colours[3], rng.uniform(0.6, 0.9) * band)
    speckle = value_noise(shape, rng, 0.05 * per_m, octaves=2)
    albedo *= (1.0 + 0.15 * speckle)[..., None]
    return np.clip(albedo, 0.03, 0.97).astype(np.float32)


def sample_bilinear(texture: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``texture`` [H, W, 3] at texel coordinates cols, rows: [M] (texel centres at integers,
    edges clamped); returns [M, 3] float32."""
    count = cols.shape[0]
    padded = -(-count // _LOOKUP_ROW) * _LOOKUP_ROW
    map_x = np.zeros(padded, np.float32)
    map_y = np.zeros(padded, np.float32)
    map_x[:count], map_y[:count] = cols, rows
    shape = (padded // _LOOKUP_ROW, _LOOKUP_ROW)
    out = cv2.remap(
        texture, map_x.reshape(shape), map_y.reshape(shape), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out.reshape(-1, 3)[:count]
