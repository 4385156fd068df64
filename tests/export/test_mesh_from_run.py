"""A briefly trained run's exported mesh against the synthetic scene's true surface (Chamfer distance), its crop
box in dataset coordinates, and the dataset-frame point cloud."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from nerfstage.capture.synthetic import sample_surface, scene_description
from nerfstage.export.from_run import MeshExportOptions, PointCloudExportOptions, export_mesh, export_point_cloud
from nerfstage.export.from_run import normalized_box


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from nerfstage.nerf.run import load_run

    return load_run(tiny_run.run_dir, device="cpu")


def objects_box() -> tuple[np.ndarray, np.ndarray]:
    """The synthetic objects' box grown by 5 cm, floor cut off at z = 3 cm (dataset frame, metres)."""
    lo, hi = (np.array(c, dtype=np.float64) for c in scene_description()["objects_aabb"])
    lo, hi = lo - 0.05, hi + 0.05
    lo[2] = 0.03
    return lo, hi


def chamfer(mesh: trimesh.Trimesh, truth: np.ndarray) -> float:
    """Symmetric Chamfer distance between surface samples of ``mesh`` and the true surface samples ``truth``."""
    on_mesh = trimesh.sample.sample_surface(mesh, 50_000, seed=0)[0]
    return float(cKDTree(on_mesh).query(truth)[0].mean() + cKDTree(truth).query(on_mesh)[0].mean()) / 2.0


def test_trained_run_mesh_is_near_the_true_surface(loaded, tmp_path):
    """The session's tiny run (24 frames of 64 x 48, 100 steps, ~19 dB) meshed at 64^3 in the objects' box:
    symmetric Chamfer distance to the scene's true object surfaces below 10 % of the box size (2.03 m), and the
    box's own surface (a mesh that knows nothing of the scene) at least 1.3 times as far. Measured on the former
    per-texel-noise scene: 0.095 m (4.7 %), the box over twice as far; on the filmable scene, whose objects carry
    smooth textures that 64 x 48 images barely resolve: 0.155 m (7.6 %; fog above the objects), the box 0.244 m
    (1.6 times as far)."""
    lo, hi = objects_box()
    result = export_mesh(loaded, tmp_path / "scene.ply", MeshExportOptions(bbox=(*lo, *hi), resolution=64,
                                                                           progress=False))
    mesh = trimesh.load(tmp_path / "scene.ply", process=False)  # PLY keeps the dataset frame (Z-up, metres)
    assert len(mesh.faces) == result.stats["faces"] > 1000
    truth = sample_surface(20_000, seed=0, objects_only=True)
    truth = truth[np.all((truth >= lo) & (truth <= hi), axis=1)]
    size = float((hi - lo).max())
    error = chamfer(mesh, truth)
    baseline = chamfer(trimesh.creation.box(bounds=np.stack([lo, hi])), truth)
    assert error < 0.1 * size, f"Chamfer {error:.4f} m >= 10 % of {size:.2f} m"
    assert baseline > 1.3 * error, f"box baseline {baseline:.4f} m vs mesh {error:.4f} m"
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float)
    assert colours.std(axis=0).min() > 2  # coloured from the field, not constant (tiny run: dark, std ~4)


def test_bbox_maps_from_the_dataset_frame(loaded):
    lo, hi = objects_box()
    n_lo, n_hi = normalized_box(loaded, (*lo, *hi))
    t, s = loaded.scene.transform, loaded.scene.scale
    corners = np.stack(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij"), -1).reshape(-1, 3)
    mapped = s * (corners @ t[:, :3].T + t[:, 3])
    np.testing.assert_allclose(n_lo, mapped.min(0)) and np.testing.assert_allclose(n_hi, mapped.max(0))
    d_lo, d_hi = normalized_box(loaded, None)  # default: what the cameras saw, inside the scene box
    aabb = loaded.model.field.aabb.numpy()
    assert np.all(d_lo >= aabb[0] - 1e-9) and np.all(d_hi <= aabb[1] + 1e-9) and np.all(d_hi > d_lo)


def test_point_cloud_is_the_rendered_depth_in_the_dataset_frame(loaded, tiny_run, tmp_path):
    """One training view at 16 x 12: every exported point (dataset frame, metres) projects into that camera's
    dataset-frame image, in front of it, at the rendered ray depth divided by the dataparser scale. (The tiny run
    is too foggy to compare with the true surfaces: its rendered depth of the far walls is ~30 % short.)"""
    import json

    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.core.geometry import convert_camera_axes
    from nerfstage.render.image import ImageOptions, render_image

    result = export_point_cloud(loaded, tmp_path / "points.ply", PointCloudExportOptions(
        num_points=10_000, neighbors=0, view_stride=1000, downscale=4, progress=False))
    points = np.asarray(trimesh.load(tmp_path / "points.ply").vertices)  # [n, 3] dataset frame
    index = loaded.train_indices[0]
    intrinsics = loaded.intrinsics[index].scaled(0.25)
    images = render_image(loaded.model, PerspectiveCamera.from_intrinsics(intrinsics), loaded.world_from_cams[index],
                          ("depth", "alpha"), ImageOptions(depth_mode="ray"))
    expected = np.sort(images["depth"][images["alpha"] >= 0.5]) / loaded.scene.scale
    frame = json.loads((tiny_run.dataset_dir / "transforms.json").read_text())["frames"][index]
    world_from_cv = convert_camera_axes(np.asarray(frame["transform_matrix"], dtype=np.float64))
    local = (points - world_from_cv[:3, 3]) @ world_from_cv[:3, :3]  # [n, 3] OpenCV camera axes
    u = intrinsics.fx * local[:, 0] / local[:, 2] + intrinsics.cx
    v = intrinsics.fy * local[:, 1] / local[:, 2] + intrinsics.cy
    assert len(points) == result.stats["points"] == len(expected) > 50
    assert np.all(local[:, 2] > 0) and np.all((u > 0) & (u < 16) & (v > 0) & (v < 12))
    np.testing.assert_allclose(np.sort(np.linalg.norm(local, axis=1)), expected, rtol=1e-4)


def _dataset_box(run, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dataset-frame box around a normalised-frame box (its eight corners mapped back)."""
    from nerfstage.export.gltf import dataset_from_normalized

    corners = np.stack(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij"), -1).reshape(-1, 3)
    to_dataset = dataset_from_normalized(run.scene.transform, run.scene.scale)
    mapped = corners @ to_dataset[:3, :3].T + to_dataset[:3, 3]
    return mapped.min(0), mapped.max(0)


def _export_against_truth(run, path, options, truth):
    """(faces, Chamfer distance to the true surface inside the mesh's crop box, that box) of one export."""
    result = export_mesh(run, path, options)
    lo, hi = _dataset_box(run, *normalized_box(run, options.bbox))
    mesh = trimesh.load(path, process=False)
    inside = truth[np.all((truth >= lo) & (truth <= hi), axis=1)]
    return int(result.stats["faces"]), chamfer(mesh, inside), (lo, hi)


def test_default_mesh_is_engine_ready_and_no_farther_from_the_truth(loaded, tmp_path, monkeypatch):
    """Defaults: at most 200 k faces, cropped to what the cameras circled (the walk-around at 2.75 m: within
    the walk, inside the old crop of everything half the cameras see), floaters removed; its Chamfer distance to
    the true surface in its box is no worse than the old defaults' (no face budget, the old crop) in theirs, nor
    than the same crop kept whole (every face, every component)."""
    import functools

    from nerfstage.export import density_grid

    truth = sample_surface(50_000, seed=1)
    faces, error, (lo, hi) = _export_against_truth(loaded, tmp_path / "default.ply",
                                                   MeshExportOptions(progress=False), truth)
    assert 1000 < faces <= 200_000 == MeshExportOptions().max_faces
    objects_lo, objects_hi = objects_box()
    assert np.all(lo[:2] <= objects_lo[:2]) and np.all(hi[:2] >= objects_hi[:2])  # the objects are in the crop
    assert np.all(np.abs(lo[:2]) < 2.6) and np.all(np.abs(hi[:2]) < 2.6)  # inside the walk (room: +-4 m)
    whole_faces, whole_error, _ = _export_against_truth(
        loaded, tmp_path / "whole.ply", MeshExportOptions(max_faces=None, min_component_fraction=0.0,
                                                          progress=False), truth)
    old_crop = functools.partial(density_grid.crop_box_from_cameras, depth_factor=None)
    monkeypatch.setattr("nerfstage.export.from_run.crop_box_from_cameras", old_crop)
    old_faces, old_error, (old_lo, old_hi) = _export_against_truth(
        loaded, tmp_path / "old.ply", MeshExportOptions(max_faces=None, progress=False), truth)
    assert np.all(lo >= old_lo - 1e-9) and np.all(hi <= old_hi + 1e-9)
    assert error <= 1.05 * whole_error and error <= 1.05 * old_error, (error, whole_error, old_error)
    print(f"faces {faces} / whole {whole_faces} / old {old_faces}; Chamfer {error:.4f} / {whole_error:.4f} / "
          f"{old_error:.4f} m")
