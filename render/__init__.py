"""render stage: virtual cameras, camera paths and output writers (the pipeline wires them to a trained run).

Names are imported lazily (PEP 562) so that ``import nerfstage.render`` stays cheap; ``from nerfstage.render
import PerspectiveCamera`` works as usual.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "cameras": ("PerspectiveCamera", "FisheyeCamera", "OrthographicCamera", "ThinLens", "camera_for_path",
                "focal_from_fov", "fov_from_focal"),
    "equirect": ("EquirectangularCamera", "reproject_image"),
    "cubemap": ("CubemapCamera", "FACE_NAMES", "FACE_SUFFIXES", "assemble_faces", "split_faces"),
    "rays": ("RayBatch", "generate_rays", "generate_ray_batch", "pixel_centers", "pixel_chunks"),
    "writers": ("FrameSequenceWriter", "VideoWriter", "atomic_output", "is_valid_frame", "linear_to_srgb",
                "read_exr", "srgb_to_linear", "to_srgb8", "write_exr", "write_npy", "write_png"),
    "spherical": ("add_spherical_metadata", "read_spherical_metadata"),
    "paths": ("CameraPath", "Keyframe", "PathSettings", "dolly_zoom_path", "interpolate_path", "keyframe_path",
              "orbit_path", "read_camera_path", "spiral_path", "write_camera_path"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
