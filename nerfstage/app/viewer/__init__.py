"""``nerfstage view RUN``: a viser web viewer of a trained (or training) radiance field.

Modules: ``keyframes`` (the camera-path editor's model: keyframes -> CameraPath through ``render.paths``),
``progressive`` (per-client render thread: low resolution while the camera moves, refined when it is still),
``views`` (viser camera <-> ``world_from_cam``, render functions), ``scene`` (training cameras, sparse points,
scene box), ``gui`` (keyframe and render panels), ``server`` (the running viewer; ``serve_run``,
``TrainingViewer``). Importing this package imports neither torch nor viser.
"""

from .keyframes import KeyframeEditor, PathOptions
from .progressive import ProgressiveRenderer, RenderCancelled, View, frame_size, resolution_levels

__all__ = ["KeyframeEditor", "PathOptions", "ProgressiveRenderer", "RenderCancelled", "View", "frame_size",
           "resolution_levels"]
