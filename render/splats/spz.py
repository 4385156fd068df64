"""Niantic's SPZ ("splat zip") format, versions 2 and 3, implemented from the published format (nianticlabs/spz,
MIT): no maintained Python library exists (the PyPI ``spz`` 0.0.1 is an early Rust binding), and the format is
small.

Layout: the whole file is gzip-compressed; inside, a 16-byte little-endian header

    uint32 magic 0x5053474e ("NGSP"), uint32 version (2 or 3), uint32 num_points,
    uint8 sh_degree (0..3), uint8 fractional_bits, uint8 flags (0x1 antialiased, 0x2 extensions), uint8 reserved

then attribute arrays, each for all points in turn: positions (3 x 24-bit signed fixed point with
``fractional_bits``), alphas (uint8 ``sigmoid(opacity) * 255``), colours (uint8 ``f_dc * 0.15 * 255 + 127.5``),
scales (uint8 ``(log_scale + 10) * 16``), rotations (version 2: x y z of the unit quaternion with w >= 0 as
``(q + 1) * 127.5``; version 3: "smallest three", 32 bits: the index of the largest component in the top two bits,
then for each other component a sign bit and a 9-bit magnitude scaled by 1/sqrt(2)), and the higher SH
coefficients (uint8 ``round(x * 128) + 128`` rounded to buckets of 8 for degree 1 and 16 above; per point,
coefficient-major with r g b interleaved).

Axes: SPZ stores points in a right-handed, Y-up frame (x right, y up, z back: "RUB"), like glTF, so this module
writes the splats rotated from the dataset's Z-up frame by :data:`.transform.Y_UP_FROM_Z_UP` (SH colour rotated
with them) and rotates them back on read. Units are the dataset's; colour is sRGB as in :mod:`.model`.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ...core.errors import InputError
from .model import GaussianSplats
from .transform import Y_UP_FROM_Z_UP, rotate_splats

MAGIC = 0x5053474E
HEADER = struct.Struct("<IIIBBBB")
COLOR_SCALE = 0.15
"""f_dc is stored as ``f_dc * COLOR_SCALE * 255 + 127.5``: a range of about [-3.3, 3.3]."""
SQRT1_2 = float(np.sqrt(0.5))
MAX_FRACTIONAL_BITS = 12
"""The reference writer's choice (~0.25 mm at metre scale); fewer bits when the scene is too large for 24 bits."""


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _fractional_bits(positions: np.ndarray) -> int:
    """Most fractional bits (<= 12) such that every coordinate fits a signed 24-bit integer."""
    extent = float(np.abs(positions).max()) if positions.size else 0.0
    bits = MAX_FRACTIONAL_BITS
    while bits > 0 and extent * (1 << bits) >= (1 << 23) - 1:
        bits -= 1
    if extent * (1 << bits) >= (1 << 23) - 1:
        raise InputError(f"splats extend to {extent:.3g} units from the origin; SPZ's 24-bit positions hold 8e6")
    return bits


def _pack_positions(positions: np.ndarray, bits: int) -> np.ndarray:
    fixed = np.round(positions.astype(np.float64) * (1 << bits)).astype(np.int64) & 0xFFFFFF  # [n, 3]
    return np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], axis=-1).astype(np.uint8)  # [n,3,3]


def _unpack_positions(data: np.ndarray, bits: int) -> np.ndarray:
    b = data.reshape(-1, 3, 3).astype(np.int64)
    fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    return (fixed / float(1 << bits)).astype(np.float32)


def _pack_quats_smallest_three(xyzw: np.ndarray) -> np.ndarray:
    """[n, 4] unit quaternions x y z w -> [n, 4] bytes (version 3)."""
    q = xyzw / np.linalg.norm(xyzw, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(q[np.arange(len(q)), largest][:, None] < 0, -q, q)  # the largest component made positive
    comp = largest.astype(np.uint64)
    for i in range(4):
        other = largest != i
        mag = np.floor(511.0 * np.abs(q[:, i]) / SQRT1_2 + 0.5).astype(np.uint64)
        value = ((q[:, i] < 0).astype(np.uint64) << np.uint64(9)) | np.minimum(mag, 511)
        comp = np.where(other, (comp << np.uint64(10)) | value, comp)
    comp = comp.astype(np.uint32)
    return np.stack([(comp >> s) & 0xFF for s in (0, 8, 16, 24)], axis=1).astype(np.uint8)


def _unpack_quats_smallest_three(data: np.ndarray) -> np.ndarray:
    b = data.reshape(-1, 4).astype(np.uint32)
    comp = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)
    largest = (comp >> 30).astype(np.int64)
    q = np.zeros((len(b), 4), np.float64)
    for i in (3, 2, 1, 0):
        other = largest != i
        mag = (comp & 511).astype(np.float64) * SQRT1_2 / 511.0
        value = np.where((comp >> 9) & 1, -mag, mag)
        q[:, i] = np.where(other, value, 0.0)
        comp = np.where(other, comp >> 10, comp)
    rest = np.clip(1.0 - (q * q).sum(axis=1), 0.0, None)
    q[np.arange(len(b)), largest] = np.sqrt(rest)
    return q


def _unpack_quats_first_three(data: np.ndarray) -> np.ndarray:
    xyz = data.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0
    w = np.sqrt(np.clip(1.0 - (xyz * xyz).sum(axis=1), 0.0, None))
    return np.concatenate([xyz, w[:, None]], axis=1)


def _pack_sh(rest: np.ndarray) -> np.ndarray:
    """[n, k-1, 3] higher SH coefficients -> uint8, 5 bits for degree 1 and 4 bits above (the reference's)."""
    q = np.round(rest * 128.0).astype(np.int64) + 128
    bucket = np.where(np.arange(rest.shape[1]) < 3, 8, 16)[None, :, None]
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def spz_bytes(splats: GaussianSplats, version: int = 3) -> bytes:
    """The gzip-compressed SPZ file of ``splats`` (dataset frame, Z-up; written Y-up)."""
    s = rotate_splats(splats.detach().to("cpu"), Y_UP_FROM_Z_UP)
    n, degree = s.num_splats, s.sh_degree
    means = s.means.double().numpy()
    bits = _fractional_bits(means)
    wxyz = s.quats.double().numpy()
    xyzw = np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=1)
    if version == 3:
        rotations = _pack_quats_smallest_three(xyzw)
    else:
        xyzw = xyzw / np.linalg.norm(xyzw, axis=1, keepdims=True)
        xyzw = np.where(xyzw[:, 3:4] < 0, -xyzw, xyzw)
        rotations = _uint8((xyzw[:, :3] + 1.0) * 127.5)
    sh = s.sh.double().numpy()
    parts = [HEADER.pack(MAGIC, version, n, degree, bits, 0, 0), _pack_positions(means, bits),
             _uint8(torch.sigmoid(s.opacity_logits.double()).numpy() * 255.0),
             _uint8(sh[:, 0, :] * (COLOR_SCALE * 255.0) + 127.5), _uint8((s.log_scales.double().numpy() + 10.0) * 16.0),
             rotations, _pack_sh(sh[:, 1:, :])]
    return gzip.compress(b"".join(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else p
                                  for p in parts), compresslevel=6, mtime=0)


def _read_header(path: Path, raw: bytes) -> tuple[int, int, int, int, int]:
    if len(raw) < HEADER.size:
        raise InputError(f"{path}: not an SPZ file (shorter than its 16-byte header)")
    magic, version, n, degree, bits, flags, _ = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise InputError(f"{path}: not an SPZ file (magic {magic:#x}, expected {MAGIC:#x} 'NGSP')")
    if version not in (2, 3):
        raise InputError(f"{path}: SPZ version {version} is not supported; expected 2 or 3")
    if degree > 3 or flags & 0x2:
        raise InputError(f"{path}: SPZ with SH degree {degree} / extensions (flags {flags:#x}) is not supported")
    return version, n, degree, bits, flags


def read_spz(path: Path) -> GaussianSplats:
    """Read an SPZ file (version 2 or 3) into splats in the dataset frame (Z-up)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; a cut stream: zlib.error
        raise InputError(f"{path}: not a readable SPZ file ({exc})") from None
    version, n, degree, bits, _ = _read_header(path, raw)
    k = (degree + 1) ** 2
    sizes = [9 * n, n, 3 * n, 3 * n, (4 if version == 3 else 3) * n, 3 * (k - 1) * n]
    if len(raw) != HEADER.size + sum(sizes):
        raise InputError(f"{path}: SPZ data is {len(raw) - HEADER.size} bytes, expected {sum(sizes)} for {n} points")
    arrays, offset = [], HEADER.size
    for size in sizes:
        arrays.append(np.frombuffer(raw, np.uint8, size, offset))
        offset += size
    positions, alphas, colours, scales, rotations, rest = arrays
    xyzw = _unpack_quats_smallest_three(rotations) if version == 3 else _unpack_quats_first_three(rotations)
    sh = np.zeros((n, k, 3), np.float64)
    sh[:, 0, :] = (colours.reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE
    sh[:, 1:, :] = (rest.reshape(n, k - 1, 3).astype(np.float64) - 128.0) / 128.0
    alpha = np.clip(alphas.astype(np.float64) / 255.0, 1e-6, 1.0 - 1e-6)
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731
    splats = GaussianSplats(means=t(_unpack_positions(positions, bits)),
                            quats=t(np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)),
                            log_scales=t(scales.reshape(n, 3) / 16.0 - 10.0),
                            opacity_logits=t(np.log(alpha / (1.0 - alpha))), sh=t(sh))
    return rotate_splats(splats, Y_UP_FROM_Z_UP.T)
