"""``nerfstage export scene``: a set folder whose scene.usda opens with usd-core, every reference and asset
resolving, with the saved camera paths, the hidden training cameras and a dome light on the latlong plate."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from nerfstage.core.errors import OutputExistsError
from nerfstage.export import camera_formats as formats
from nerfstage.export.camera import poses_to_dataset
from nerfstage.export.scene import SceneExportOptions, export_scene
from nerfstage.render.paths import read_camera_path
from nerfstage.render.plan import ShotOptions

from .test_cli_export import cli

SMALL = {"mesh_resolution": 48, "plate_width": 32, "progress": False}


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    """A copy of the tiny run with two saved camera paths (as the viewer saves them) and a splat PLY."""
    from nerfstage.nerf.run import load_run
    from nerfstage.render.pipeline import save_path

    root = tmp_path_factory.mktemp("scene_run")
    shutil.copytree(tiny_run.run_dir, root / "run")
    run = load_run(root / "run", device="cpu")
    save_path(run, root / "run" / "camera_paths" / "camera_path.json", ShotOptions(path="orbit", seconds=0.5, fps=8))
    save_path(run, root / "run" / "camera_paths" / "dolly.json", ShotOptions(path="dolly-zoom", seconds=0.5, fps=8))
    (root / "run" / "export").mkdir()
    (root / "run" / "export" / "scene.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nend_header\n")
    return run


def test_scene_opens_and_every_dependency_resolves(run_copy, tmp_path):
    from pxr import Usd, UsdGeom, UsdLux, UsdUtils

    result = export_scene(run_copy, tmp_path / "set", SceneExportOptions(**SMALL))
    assert result.made == ["mesh", "plate"] and result.skipped_paths == []
    layers, assets, unresolved = UsdUtils.ComputeAllDependencies(str(result.scene))
    assert unresolved == []
    names = sorted(p.split("/set/")[-1] for p in [layer.realPath for layer in layers] + list(assets))
    assert names == ["cameras/camera_path.usda", "cameras/dolly.usda", "mesh.usdc", "plate_latlong.exr",
                     "scene.usda", "splats.ply", "training_cameras.usda"]
    assert all((tmp_path / "set" / name).is_file() for name in names)
    stage = Usd.Stage.Open(str(result.scene))
    assert UsdGeom.GetStageUpAxis(stage) == "Z" and UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    cameras = [p for p in stage.Traverse() if p.IsA(UsdGeom.Camera)]
    animated = [p for p in cameras if p.GetPath().pathString.startswith("/World/cameras/")]
    assert len(animated) == 2 and len(cameras) == 2 + result.training_cameras
    assert result.training_cameras == len(run_copy.train_indices)
    group = UsdGeom.Imageable(stage.GetPrimAtPath("/World/training_cameras"))
    assert group.ComputeVisibility() == UsdGeom.Tokens.invisible
    dome = UsdLux.DomeLight(stage.GetPrimAtPath("/World/dome"))
    texture = dome.GetTextureFileAttr().Get()
    assert texture.resolvedPath and texture.resolvedPath.endswith("plate_latlong.exr")
    assert dome.GetTextureFormatAttr().Get() == "latlong"
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/World/mesh"))
    assert len(mesh.GetFaceVertexCountsAttr().Get()) > 100
    assert len(mesh.GetDisplayColorPrimvar().Get()) == len(mesh.GetPointsAttr().Get())
    splats = stage.GetPrimAtPath("/World/splats").GetAttribute("nerfstage:splatsFile").Get()
    assert splats.resolvedPath.endswith("splats.ply")
    text = (tmp_path / "set" / "README.txt").read_text()
    assert "+Z up" in text and "metres" in text and "scene-linear Rec.709" in text


def test_scene_cameras_are_the_saved_paths_in_the_dataset_frame(run_copy, tmp_path):
    from pxr import Usd, UsdGeom

    result = export_scene(run_copy, tmp_path / "set", SceneExportOptions(**SMALL))
    stage = Usd.Stage.Open(str(result.scene))
    path = read_camera_path(run_copy.run_dir / "camera_paths" / "dolly.json")
    expected = poses_to_dataset(path.world_from_cams, run_copy.scene.transform, run_copy.scene.scale)
    camera = UsdGeom.Camera(stage.GetPrimAtPath("/World/cameras/dolly"))
    for i in range(len(path)):
        pose = np.array(camera.ComputeLocalToWorldTransform(Usd.TimeCode(i + 1))).T
        assert np.abs(pose - expected[i]).max() < 1e-9
    back, _ = formats.read_usd_camera(tmp_path / "set" / "cameras" / "dolly.usda")
    assert np.abs(back.fov_y_deg - path.fov_y_deg).max() < 1e-4


def test_scene_refuses_to_overwrite_and_cli_reports(run_copy, tmp_path, capsys):
    export_scene(run_copy, tmp_path / "set", SceneExportOptions(**SMALL))
    with pytest.raises(OutputExistsError):
        export_scene(run_copy, tmp_path / "set", SceneExportOptions(**SMALL))
    assert cli("export", "scene", run_copy.run_dir, "-o", tmp_path / "set2", "--mesh",
               tmp_path / "set" / "mesh.glb", "--plate", tmp_path / "set" / "plate_latlong.exr", "-q") == 0
    out = capsys.readouterr().out
    assert "2 camera path(s)" in out and "made now" not in out
    assert cli("export", "scene", run_copy.run_dir, "-o", tmp_path / "set2", "-q") == 2
    assert "already exists" in capsys.readouterr().err


def test_dome_light_turns_the_openexr_latlong_onto_the_plate(run_copy):
    """The DomeLight's local +Y (pole) goes to the plate's up, local +Z (latlong centre) to its forward and local
    +X (OpenEXR longitude +90 degrees: left of the centre seen from inside) to its left -- the panorama's default
    frame is level in the normalised frame, centre along +Y, image right along +X (render/equirect.py)."""
    from nerfstage.export.scene import dome_rotation

    to_dataset = np.asarray(run_copy.scene.transform)[:, :3].T  # normalised -> dataset directions
    rotation = dome_rotation(run_copy)[:3, :3]
    assert rotation[:, 1] == pytest.approx(to_dataset @ [0, 0, 1])
    assert rotation[:, 2] == pytest.approx(to_dataset @ [0, 1, 0])
    assert rotation[:, 0] == pytest.approx(to_dataset @ [-1, 0, 0])
    assert np.linalg.det(rotation) == pytest.approx(1.0)
