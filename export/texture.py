"""UV-unwrap a mesh (xatlas) and bake a colour texture from the radiance field (``--texture``).

Steps of :func:`bake_texture`:
1. xatlas cuts the mesh into charts and packs them into one square atlas of ``resolution`` texels
   (``padding`` texels between charts); vertices on chart seams are duplicated.
2. Every triangle is rasterised in UV space (OpenCV ``fillConvexPoly`` with 8 bits of sub-texel precision): each
   covered texel gets its triangle, barycentric coordinates at the texel centre, hence a 3D point and an
   interpolated normal.
3. The texel's colour is ``color_fn`` averaged over views exactly as for vertex colours
   (``mesh.vertex_colors``: the view along -normal plus 14 fixed directions, cosine-weighted, front side only).
4. Empty texels take the colour of the nearest covered texel, so bilinear filtering and mip-maps never pull
   background into the charts' borders.

UV convention: trimesh's (OBJ's) — u to the right, v up, (0, 0) the image's bottom-left corner; the GLB writer
flips v as glTF wants. The texture holds ``color_fn``'s values as 8-bit sRGB-encoded RGB (glTF's base-colour
texture is sRGB by definition).

Cost: xatlas's chart search grows faster than linearly with the face count (on 2 shared cores: about 4 s for
20k faces, 40-55 s for 80k), so decimate the mesh (``MeshOptions.max_faces``, e.g. 50k-100k) before baking.

xatlas (PyPI ``xatlas``) is imported here only, on first use; without it ``bake_texture`` raises ConfigError
with the install command.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import trimesh
from PIL import Image
from scipy.ndimage import distance_transform_edt

from ..core.errors import ConfigError
from .mesh import ColorFn, vertex_colors

SUBPIXEL_BITS = 8
"""Fractional bits of the vertex coordinates handed to OpenCV's rasteriser."""


@dataclass(frozen=True)
class TextureOptions:
    """How to unwrap and bake."""

    resolution: int = 2048
    """Texture width and height, texels."""
    padding: int = 2
    """Empty texels kept between charts in the atlas."""
    chunk: int = 1 << 15
    """Texels coloured per batch of colour queries (each costs 15 queries)."""
    device: str = "cpu"
    """Torch device for the colour queries."""


def _xatlas():
    try:
        import xatlas  # optional: xatlas UV unwrapping (only for textured meshes)
    except ImportError as exc:
        raise ConfigError(f"--texture needs the xatlas package ({exc}); install it with: pip install xatlas") from exc
    return xatlas


def unwrap(mesh: trimesh.Trimesh, resolution: int, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas parametrisation: (vertex index into ``mesh`` per new vertex [v'], faces [f, 3] of new vertices,
    uv [v', 2] in [0, 1]) packed into one atlas of ``resolution``^2 texels."""
    xatlas = _xatlas()
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution, pack.padding, pack.bilinear = resolution, padding, True
    atlas.generate(pack_options=pack)
    if atlas.atlas_count != 1:
        raise ConfigError(f"the UV atlas needs {atlas.atlas_count} pages of {resolution}^2; raise the texture size")
    vmapping, faces, uv = atlas[0]
    return vmapping.astype(np.int64), faces.astype(np.int64), uv.astype(np.float64)


def rasterize_uv(uv: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per texel of a ``size``^2 image: the covering face ([size, size] int64, -1 = none) and the barycentric
    coordinates of the texel centre in it ([size, size, 3], clipped to the triangle)."""
    texel = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], axis=1)  # [v, 2] x right, y down, texel units
    fixed = np.round((texel[faces] - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)  # [f, 3, 2] centres at .0
    face_id = np.full((size, size), -1, dtype=np.int32)
    for index, triangle in enumerate(fixed):
        cv2.fillConvexPoly(face_id, triangle, index, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    rows, cols = np.nonzero(face_id >= 0)
    ids = face_id[rows, cols].astype(np.int64)
    corners = texel[faces[ids]]  # [n, 3, 2]
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1)  # [n, 2]
    bary = np.zeros((size, size, 3))
    bary[rows, cols] = _barycentric(corners, centres)
    return face_id.astype(np.int64), bary


def _barycentric(corners: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[n, 3] barycentric coordinates of 2D ``points`` [n, 2] in triangles ``corners`` [n, 3, 2], clipped to the
    triangle (texels at a border whose centre lies just outside) and renormalised."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)
    w1 = (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / det
    w2 = (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / det
    bary = np.clip(np.stack([1.0 - w1 - w2, w1, w2], axis=1), 0.0, 1.0)
    return bary / bary.sum(axis=1, keepdims=True).clip(min=1e-12)


def fill_empty(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``image`` [H, W, C] with every texel outside ``covered`` [H, W] set to its nearest covered texel."""
    _, (rows, cols) = distance_transform_edt(~covered, return_indices=True)
    return image[rows, cols]


def bake_texture(mesh: trimesh.Trimesh, color_fn: ColorFn, options: TextureOptions | None = None) -> trimesh.Trimesh:
    """A copy of ``mesh`` with xatlas UVs and a baked colour texture (see the module docstring)."""
    options = options or TextureOptions()
    if not 16 <= options.resolution <= 16384:
        raise ConfigError(f"texture resolution {options.resolution}: expected 16 to 16384 texels")
    vmapping, faces, uv = unwrap(mesh, options.resolution, options.padding)
    vertices = np.asarray(mesh.vertices)[vmapping]  # [v', 3]
    normals = np.asarray(mesh.vertex_normals)[vmapping]  # [v', 3]
    face_id, bary = rasterize_uv(uv, faces, options.resolution)
    covered = face_id >= 0
    corners = faces[face_id[covered]]  # [n, 3] vertex indices
    weights = bary[covered][..., None]  # [n, 3, 1]
    points = (vertices[corners] * weights).sum(axis=1)
    texel_normals = (normals[corners] * weights).sum(axis=1)
    texel_normals /= np.linalg.norm(texel_normals, axis=1, keepdims=True).clip(min=1e-12)
    image = np.zeros((options.resolution, options.resolution, 3), dtype=np.float32)
    image[covered] = vertex_colors(points, texel_normals, color_fn, options.chunk, options.device)
    image = np.round(fill_empty(image, covered) * 255.0).astype(np.uint8)
    visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(image))
    return trimesh.Trimesh(vertices, faces, vertex_normals=normals, visual=visual, process=False)
