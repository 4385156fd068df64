"""render stage: virtual cameras, camera paths and output writers (the pipeline wires them to a trained run).

One frame, chunked to any resolution::

    path = orbit_path(PathSettings(1920, 1080, fps=30, seconds=4), radius=1.2, height=0.3)
    camera, pose = path.camera(i), path.world_from_cams[i]          # OpenGL camera-to-world, normalised frame
    frame = render_image(run.model, camera, pose, ("rgb", "alpha"))  # rays made and rendered in chunks
    with VideoWriter("out.mp4", 1920, 1080, path.video_fps()) as video: video.write(frame)   # or
    FrameSequenceWriter("frames/", "exr", 1920, 1080, resume=True).write(i, frame)

Names are imported lazily (PEP 562) so that ``import nerfstage.render`` stays cheap; ``from nerfstage.render
import PerspectiveCamera`` works as usual. The central camera models and ray generation live in the foundation
(``nerfstage.core.cameras``, ``nerfstage.core.rays``, shared with training) and are re-exported here as the
render stage's public API; the panoramic cameras are this stage's own.
"""

from __future__ import annotations

from ..core.lazy import lazy_exports

_EXPORTS = {
    "..core.cameras": ("PerspectiveCamera", "FisheyeCamera", "OrthographicCamera", "ThinLens", "focal_from_fov",
                       "fov_from_focal"),
    ".equirect": ("EquirectangularCamera", "camera_for_path", "reproject_image"),
    ".image": ("ImageOptions", "render_image", "render_pixels"),
    ".cubemap": ("CubemapCamera", "FACE_NAMES", "FACE_SUFFIXES", "assemble_faces", "split_faces"),
    "..core.rays": ("RayBatch", "axial_factors", "generate_rays", "generate_ray_batch", "pixel_centers",
                    "pixel_chunks"),
    ".writers": ("FrameSequenceWriter", "VideoWriter", "atomic_output", "is_valid_frame", "linear_to_srgb",
                 "read_exr", "srgb_to_linear", "to_srgb8", "write_exr", "write_npy", "write_png"),
    ".spherical": ("add_spherical_metadata", "read_spherical_metadata"),
    ".paths": ("CameraPath", "Keyframe", "PathSettings", "dolly_zoom_path", "interpolate_path", "keyframe_path",
               "orbit_path", "read_camera_path", "read_keyframes", "spiral_path", "write_camera_path"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}  # relative to this package
__getattr__, __dir__, __all__ = lazy_exports(__name__, _MODULE_OF, globals())
