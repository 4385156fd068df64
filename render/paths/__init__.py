"""Camera paths: analytic moves (orbit, spiral, dolly zoom), splines through keyframes or training cameras,
speed ramps, and nerfstudio's camera_path.json. Every builder returns a ``CameraPath`` (OpenGL camera-to-world
per frame in the normalised scene frame, vertical fov per frame). Importing this package does not import torch.
"""

from .base import CAMERA_TYPES, CameraPath, CameraType, Keyframe, PathSettings, look_at
from .dolly_zoom import dolly_zoom_path, subject_distance
from .easing import EASINGS, Easing, ease, frame_parameters
from .interpolate import interpolate_path, smooth_poses
from .io import camera_path_to_json, dumps_camera_path, parse_camera_path, read_camera_path, write_camera_path
from .keyframes import KeyframeSpline, keyframe_path, read_keyframes
from .orbit import orbit_path
from .spiral import spiral_path

__all__ = [
    "CAMERA_TYPES", "EASINGS", "CameraPath", "CameraType", "Easing", "Keyframe", "KeyframeSpline", "PathSettings",
    "camera_path_to_json", "dolly_zoom_path", "dumps_camera_path", "ease", "frame_parameters", "interpolate_path",
    "keyframe_path", "look_at", "orbit_path", "parse_camera_path", "read_camera_path", "read_keyframes",
    "smooth_poses", "spiral_path", "subject_distance", "write_camera_path",
]
