"""Primitives of the synthetic scene: analytic ray intersection, albedo, normals and surface sampling (numpy).

Every primitive has a local frame (its centre, a yaw about world +z) and half extents. Its albedo (``material``)
is a "hex-planar" projection of six procedural textures, one per signed local axis, blended by the surface normal:
planar faces read exactly one texture, curved surfaces have neither seams nor poles nor mirrored repeats.

Hot paths use component-major arrays for speed: ray directions and points are [3, R] (x, y, z rows); ray
math runs in the rays' dtype (float32 for colour, float64 for exact depth), shading in float32.
Rays share one origin and have *unnormalised* directions whose optical-axis component is 1, so a hit distance
``t`` is the z-depth of the hit. Part indices of planar faces are ``2 * axis + (normal > 0)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._synthetic_materials import object_textures, room_textures
from ._synthetic_texture import make_texture, sample_bilinear

EPS = 1e-6
DIRECTIONS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], np.float32)  # [6, 3]
_KEY_LIGHT = np.array([0.45, 0.3, 1.0], np.float32) / np.float32(np.linalg.norm([0.45, 0.3, 1.0]))
_FILL_LIGHT = np.array([-0.8, 0.5, 0.15], np.float32) / np.float32(np.linalg.norm([-0.8, 0.5, 0.15]))
_REFERENCE_TEXEL_M = 0.01  # patterns shrink with the texel size: finer texels, smaller blotches and stripes


def apply(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """matrix [A, 3] times component-major vectors [3, M] -> [A, M] in the vectors' dtype (einsum: numpy's
    matmul is slow for this shape)."""
    return np.einsum("ij,jk->ik", np.asarray(matrix, vectors.dtype), vectors)


def shading(normals: np.ndarray) -> np.ndarray:
    """[3, M] world unit normals -> [M] Lambertian key and fill light plus ambient (the same from every view)."""
    key, fill = np.clip(apply(np.stack([_KEY_LIGHT, _FILL_LIGHT]), normals), 0.0, None)
    return 0.32 + 0.55 * key + 0.22 * fill


@dataclass(frozen=True)
class Primitive:
    """One solid (or, for the room, the inside of a box). Subclasses define the shape."""

    name: str
    """Unique name; it also seeds this primitive's textures."""
    center: tuple[float, float, float]
    """Centre of the local frame, world metres."""
    half: tuple[float, float, float]
    """Half extents of the local bounding box, metres."""
    yaw_deg: float = 0.0
    """Rotation of the local frame about world +z, degrees."""
    texel_m: float = 0.01
    """Texture resolution, metres per texel."""
    material: str = "noise"
    """Albedo: "room" (floor, ceiling and furnished walls), crate | stone | marble | stripes | dots |
    checker (``_synthetic_materials``), or "noise" (seeded multi-scale noise of ``_synthetic_texture``)."""

    @property
    def rotation(self) -> np.ndarray:
        """[3, 3] world_from_local rotation (float64)."""
        c, s = np.cos(np.radians(self.yaw_deg)), np.sin(np.radians(self.yaw_deg))
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def local_rays(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World origin [3] and dirs [3, R] -> local origin [3] and dirs [3, R], in the dirs' dtype."""
        local_origin = (self.rotation.T @ (np.asarray(origin) - np.asarray(self.center))).astype(dirs.dtype)
        if self.yaw_deg == 0.0:
            return local_origin, dirs
        return local_origin, apply(self.rotation.T, dirs)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """[M, 3] world points -> [M, 3] local points (float64)."""
        return np.einsum("mj,jk->mk", np.asarray(points, np.float64) - np.asarray(self.center), self.rotation)

    def to_world(self, local: np.ndarray) -> np.ndarray:
        """[M, 3] local points -> [M, 3] world points (float64)."""
        return np.einsum("mk,jk->mj", np.asarray(local, np.float64), self.rotation) + np.asarray(self.center)

    def describe(self) -> dict:
        """Plain-JSON description of the shape."""
        return {"type": type(self).__name__.lower(), "name": self.name, "center": list(self.center),
                "half_extents": list(self.half), "yaw_deg": self.yaw_deg}

    def textures(self) -> list[np.ndarray]:
        """Six [rows, cols, 3] albedo textures, one per signed local axis (built once, then cached)."""
        return _textures(self.name, self.half, self.texel_m, self.material)

    def _lookup(self, k: int, local: np.ndarray) -> np.ndarray:
        """Texture of signed axis ``k`` at local points [3, M] projected along that axis -> [3, M]."""
        axis = k // 2
        u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3
        cols = (local[u_axis] + np.float32(self.half[u_axis])) / np.float32(self.texel_m)
        rows = (local[v_axis] + np.float32(self.half[v_axis])) / np.float32(self.texel_m)
        return sample_bilinear(self.textures()[k], cols, rows).T

    def colour(self, local: np.ndarray, part: np.ndarray) -> np.ndarray:
        """Shaded colour [3, M] at local hit points [3, M] (float32) of parts [M]; curved shapes use this
        hex-planar blend, planar ones override it."""
        normals = self.normals(local, part)  # [3, M]
        weights = normals * normals
        weights *= weights
        weights /= weights.sum(axis=0, keepdims=True)
        albedo = np.zeros_like(local)
        for k in range(6):
            axis = k // 2
            use = np.flatnonzero((weights[axis] > 1e-4) & ((normals[axis] > 0) == bool(k % 2)))
            if use.size:
                albedo[:, use] += weights[axis, use] * self._lookup(k, local[:, use])
        return albedo * shading(apply(self.rotation, normals))

    def normals(self, local: np.ndarray, part: np.ndarray) -> np.ndarray:
        """[3, M] local unit normals at local points [3, M] of parts [M]."""
        raise NotImplementedError


@functools.lru_cache(maxsize=None)
def _textures(name: str, half: tuple[float, float, float], texel_m: float, material: str) -> list[np.ndarray]:
    rng = np.random.default_rng(list(name.encode()))
    if material == "room":
        return room_textures(half, texel_m, rng)
    if material != "noise":
        return object_textures(material, half, texel_m, rng)
    size = [int(np.ceil(2.0 * h / texel_m)) + 2 for h in half]
    feature = texel_m / _REFERENCE_TEXEL_M
    return [make_texture((size[(k // 2 + 2) % 3], size[(k // 2 + 1) % 3]), texel_m, rng, feature) for k in range(6)]


def slab(origin: np.ndarray, dirs: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray/box slabs in local axes: origin [3], dirs [3, R], half [3] -> entry t [R] and exit t [R]; the ray
    meets the box where entry <= exit."""
    near = far = None
    for axis in range(3):
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dirs[axis]
            t1 = float(-half[axis] - origin[axis]) * inv
            t2 = float(half[axis] - origin[axis]) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)  # a NaN (0 * inf) loses against any number
        near = lo if near is None else np.fmax(near, lo)
        far = hi if far is None else np.fmin(far, hi)
    return near, far


def _face_parts(local: np.ndarray, half: tuple[float, float, float], inward: bool) -> np.ndarray:
    """Part [M] of box-face points [3, M]: the axis where the point is outermost, and the normal's sign."""
    ratio = np.abs(local) / np.asarray(half, np.float32)[:, None]
    axis = ratio.argmax(axis=0)
    positive = np.take_along_axis(local, axis[None], axis=0)[0] > 0
    return (2 * axis + (positive != inward)).astype(np.int8)


@dataclass(frozen=True)
class Box(Primitive):
    """A solid box; its parts are its six faces (index of the outward normal in ``DIRECTIONS``)."""

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Local origin [3], dirs [3, R] -> hit t [R] (inf = miss)."""
        near, far = slab(origin, dirs, self.half)
        return np.where((near <= far) & (near > EPS), near, np.float32(np.inf))

    def parts(self, local: np.ndarray) -> np.ndarray:
        """[M] part index of local surface points [3, M]."""
        return _face_parts(local, self.half, inward=False)

    def normals(self, local: np.ndarray, part: np.ndarray) -> np.ndarray:
        return DIRECTIONS[part].T

    def colour(self, local: np.ndarray, part: np.ndarray) -> np.ndarray:
        out = np.empty_like(local)
        for k in range(6):
            use = np.flatnonzero(part == k)
            if use.size:
                light = shading(apply(self.rotation, DIRECTIONS[k][:, None]))[0]
                out[:, use] = self._lookup(k, local[:, use]) * light
        return out

    def surface_parts(self) -> list[tuple[float, int]]:
        """(area, part) of every face."""
        h = self.half
        return [(4.0 * h[(k // 2 + 1) % 3] * h[(k // 2 + 2) % 3], k) for k in range(6)]

    def sample_part(self, part: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """[count, 3] local points uniformly on face ``part``."""
        half = np.asarray(self.half)
        local = rng.uniform(-half, half, size=(count, 3))
        local[:, part // 2] = half[part // 2] * (1.0 if part % 2 else -1.0)
        return local

    def contains(self, local: np.ndarray, tol: float) -> np.ndarray:
        """[M] whether local points [M, 3] lie in the closed box grown by ``tol``."""
        return np.all(np.abs(local) <= np.asarray(self.half) + tol, axis=1)


@dataclass(frozen=True)
class Room(Box):
    """The inside of a box: rays from inside hit its walls; parts are the faces' inward normals."""

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        near, far = slab(origin, dirs, self.half)
        if np.all(np.abs(origin) < np.asarray(self.half)):
            return far  # from inside, every ray leaves the room
        return np.where((near <= far) & (far > EPS), far, np.float32(np.inf))

    def parts(self, local: np.ndarray) -> np.ndarray:
        return _face_parts(local, self.half, inward=True)

    def sample_part(self, part: int, count: int, rng: np.random.Generator) -> np.ndarray:
        return super().sample_part(part ^ 1, count, rng)  # the face whose inward normal is ``part``


@dataclass(frozen=True)
class Sphere(Primitive):
    """A sphere of radius ``half[0]`` centred on the local origin; one part (0)."""

    def describe(self) -> dict:
        return {**super().describe(), "radius": self.half[0]}

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = dirs[0] * dirs[0] + dirs[1] * dirs[1] + dirs[2] * dirs[2]
        b = origin[0] * dirs[0] + origin[1] * dirs[1] + origin[2] * dirs[2]
        c = float(origin @ origin) - self.half[0] ** 2
        disc = b * b - a * c
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / a
        return np.where((disc >= 0) & (t > EPS), t, np.float32(np.inf))

    def parts(self, local: np.ndarray) -> np.ndarray:
        return np.zeros(local.shape[1], np.int8)

    def normals(self, local: np.ndarray, part: np.ndarray) -> np.ndarray:
        return local / np.sqrt((local * local).sum(axis=0, keepdims=True))

    def surface_parts(self) -> list[tuple[float, int]]:
        return [(4.0 * np.pi * self.half[0] ** 2, 0)]

    def sample_part(self, part: int, count: int, rng: np.random.Generator) -> np.ndarray:
        v = rng.standard_normal((count, 3))
        return self.half[0] * v / np.linalg.norm(v, axis=1, keepdims=True)

    def contains(self, local: np.ndarray, tol: float) -> np.ndarray:
        return np.linalg.norm(local, axis=1) <= self.half[0] + tol


@dataclass(frozen=True)
class Cylinder(Primitive):
    """A capped cylinder along local z: radius ``half[0]``, z in [-half[2], half[2]]. Parts: 0 side, 4 bottom
    cap, 5 top cap."""

    def describe(self) -> dict:
        return {**super().describe(), "radius": self.half[0], "height": 2.0 * self.half[2]}

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        r, hz = self.half[0], self.half[2]
        a = dirs[0] * dirs[0] + dirs[1] * dirs[1]
        b = origin[0] * dirs[0] + origin[1] * dirs[1]
        disc = b * b - a * float(origin[0] ** 2 + origin[1] ** 2 - r * r)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_side = (-b - np.sqrt(disc)) / a
            ok = (disc >= 0) & (t_side > EPS) & (np.abs(origin[2] + t_side * dirs[2]) <= hz)
            best = np.where(ok, t_side, np.float32(np.inf))
            for z in (-hz, hz):
                t = (z - origin[2]) / dirs[2]
                x, y = origin[0] + t * dirs[0], origin[1] + t * dirs[1]
                best = np.where((t > EPS) & (x * x + y * y <= r * r), np.fmin(t, best), best)
        return best

    def parts(self, local: np.ndarray) -> np.ndarray:
        radial = np.sqrt(local[0] * local[0] + local[1] * local[1]) / np.float32(self.half[0])
        cap = np.abs(local[2]) / np.float32(self.half[2]) > radial
        return np.where(cap, np.where(local[2] > 0, 5, 4), 0).astype(np.int8)

    def normals(self, local: np.ndarray, part: np.ndarray) -> np.ndarray:
        side = np.stack([local[0], local[1], np.zeros_like(local[0])])
        side /= np.maximum(np.sqrt((side * side).sum(axis=0, keepdims=True)), np.float32(1e-12))
        return np.where(part == 0, side, DIRECTIONS[np.maximum(part, 4)].T)

    def surface_parts(self) -> list[tuple[float, int]]:
        r, hz = self.half[0], self.half[2]
        return [(2.0 * np.pi * r * 2.0 * hz, 0), (np.pi * r * r, 4), (np.pi * r * r, 5)]

    def sample_part(self, part: int, count: int, rng: np.random.Generator) -> np.ndarray:
        r, hz = self.half[0], self.half[2]
        angle = rng.uniform(0.0, 2.0 * np.pi, count)
        if part == 0:
            radius, z = np.full(count, r), rng.uniform(-hz, hz, count)
        else:
            radius, z = r * np.sqrt(rng.uniform(0.0, 1.0, count)), np.full(count, hz if part == 5 else -hz)
        return np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1)

    def contains(self, local: np.ndarray, tol: float) -> np.ndarray:
        radial = np.hypot(local[:, 0], local[:, 1])
        return (radial <= self.half[0] + tol) & (np.abs(local[:, 2]) <= self.half[2] + tol)
