"""``nerfstage export camera``: a render path -> USD / .chan / glTF / camera_path.json and back.

Round trips read the files with the formats' own libraries (``usd-core``'s UsdGeom, pygltflib, plain text for
.chan) and must give the same per-frame ``world_from_cam`` (<= 1e-6) and vertical fov (<= 1e-4 degrees) as the
dataset-frame track; the track is the render path mapped back through ``dataparser_transforms.json``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nerfstage.core.errors import ConfigError, InputError, OutputExistsError
from nerfstage.export import camera_formats as formats
from nerfstage.export.camera import CameraExportOptions, export_camera, poses_to_dataset, track_from_path
from nerfstage.render.paths import PathSettings, dolly_zoom_path, look_at, orbit_path, read_camera_path
from nerfstage.render.plan import ShotOptions

from .test_cli_export import cli

TRANSFORM = np.array([[0.0, 1.0, 0.0, 0.1], [-1.0, 0.0, 0.0, 0.2], [0.0, 0.0, 1.0, -0.3]])
SCALE = 0.37
POSE_TOL, FOV_TOL = 1e-6, 1e-4


def dolly_track():
    settings = PathSettings(64, 48, 24.0, 1.0, 40.0, "perspective", "linear")
    path = dolly_zoom_path(settings, look_at(np.array([0.5, -0.3, 0.2]), np.zeros(3)), 0.6, 40.0, 80.0)
    return track_from_path(path, TRANSFORM, SCALE, CameraExportOptions(start_frame=1001))


def orbit_track():
    settings = PathSettings(80, 40, 30.0, 2.0, 55.0, "perspective", "ease-in-out")
    path = orbit_path(settings, np.array([0.1, 0.0, 0.05]), 0.8, 0.3, 1.0)
    return track_from_path(path, TRANSFORM, SCALE, CameraExportOptions(meters_per_unit=0.5))


def test_poses_to_dataset_inverts_the_dataparser_transform():
    from nerfstage.nerf.data import SceneTransform

    rng = np.random.default_rng(0)
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :3] = np.linalg.qr(rng.normal(size=(5, 3, 3)))[0] * np.sign(np.linalg.det(
        np.linalg.qr(rng.normal(size=(5, 3, 3)))[0]))[:, None, None]
    poses[:, :3, 3] = rng.normal(size=(5, 3))
    normalized = SceneTransform(TRANSFORM, SCALE).apply(poses)
    assert np.abs(poses_to_dataset(normalized, TRANSFORM, SCALE) - poses).max() < 1e-12


@pytest.mark.parametrize("make", [dolly_track, orbit_track])
@pytest.mark.parametrize("suffix", [".usda", ".usdc"])
def test_usd_round_trip(tmp_path, make, suffix):
    from pxr import Usd, UsdGeom, UsdRender

    track = make()
    file = formats.write_usd_camera(track, tmp_path / f"shot{suffix}")
    back, lens = formats.read_usd_camera(file)
    positions = back.world_from_cams[:, :3, 3] / track.meters_per_unit  # the reader returns metres
    assert np.abs(positions - track.world_from_cams[:, :3, 3]).max() <= POSE_TOL
    assert np.abs(back.world_from_cams[:, :3, :3] - track.world_from_cams[:, :3, :3]).max() <= POSE_TOL
    assert np.abs(back.fov_y_deg - track.fov_y_deg).max() <= FOV_TOL
    assert lens["frames"] == track.frames.tolist() and lens["resolution"] == (track.width, track.height)
    assert np.allclose(lens["focal_mm"], track.focal_mm(), rtol=1e-6)
    assert np.allclose(lens["sensor_width_mm"], 36.0, rtol=1e-6)
    stage = Usd.Stage.Open(str(file))  # the stage metadata a DCC reads
    assert UsdGeom.GetStageUpAxis(stage) == "Z"
    assert UsdGeom.GetStageMetersPerUnit(stage) == track.meters_per_unit
    assert stage.GetTimeCodesPerSecond() == stage.GetFramesPerSecond() == pytest.approx(track.fps)
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (track.frames[0], track.frames[-1])
    camera = UsdGeom.Camera(stage.GetPrimAtPath("/World/camera"))
    # USD lens units: tenths of a scene unit -> 36 mm film back on a metre stage is 0.36
    assert camera.GetHorizontalApertureAttr().Get() == pytest.approx(0.36 / track.meters_per_unit, rel=1e-6)
    settings = UsdRender.Settings(stage.GetPrimAtPath("/Render/settings"))
    assert tuple(settings.GetResolutionAttr().Get()) == (track.width, track.height)


def test_dolly_zoom_keeps_focal_length_animated(tmp_path):
    from pxr import Usd, UsdGeom

    track = dolly_track()
    file = formats.write_usd_camera(track, tmp_path / "dolly.usda")
    stage = Usd.Stage.Open(str(file))
    camera = UsdGeom.Camera(stage.GetPrimAtPath("/World/camera"))
    samples = camera.GetFocalLengthAttr().GetTimeSamples()
    assert len(samples) == len(track) == 24
    focal = [camera.GetFocalLengthAttr().Get(t) for t in samples]
    assert focal[0] > 1.9 * focal[-1]  # fov 40 -> 80 degrees: tan(20)/tan(40) = 0.434
    assert focal[-1] / focal[0] == pytest.approx(math.tan(math.radians(20)) / math.tan(math.radians(40)), rel=1e-5)


@pytest.mark.parametrize("make", [dolly_track, orbit_track])
def test_chan_round_trip(tmp_path, make):
    track = make()
    file = formats.write_chan(track, tmp_path / "shot.chan")
    lines = file.read_text().splitlines()
    assert len(lines) == len(track) and len(lines[0].split()) == 8 and lines[0].split()[0] == str(track.frames[0])
    frames, poses, fovs = formats.read_chan(file)
    assert frames.tolist() == track.frames.tolist()
    assert np.abs(poses - track.world_from_cams).max() <= POSE_TOL
    assert np.abs(fovs - track.fov_y_deg).max() <= FOV_TOL


def test_chan_rotation_order_is_nukes_zxy():
    """A camera turned 30 degrees about Y-up (pan left) and tilted 10 degrees down has rx = -10, ry = 30."""
    from scipy.spatial.transform import Rotation

    from nerfstage.export.camera_track import CameraTrack

    y_up = np.eye(4)
    y_up[:3, :3] = Rotation.from_euler("y", 30, degrees=True).as_matrix() @ \
        Rotation.from_euler("x", -10, degrees=True).as_matrix()
    pose = np.linalg.inv(formats.Y_UP_FROM_Z_UP) @ y_up
    row = formats.chan_rows(CameraTrack(pose[None], np.array([40.0]), 16, 9, 24.0))[0]
    assert row[4:7] == pytest.approx([-10.0, 30.0, 0.0], abs=1e-9)


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_gltf_round_trip(tmp_path, suffix):
    import pygltflib

    track = dolly_track()
    file = formats.write_gltf_camera(track, tmp_path / f"shot{suffix}")
    back = formats.read_gltf_camera(file)
    assert np.abs(back.world_from_cams - track.world_from_cams).max() <= POSE_TOL
    assert np.abs(back.fov_y_deg - track.fov_y_deg).max() <= FOV_TOL
    assert (back.width, back.height, back.fps, back.start_frame) == (64, 48, 24.0, 1001)
    gltf = pygltflib.GLTF2().load(str(file))
    assert gltf.cameras[0].type == "perspective" and gltf.cameras[0].perspective.aspectRatio == pytest.approx(4 / 3)
    times = gltf.accessors[gltf.animations[0].samplers[0].input]
    assert times.max[0] == pytest.approx((len(track) - 1) / 24.0)


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.chan"
    bad.write_text("1 0 0 0 0 0 0\n")
    with pytest.raises(InputError, match="line 1: expected 8"):
        formats.read_chan(bad)
    with pytest.raises(InputError, match="no UsdGeomCamera|not a readable"):
        (tmp_path / "empty.usda").write_text("#usda 1.0\n")
        formats.read_usd_camera(tmp_path / "empty.usda")
    with pytest.raises(ConfigError, match="meters_per_unit"):
        track_from_path(dolly_zoom_path(PathSettings(8, 8, 2.0, 1.0, 40.0, "perspective", "linear"),
                                        look_at(np.ones(3), np.zeros(3)), 1.0, 40.0, 50.0),
                        TRANSFORM, SCALE, CameraExportOptions(meters_per_unit=0.0))


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from nerfstage.nerf.run import load_run

    return load_run(tiny_run.run_dir, device="cpu")


def test_export_camera_from_run_matches_the_render_path(loaded, tmp_path):
    """The USD camera is the path `render` shoots, mapped into the dataset frame; the .json is that path."""
    from nerfstage.render.pipeline import save_path

    shot = ShotOptions(path="dolly-zoom", seconds=0.5, fps=12)
    file, track = export_camera(loaded, tmp_path / "shot.usda", shot)
    rendered = save_path(loaded, tmp_path / "render_path.json", shot)
    expected = poses_to_dataset(rendered.world_from_cams, loaded.scene.transform, loaded.scene.scale)
    back, _ = formats.read_usd_camera(file)
    assert len(back) == 6 and np.abs(back.world_from_cams - expected).max() <= POSE_TOL
    assert np.abs(back.fov_y_deg - rendered.fov_y_deg).max() <= FOV_TOL
    json_file, _ = export_camera(loaded, tmp_path / "shot.json", shot)
    assert json_file.read_text() == (tmp_path / "render_path.json").read_text()
    assert np.allclose(read_camera_path(json_file).world_from_cams, rendered.world_from_cams)
    with pytest.raises(OutputExistsError):
        export_camera(loaded, tmp_path / "shot.usda", shot)
    with pytest.raises(ConfigError, match="perspective"):
        export_camera(loaded, tmp_path / "pano.usda", ShotOptions(camera="equirectangular", seconds=0.2))


def test_training_cameras_map_back_to_the_dataset(loaded, tiny_run):
    """The run's (normalised) training cameras go back to transforms.json's poses: the frame the mesh is in."""
    data = json.loads((tiny_run.dataset_dir / "transforms.json").read_text())
    held = loaded.cameras.eval_indices
    truth = np.array([data["frames"][i]["transform_matrix"] for i in held])
    back = poses_to_dataset(loaded.world_from_cams[held], loaded.scene.transform, loaded.scene.scale)
    assert np.abs(back - truth).max() < 1e-9


def test_cli_export_camera(tiny_run, tmp_path, capsys):
    run = tiny_run.run_dir
    for name in ("shot.usdc", "shot.chan", "shot.glb", "shot.json"):
        assert cli("export", "camera", run, "--path", "orbit", "--seconds", "0.25", "--fps", "8", "-o",
                   tmp_path / name) == 0
        assert str(tmp_path / name) in capsys.readouterr().out
    assert len(formats.read_chan(tmp_path / "shot.chan")[0]) == 2
    assert cli("export", "camera", run, "-o", tmp_path / "shot.fbx") == 2
    assert "unknown camera file extension" in capsys.readouterr().err
    assert cli("export", "camera", run, "-o", tmp_path / "shot.chan") == 2
    assert "already exists" in capsys.readouterr().err


def test_usd_track_from_a_y_up_centimetre_stage(tmp_path):
    """A DCC's Y-up stage in centimetres (Maya, Unreal's exporter): read back in metres, Z-up, lens in mm."""
    from pxr import Gf, Usd, UsdGeom

    from nerfstage.export.track import read_track

    stage = Usd.Stage.CreateNew(str(tmp_path / "dcc.usda"))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 0.01)
    camera = UsdGeom.Camera.Define(stage, "/cam")
    camera.AddTranslateOp().Set(Gf.Vec3d(100.0, 150.0, -250.0), 1001)  # 1 m right, 1.5 m up, 2.5 m "forward"
    camera.CreateFocalLengthAttr(35.0)  # tenths of a cm = mm
    camera.CreateHorizontalApertureAttr(36.0)
    camera.CreateVerticalApertureAttr(24.0)
    stage.GetRootLayer().Save()
    frames = read_track(tmp_path / "dcc.usda", size=(1920, 1280))
    assert [f.frame for f in frames] == [1001]
    assert frames[0].world_from_cam[:3, 3] == pytest.approx([1.0, 2.5, 1.5])  # (x, z, -y) back: Z-up metres
    assert frames[0].world_from_cam[:3, 2] == pytest.approx([0.0, -1.0, 0.0])  # looks along +Y (Y-up -Z)
    assert (frames[0].focal_mm, frames[0].sensor_width_mm) == pytest.approx((35.0, 36.0))
    assert frames[0].fov_y_deg == pytest.approx(math.degrees(2 * math.atan(12 / 35)))
