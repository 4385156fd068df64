"""export stage: the radiance field leaves nerfstage as meshes, point clouds and LED-wall plates.

Mesh from any density (``NerfModel.density`` in the normalised frame) and colour callable::

    result = extract_mesh(model.density, box_min, box_max, color_fn,
                          GridOptions(max_resolution=256), MeshOptions(max_faces=200_000))
    result.mesh.apply_transform(dataset_from_normalized(transform, scale))   # dataparser_transforms.json
    write_mesh(result.mesh, "scene.glb")                                    # Y-up glTF 2.0; .obj / .ply too
    textured = bake_texture(result.mesh, color_fn, TextureOptions(2048))   # --texture: xatlas UVs + PNG

Point cloud from rendered depth: ``point_cloud_from_views([DepthView(rgb, depth, world_from_cam, intrinsics,
accumulation), ...])`` then ``write_point_cloud``. Tracked cameras for plates: ``read_track("track.csv",
overscan_percent=10)`` -> ``TrackedFrame`` list (pose, fov, size, ``intrinsics()``).

From a trained run (``nerfstage.nerf.run.load_run``), as ``nerfstage export`` does::

    export_mesh(run, "scene.glb", MeshExportOptions(max_faces=300_000))        # dataset frame, Y-up GLB
    export_point_cloud(run, "points.ply", PointCloudExportOptions(num_points=500_000))
    export_panorama(run, "plate.exr", PanoramaOptions(width=8192))             # tiled latlong, EXR half
    export_plates(run, "track.csv", "plates/", PlateOptions(overscan_percent=10))  # plate_01001.exr ...

Names are imported lazily (PEP 562) so that ``import nerfstage.export`` stays cheap (no torch, trimesh or scipy).
"""

from __future__ import annotations

from ..core.lazy import lazy_exports

_EXPORTS = {
    "density_grid": ("DensityGrid", "GridOptions", "crop_box_from_cameras", "crop_box_from_points",
                     "grid_resolution", "sample_density_grid"),
    "mesh": ("MeshOptions", "MeshResult", "auto_threshold", "decimate", "extract_mesh", "field_callables",
             "marching_cubes_mesh", "mesh_from_grid", "remove_floaters", "vertex_colors"),
    "gltf": ("MESH_SUFFIXES", "dataset_from_normalized", "read_mesh", "write_mesh"),
    "pointcloud": ("DepthView", "PointCloudOptions", "point_cloud_from_views", "write_point_cloud"),
    "texture": ("TextureOptions", "bake_texture"),
    "panorama": ("PanoramaOptions", "PanoramaResult", "estimate_memory", "export_panorama", "panorama_pose"),
    "from_run": ("ExportResult", "MeshExportOptions", "PointCloudExportOptions", "export_mesh", "export_point_cloud"),
    "plates": ("PlateOptions", "PlatesResult", "export_plates"),
    "camera": ("CAMERA_SUFFIXES", "CameraExportOptions", "export_camera", "poses_to_dataset", "run_path",
               "track_from_path", "write_track"),
    "camera_track": ("CameraTrack",),
    "camera_formats": ("read_chan", "read_gltf_camera", "read_usd_camera", "write_chan", "write_gltf_camera",
                       "write_usd_camera"),
    "scene": ("SceneExportOptions", "SceneResult", "export_scene"),
    "splats_init": ("SplatInitOptions", "splats_from_run"),
    "splats_export": ("SplatExportOptions", "export_splats"),
    "track": ("TrackedFrame", "apply_overscan", "euler_rotation", "read_track", "to_normalized"),
}
_MODULE_OF = {name: f".{module}" for module, names in _EXPORTS.items() for name in names}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _MODULE_OF, globals())
