"""Line-up helpers shared by the line-up test and ``benchmarks/blender_lineup.py``: the silhouette of an exported
mesh seen through an exported USD camera (projected with usd-core's own frustum maths), and the silhouette of the
field's iso-surface sampled densely along our renderer's rays (``core.rays.generate_rays`` of the frame's camera,
as ``nerfstage render`` shoots it).

Why the iso-surface and not the render's alpha: the synthetic scene is a closed room, so alpha is 1 everywhere;
the comparison is restricted to a crop box around the objects, and which pixels see "something inside the box"
needs a surface point per pixel. The tiny test run's expected depth is too blurred for that (IoU 0.67 against the
mesh, measured), so the surface is the first sample along each of our rays, inside the box, whose density
reaches the mesh's own iso-level: the same surface marching cubes meshes, found through our cameras.
"""

from __future__ import annotations

import numpy as np

BOX = (-1.3, -1.1, -0.3, 1.3, 1.3, 1.4)
"""Crop box (dataset frame, metres) around the synthetic scene's objects, with the floor under them."""
SUPERSAMPLE = 4
"""Mesh masks are rasterised at this many sub-pixels per side; a pixel is covered when half its samples are."""


def inside_box(points: np.ndarray, box=BOX) -> np.ndarray:  # [..., 3] -> [...] bool
    return np.all((points >= np.asarray(box[:3])) & (points <= np.asarray(box[3:])), axis=-1)


def faces_in_box(vertices: np.ndarray, faces: np.ndarray, box=BOX) -> np.ndarray:
    """The faces whose centroid lies in ``box`` (the mesh's crop grid is the box's normalised-frame bounds, a
    little larger than the box itself)."""
    return faces[inside_box(vertices[faces].mean(axis=1), box)]


def usd_view_projection(camera, frame: int) -> np.ndarray:  # -> [4, 4] row-vector clip transform
    """usd-core's view @ projection matrix of a UsdGeomCamera at a frame (GfFrustum from its apertures/focal)."""
    from pxr import Usd

    frustum = camera.GetCamera(Usd.TimeCode(frame)).frustum
    return np.array(frustum.ComputeViewMatrix()) @ np.array(frustum.ComputeProjectionMatrix())


def mesh_mask(vertices: np.ndarray, faces: np.ndarray, clip_from_world: np.ndarray, width: int,
              height: int) -> np.ndarray:  # -> [H, W] bool
    """Rasterise ``faces`` (all vertices in front of the camera) through a row-vector clip transform."""
    import cv2

    clip = np.c_[vertices, np.ones(len(vertices))] @ clip_from_world
    front = clip[:, 3] > 1e-6
    ndc = clip[:, :2] / np.where(front, clip[:, 3], 1.0)[:, None]
    pixels = np.c_[(ndc[:, 0] + 1.0) / 2.0 * width, (1.0 - ndc[:, 1]) / 2.0 * height]
    s = SUPERSAMPLE
    mask = np.zeros((height * s, width * s), np.uint8)
    shifted = np.round((pixels[faces[front[faces].all(axis=1)]] * s - 0.5) * 16).astype(np.int32)
    for triangle in shifted:
        cv2.fillConvexPoly(mask, triangle, 1, lineType=cv2.LINE_8, shift=4)
    return mask.reshape(height, s, width, s).mean(axis=(1, 3)) >= 0.5


def iso_mask(run, camera, world_from_cam: np.ndarray, threshold: float, far: float, samples: int = 768,
             box=BOX) -> np.ndarray:  # -> [H, W] bool
    """Pixels whose ray (our renderer's, normalised frame) meets density >= ``threshold`` inside ``box``
    (dataset frame) within ``far`` normalised units."""
    import torch

    from nerfstage.core.rays import generate_rays
    from nerfstage.export.gltf import dataset_from_normalized

    origins, directions = generate_rays(camera, world_from_cam)
    steps = torch.linspace(0.01, far, samples)
    inverse = torch.as_tensor(dataset_from_normalized(run.scene.transform, run.scene.scale), dtype=torch.float32)
    hits = []
    with torch.no_grad():
        for o, d in zip(origins.split(1024), directions.split(1024), strict=True):
            points = o[:, None] + d[:, None] * steps[None, :, None]  # [R, S, 3] normalised frame
            dataset = points @ inverse[:3, :3].T + inverse[:3, 3]
            in_box = torch.all((dataset >= torch.tensor(box[:3])) & (dataset <= torch.tensor(box[3:])), dim=-1)
            density = run.model.density(points.reshape(-1, 3)).reshape(in_box.shape)
            hits.append(((density >= threshold) & in_box).any(dim=-1))
    return torch.cat(hits).reshape(camera.height, camera.width).numpy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))
