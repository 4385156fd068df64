"""Cubemap camera: six 90-degree pinhole faces around one centre, laid out as a strip, a cross or six files.

Faces and orientation
---------------------
Faces are named after the axis they look along in the rig camera's **OpenGL frame** (x right, y up, z backward,
as nerfstudio poses are stored), in the usual order ``+X, -X, +Y, -Y, +Z, -Z``: +X right, -X left, +Y up,
-Y down, +Z back, -Z front. Each face is the picture a pinhole camera with a 90-degree field of view takes from
the cube's centre (seen from inside, not mirrored):

=====  ============  ========================  ==========================
face   looks along   image right (+u)          image up (-v)
=====  ============  ========================  ==========================
+X     +X (right)    +Z (back)                 +Y
-X     -X (left)     -Z (front)                +Y
+Y     +Y (up)       +X                        +Z (top edge meets back)
-Y     -Y (down)     +X                        -Z (top edge meets front)
+Z     +Z (back)     -X                        +Y
-Z     -Z (front)    +X                        +Y
=====  ============  ========================  ==========================

This is the OpenGL ``GL_TEXTURE_CUBE_MAP`` table with its z axis flipped (that table is defined in a left-handed
frame): to upload our faces to a GL/Vulkan cube sampler, swap the +Z and -Z faces.

Layouts (face size S)
---------------------
* ``strip``: 6S x S, faces left to right in the order above.
* ``six``: the same pixel grid as ``strip``; the writer saves each face as its own file (``_px``, ``_nx``, ...).
* ``cross``: horizontal cross 4S x 3S: ``-X, -Z, +X, +Z`` in the middle row, ``+Y`` above and ``-Y`` below
  ``-Z``; the six unused cells are invalid pixels (rendered as background / alpha 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..core.cameras import CentralCamera
from ..core.errors import ConfigError

CubemapLayout = Literal["strip", "cross", "six"]

FACE_NAMES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")
"""Face order (OpenGL rig axes)."""
FACE_SUFFIXES = ("px", "nx", "py", "ny", "pz", "nz")
"""File-name suffixes of the faces in the ``six`` layout."""

# (forward, image-up) of each face in the rig's OpenGL camera frame.
_FACE_AXES_GL = (
    ((1, 0, 0), (0, 1, 0)),
    ((-1, 0, 0), (0, 1, 0)),
    ((0, 1, 0), (0, 0, 1)),
    ((0, -1, 0), (0, 0, -1)),
    ((0, 0, 1), (0, 1, 0)),
    ((0, 0, -1), (0, 1, 0)),
)
_CROSS_CELLS = ((2, 1), (0, 1), (1, 0), (1, 2), (3, 1), (1, 1))  # (column, row) of each face in the cross


def face_rotations() -> np.ndarray:  # [6, 3, 3]
    """``rig_from_face`` rotations, both in OpenCV axes (columns: face right, face down, face forward)."""
    gl_to_cv = np.diag([1.0, -1.0, -1.0])
    out = np.zeros((6, 3, 3))
    for k, (forward, up) in enumerate(_FACE_AXES_GL):
        forward_gl, up_gl = np.array(forward, float), np.array(up, float)
        right_gl = np.cross(forward_gl, up_gl)
        out[k] = gl_to_cv @ np.stack([right_gl, -up_gl, forward_gl], axis=1)
    return out


def face_cells(layout: CubemapLayout) -> tuple[tuple[int, int], ...]:
    """(column, row) of each face's cell, in face-size units."""
    if layout in ("strip", "six"):
        return tuple((k, 0) for k in range(6))
    if layout == "cross":
        return _CROSS_CELLS
    raise ConfigError(f"cubemap layout={layout!r}: expected strip, cross or six")


@dataclass(frozen=True)
class CubemapCamera(CentralCamera):
    """Six 90-degree faces of ``face_size`` pixels in one layout image (see the module docstring)."""

    face_size: int
    """Side of each square face, pixels."""
    layout: CubemapLayout = "cross"
    """Arrangement of the faces in the image: strip, cross, or six (a strip the writer splits into files)."""

    def __post_init__(self):
        if int(self.face_size) < 1:
            raise ConfigError(f"cubemap face_size={self.face_size}: expected a positive number of pixels")
        face_cells(self.layout)

    @property
    def width(self) -> int:
        return self.face_size * (4 if self.layout == "cross" else 6)

    @property
    def height(self) -> int:
        return self.face_size * (3 if self.layout == "cross" else 1)

    def _cell_table(self, device) -> Tensor:  # [rows, cols] face index per cell, -1 where unused
        cols, rows = self.width // self.face_size, self.height // self.face_size
        table = torch.full((rows, cols), -1, dtype=torch.int64, device=device)
        for k, (col, row) in enumerate(face_cells(self.layout)):
            table[row, col] = k
        return table

    def unproject(self, pixels: Float[Tensor, "n 2"]) -> tuple[Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Layout pixels -> unit directions (OpenCV rig axes); pixels in unused cross cells are invalid."""
        size = float(self.face_size)
        cell = torch.floor(pixels / size).long()
        table = self._cell_table(pixels.device)
        cell_x = cell[:, 0].clamp(0, table.shape[1] - 1)
        cell_y = cell[:, 1].clamp(0, table.shape[0] - 1)
        face = table[cell_y, cell_x]
        valid = face >= 0
        local = (pixels - cell.to(pixels.dtype) * size) / (size / 2.0) - 1.0  # [n, 2] in [-1, 1]
        in_face = torch.cat([local, torch.ones_like(local[:, :1])], dim=-1)  # [n, 3] face OpenCV axes
        rotations = _rotations_like(pixels)[face.clamp_min(0)]  # [n, 3, 3]
        directions = torch.nn.functional.normalize(torch.einsum("nij,nj->ni", rotations, in_face), dim=-1)
        return directions, valid

    def face_of(self, directions: Float[Tensor, "n 3"]) -> Tensor:  # [n] int64
        """Index (into FACE_NAMES) of the face that sees each rig-frame direction (OpenCV axes)."""
        forwards = _rotations_like(directions)[:, :, 2]  # [6, 3]
        return torch.argmax(directions @ forwards.T, dim=-1)

    def project(self, points: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, "n 2"], Bool[Tensor, " n"]]:
        """Rig-frame points -> layout pixels of the one face that sees them."""
        face = self.face_of(points)
        rotations = _rotations_like(points)[face]  # [n, 3, 3]
        in_face = torch.einsum("nji,nj->ni", rotations, points)  # face_from_rig = rig_from_face^T
        valid = in_face[:, 2] > 0
        local = in_face[:, :2] / torch.where(valid, in_face[:, 2], torch.ones_like(in_face[:, 2]))[:, None]
        size = float(self.face_size)
        cells = torch.as_tensor(face_cells(self.layout), dtype=points.dtype, device=points.device)[face]  # [n, 2]
        pixels = (local.clamp(-1.0, 1.0) + 1.0) * (size / 2.0) + cells * size
        return pixels, valid


def _rotations_like(like: Tensor) -> Tensor:  # [6, 3, 3] rig_from_face in like's dtype and device
    return torch.as_tensor(face_rotations(), dtype=like.dtype, device=like.device)


def split_faces(image: np.ndarray, face_size: int, layout: CubemapLayout) -> list[np.ndarray]:
    """The six faces (FACE_NAMES order) of a layout image [H, W, ...] -> list of [S, S, ...]."""
    s = int(face_size)
    return [image[row * s : (row + 1) * s, col * s : (col + 1) * s] for col, row in face_cells(layout)]


def assemble_faces(faces: list[np.ndarray], layout: CubemapLayout, fill: float = 0.0) -> np.ndarray:
    """Six faces [S, S, ...] (FACE_NAMES order) -> one layout image; unused cross cells get ``fill``."""
    if len(faces) != 6:
        raise ConfigError(f"a cubemap needs 6 faces, got {len(faces)}")
    s = faces[0].shape[0]
    cols, rows = (4, 3) if layout == "cross" else (6, 1)
    out = np.full((rows * s, cols * s) + faces[0].shape[2:], fill, dtype=faces[0].dtype)
    for face, (col, row) in zip(faces, face_cells(layout), strict=True):
        out[row * s : (row + 1) * s, col * s : (col + 1) * s] = face
    return out
