"""Tracked-camera plates from the tiny trained run: one plate per track row, numbered by frame, sized with
overscan; a plate tracked at a training camera's pose reproduces that camera's image; resume; bad tracks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nerfstage.core.errors import InputError
from nerfstage.export.plates import PlateOptions, export_plates
from nerfstage.render.writers import read_exr


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from nerfstage.nerf.run import load_run

    return load_run(tiny_run.run_dir, device="cpu")


def track_at_cameras(tiny_run, path, indices, fov_scale: float = 1.0) -> list[np.ndarray]:
    """A CSV track whose rows are the dataset cameras ``indices`` (dataset frame, quaternions, their fov);
    returns their ground-truth images (uint8 RGB)."""
    import cv2

    data = json.loads((tiny_run.dataset_dir / "transforms.json").read_text())
    fov = np.degrees(2 * np.arctan(0.5 * data["h"] / data["fl_y"])) * fov_scale
    rows, images = ["frame,x,y,z,qw,qx,qy,qz,fov_y_deg,width,height"], []
    for n, i in enumerate(indices, start=1):
        pose = np.asarray(data["frames"][i]["transform_matrix"])
        x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
        rows.append(f"{n},{pose[0, 3]},{pose[1, 3]},{pose[2, 3]},{w},{x},{y},{z},{fov},{data['w']},{data['h']}")
        image = cv2.imread(str(tiny_run.dataset_dir / data["frames"][i]["file_path"]), cv2.IMREAD_COLOR)
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    path.write_text("\n".join(rows) + "\n")
    return images


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
    return float(-10.0 * np.log10(max(mse, 1e-12)))


def test_one_plate_per_row_at_the_tracked_pose(loaded, tiny_run, tmp_path):
    """Plates tracked at cameras 1 and 13 (dataset-frame poses as quaternions) are the render stage's images of
    those training cameras (to 8-bit rounding: the pose goes through the track file, overscan 0 and the
    normalisation unchanged), match their own ground-truth image (measured 19.5 / 19.2 dB on the tiny run) better
    than each other's (16.6 dB)."""
    import cv2

    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.render.image import ImageOptions, render_image

    images = track_at_cameras(tiny_run, tmp_path / "track.csv", [1, 13])
    result = export_plates(loaded, tmp_path / "track.csv", tmp_path / "plates", PlateOptions(format="png",
                                                                                              progress=False))
    assert [f.name for f in result.files] == ["plate_00001.png", "plate_00002.png"] and result.rendered == 2
    plates = [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in result.files]
    own = [psnr(p, i) for p, i in zip(plates, images, strict=True)]
    crossed = [psnr(plates[0], images[1]), psnr(plates[1], images[0])]
    assert min(own) > 15.0 and min(own) > max(crossed) + 1.5, f"own {own}, crossed {crossed}"
    for plate, index in zip(plates, (1, 13), strict=True):
        camera = PerspectiveCamera.from_intrinsics(loaded.intrinsics[index])
        direct = render_image(loaded.model, camera, loaded.world_from_cams[index], ("rgb",), ImageOptions())["rgb"]
        difference = np.abs(plate.astype(int) - np.round(np.clip(direct, 0, 1) * 255).astype(int))
        assert difference.max() <= 2 and (difference > 0).mean() < 0.02, (difference.max(), (difference > 0).mean())


def test_exr_plates_with_overscan_resume_and_header(loaded, tiny_run, tmp_path):
    track_at_cameras(tiny_run, tmp_path / "track.csv", [2, 3, 4])
    options = PlateOptions(overscan_percent=25.0, progress=False)
    first = export_plates(loaded, tmp_path / "track.csv", tmp_path / "plates", options)
    assert len(first.files) == 3 and first.rendered == 3 and first.skipped == 0
    channels, header = read_exr(first.files[0])
    assert sorted(channels) == ["A", "B", "G", "R"] and channels["R"].dtype == np.float16
    assert channels["R"].shape == (48 + 2 * 6, 64 + 2 * 8)  # 25 % overscan: 12.5 % more on each side
    assert header["colorSpace"] == "lin_rec709" and len(header["chromaticities"]) == 8
    first.files[1].unlink()
    first.files[2].write_bytes(first.files[2].read_bytes()[:100])  # a truncated plate is redone
    again = export_plates(loaded, tmp_path / "track.csv", tmp_path / "plates", options)
    assert (again.rendered, again.skipped) == (2, 1)
    assert all(read_exr(f)[0]["A"].shape == (60, 80) for f in again.files)
    assert not list((tmp_path / "plates").glob(".*"))


def test_malformed_track_creates_nothing(loaded, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,x,y,z,yaw_deg,pitch_deg,roll_deg,fov_y_deg,width,height\n1,0,0,1,0,0,0,abc,32,18\n")
    with pytest.raises(InputError, match="fov_y_deg"):
        export_plates(loaded, bad, tmp_path / "plates", PlateOptions(progress=False))
    assert not (tmp_path / "plates").exists()


def test_a_file_this_tool_did_not_write_is_never_replaced_without_overwrite(tiny_run, tmp_path):
    """Resume keeps and replaces only plates listed in DIR/nerfstage_plates.json; a user's file under a plate's
    name stops the export (before any plate renders) until --overwrite is given."""
    from nerfstage.core.errors import OutputExistsError
    from nerfstage.export.plates import MANIFEST, PlateOptions, export_plates
    from nerfstage.nerf.run import load_run

    run = load_run(tiny_run.run_dir, device="cpu")
    track = tmp_path / "track.csv"
    track.write_text("frame,x,y,z,qw,qx,qy,qz,focal_mm,sensor_width_mm,sensor_height_mm,width,height\n"
                     "1,0,-2,0.5,0.7071068,0.7071068,0,0,35,36,24,24,16\n"
                     "2,0.1,-2,0.5,0.7071068,0.7071068,0,0,35,36,24,24,16\n")
    out = tmp_path / "plates"
    out.mkdir()
    mine = out / "plate_00002.png"
    mine.write_bytes(b"my own picture, not a plate")
    options = PlateOptions(format="png", progress=False)
    with pytest.raises(OutputExistsError, match="plate_00002.png: exists and was not written by"):
        export_plates(run, track, out, options)
    assert mine.read_bytes() == b"my own picture, not a plate" and sorted(p.name for p in out.iterdir()) == [mine.name]
    mine.unlink()
    first = export_plates(run, track, out, options)
    assert first.rendered == 2 and (out / MANIFEST).is_file()
    again = export_plates(run, track, out, options)  # resume: both plates are ours and valid
    assert again.rendered == 0 and again.skipped == 2
    (out / "plate_00001.png").write_bytes(b"truncated")  # ours but broken: resume renders it again
    assert export_plates(run, track, out, options).rendered == 1
    (out / MANIFEST).unlink()  # nothing says these are ours any more
    with pytest.raises(OutputExistsError, match="plate_00001.png"):
        export_plates(run, track, out, options)
    replaced = export_plates(run, track, out, PlateOptions(format="png", progress=False, overwrite=True))
    assert replaced.rendered == 2 and (out / MANIFEST).is_file()


def test_usd_and_chan_tracks_render_the_csv_plates(loaded, tiny_run, tmp_path):
    """The same track as CSV, as a USD camera and as a Nuke .chan gives the same plates (issue 18)."""
    from nerfstage.export.camera_formats import write_chan, write_usd_camera
    from nerfstage.export.camera_track import CameraTrack
    from nerfstage.export.track import read_track

    csv = tmp_path / "track.csv"
    track_at_cameras(tiny_run, csv, [3, 11])
    frames = read_track(csv)
    camera = CameraTrack(np.stack([f.world_from_cam for f in frames]), np.array([f.fov_y_deg for f in frames]),
                         frames[0].width, frames[0].height, 24.0, start_frame=1)
    usd = write_usd_camera(camera, tmp_path / "track.usda")
    chan = write_chan(camera, tmp_path / "track.chan")
    from_usd = read_track(usd)
    assert [f.frame for f in from_usd] == [1, 2] and from_usd[0].sensor_width_mm == pytest.approx(36.0)
    assert from_usd[0].focal_mm == pytest.approx(camera.focal_mm()[0], rel=1e-6)
    plates = {}
    for name, track, size in (("csv", csv, None), ("usd", usd, None), ("chan", chan, (frames[0].width,
                                                                                     frames[0].height))):
        result = export_plates(loaded, track, tmp_path / name, PlateOptions(format="png", progress=False, size=size))
        plates[name] = [cv2_read(p) for p in result.files]
    for name in ("usd", "chan"):
        for a, b in zip(plates["csv"], plates[name], strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, name
            assert np.mean(a != b) < 0.01, name
    with pytest.raises(InputError, match="no image size"):
        read_track(chan)


def cv2_read(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
