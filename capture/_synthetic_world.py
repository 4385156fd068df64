"""The synthetic scene as a whole: the fixed layout, nearest-hit ray casting, shading and surface sampling.

World frame: metres, **+z up**, the floor is z = 0, the room is centred on the z axis and the objects stand
around the origin. Rays are component-major ([3, R]) as in :mod:`._synthetic_scene`.
"""

from __future__ import annotations

import numpy as np

from ._synthetic_scene import Box, Cylinder, Primitive, Room, Sphere, slab


class Scene:
    """A room (primitive 0) and solid objects inside it (primitives 1..)."""

    def __init__(self, room: Room, objects: list[Primitive], target: tuple[float, float, float]):
        self.room, self.objects = room, objects
        self.primitives: list[Primitive] = [room, *objects]
        self.target = target
        """Where the camera path looks, world metres."""
        corners = np.array([[np.asarray(o.center) + s * _yawed_half(o) for s in (-1, 1)] for o in objects])
        self.objects_min, self.objects_max = corners.min(axis=(0, 1)), corners.max(axis=(0, 1))  # [3], [3]

    def describe(self) -> dict:
        """Plain-JSON description of the geometry."""
        return {"world_up": [0.0, 0.0, 1.0], "units": "metres", "room": self.room.describe(),
                "objects": [o.describe() for o in self.objects], "look_at_target": list(self.target),
                "objects_aabb": [self.objects_min.tolist(), self.objects_max.tolist()]}

    def cast(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """origin [3], dirs [3, R] -> nearest hit t [R] (inf: miss) and primitive index [R] (-1: miss)."""
        t = self.room.intersect(*self.room.local_rays(origin, dirs))
        prim = np.where(np.isfinite(t), 0, -1).astype(np.int8)
        near = self._rays_near_objects(origin, dirs)  # [S] rays that may hit an object
        sub_dirs, sub_t, sub_prim = dirs[:, near], t[near], prim[near]
        for index, obj in enumerate(self.objects, start=1):
            t_obj = obj.intersect(*obj.local_rays(origin, sub_dirs))
            sub_prim = np.where(t_obj < sub_t, np.int8(index), sub_prim)
            sub_t = np.fmin(t_obj, sub_t)
        t[near], prim[near] = sub_t, sub_prim
        return t, prim

    def _rays_near_objects(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        centre = (self.objects_min + self.objects_max) / 2.0
        half = (self.objects_max - self.objects_min) / 2.0 + 1e-3
        near, far = slab(np.asarray(origin) - centre, dirs, half)
        return np.flatnonzero((near <= far) & (far > 0))

    def shade(self, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, prim: np.ndarray) -> np.ndarray:
        """Colours [3, R] float32 in [0, 1] of the hits that :meth:`cast` returned (misses are black)."""
        rgb = np.zeros(dirs.shape, np.float32)
        for index, primitive in enumerate(self.primitives):
            hit = np.flatnonzero(prim == index)
            if hit.size:
                local_origin, local_dirs = primitive.local_rays(origin, dirs[:, hit])
                local = (local_origin[:, None] + t[hit] * local_dirs).astype(np.float32, copy=False)  # [3, M]
                rgb[:, hit] = primitive.colour(local, primitive.parts(local))
        return np.clip(rgb, 0.0, 1.0, out=rgb)

    def sample_surface(self, count: int, rng: np.random.Generator, objects_only: bool = False) -> np.ndarray:
        """[count, 3] world points, area-uniform on the surfaces that can be seen (faces resting on the floor
        or on another solid, and anything inside another solid, are left out)."""
        first = 1 if objects_only else 0
        parts = [(a, i, k) for i in range(first, len(self.primitives)) for a, k in self.primitives[i].surface_parts()]
        areas = np.array([p[0] for p in parts])
        chunks, total = [], 0
        while total < count:
            per_part = rng.multinomial(int((count - total) * 1.3) + 16, areas / areas.sum())
            for (_, i, k), number in zip(parts, per_part):
                primitive = self.primitives[i]
                world = primitive.to_world(primitive.sample_part(k, int(number), rng))
                chunks.append(world[self._visible(world, i)])
                total += len(chunks[-1])
        points = np.concatenate(chunks)
        return points[rng.permutation(len(points))[:count]]

    def _visible(self, world: np.ndarray, owner: int, tol: float = 1e-6) -> np.ndarray:
        """[M] False for points in (or on) another object, and for object points on the room's boundary."""
        keep = np.ones(len(world), bool)
        for index, primitive in enumerate(self.objects, start=1):
            if index != owner:
                keep &= ~primitive.contains(primitive.to_local(world), tol)
        if owner != 0:
            keep &= np.all(np.abs(self.room.to_local(world)) < np.asarray(self.room.half) - tol, axis=1)
        return keep


def _yawed_half(primitive: Primitive) -> np.ndarray:
    """[3] half extents of the world-axis-aligned box around a (yawed) primitive."""
    return np.abs(primitive.rotation) @ np.asarray(primitive.half)


def default_scene() -> Scene:
    """The fixed scene: an 8 x 8 x 3 m room (plank floor, tiled ceiling, painted walls with windows, doors,
    pictures and bookshelves) and five solids standing around the origin: a wooden crate, a polka-dot ball, a marble
    column, a stone pedestal and a chequered orb on it."""
    fine = 0.004
    room = Room("room", center=(0.0, 0.0, 1.5), half=(4.0, 4.0, 1.5), texel_m=0.01, material="room")
    objects: list[Primitive] = [
        Box("crate", center=(0.55, -0.35, 0.35), half=(0.35, 0.3, 0.35), yaw_deg=20.0, texel_m=fine,
            material="crate"),
        Sphere("ball", center=(-0.5, -0.3, 0.45), half=(0.45, 0.45, 0.45), texel_m=fine, material="dots"),
        Cylinder("column", center=(0.1, 0.6, 0.55), half=(0.25, 0.25, 0.55), texel_m=fine, material="marble"),
        Box("pedestal", center=(-0.6, 0.75, 0.25), half=(0.2, 0.2, 0.25), yaw_deg=-15.0, texel_m=fine,
            material="stone"),
        Sphere("orb", center=(-0.6, 0.75, 0.72), half=(0.22, 0.22, 0.22), texel_m=fine, material="checker"),
    ]
    return Scene(room, objects, target=(0.0, 0.0, 0.5))
