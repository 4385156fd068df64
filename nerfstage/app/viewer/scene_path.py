"""The camera path drawn in the 3D scene: a frustum per keyframe (numbered) and the path's camera track."""

from __future__ import annotations

import math

import numpy as np

from ...core.errors import NerfstageError
from .scene import camera_scale
from .views import viser_pose_of


def draw_path(server, editor, info):
    """Redraw keyframes and track; returns the editor's CameraPath, or None when it has none (yet)."""
    scale = camera_scale(info)
    server.scene.remove_by_name("/keyframes")
    server.scene.add_frame("/keyframes", show_axes=False)
    for i, key in enumerate(editor.keyframes):
        wxyz, position = viser_pose_of(key.world_from_cam)
        server.scene.add_camera_frustum(f"/keyframes/{i:03d}", fov=math.radians(key.fov_deg), aspect=key.aspect,
                                        scale=scale, thickness=3.0, thickness_units="screen", color=(220, 40, 40),
                                        wxyz=wxyz, position=position)
    if len(editor) < 2:
        return None
    try:
        path = editor.camera_path()
    except NerfstageError:
        return None
    centres = path.world_from_cams[:, :3, 3]  # [F, 3]
    track = np.stack([centres[:-1], centres[1:]], axis=1) if len(centres) > 1 else np.zeros((0, 2, 3))
    if len(track):
        server.scene.add_line_segments("/keyframes/track", track.astype(np.float32), (220, 40, 40),
                                       thickness=3.0, thickness_units="screen")
    return path
